"""EDM diffusion: preconditioning and loss, noise schedules, samplers and guidance (free functions)."""

from vimi.diffusion.edm import (
    EDMDenoiser,
    append_dims,
    edm_loss,
    edm_loss_weight,
    edm_preconditioning,
    noise_shift,
    sample_training_sigmas,
    sampling_sigmas,
)
from vimi.diffusion.guidance import concat_conditions, multimodal_guidance, pad_tokens
from vimi.diffusion.noise import randn_per_sample
from vimi.diffusion.samplers import SAMPLERS, karras_sigmas, sample_dpmpp_2m, sample_euler, sample_heun

__all__ = [
    "SAMPLERS",
    "EDMDenoiser",
    "append_dims",
    "concat_conditions",
    "edm_loss",
    "edm_loss_weight",
    "edm_preconditioning",
    "karras_sigmas",
    "multimodal_guidance",
    "noise_shift",
    "pad_tokens",
    "randn_per_sample",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_heun",
    "sample_training_sigmas",
    "sampling_sigmas",
]

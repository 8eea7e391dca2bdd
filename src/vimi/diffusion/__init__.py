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
from vimi.diffusion.guidance import multimodal_guidance
from vimi.diffusion.noise import randn_per_sample, seeded_noise_sampler
from vimi.diffusion.samplers import (
    SAMPLERS,
    STOCHASTIC_SAMPLERS,
    karras_sigmas,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
)

__all__ = [
    "SAMPLERS",
    "STOCHASTIC_SAMPLERS",
    "EDMDenoiser",
    "append_dims",
    "edm_loss",
    "edm_loss_weight",
    "edm_preconditioning",
    "karras_sigmas",
    "multimodal_guidance",
    "noise_shift",
    "randn_per_sample",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_heun",
    "sample_training_sigmas",
    "sampling_sigmas",
    "seeded_noise_sampler",
]

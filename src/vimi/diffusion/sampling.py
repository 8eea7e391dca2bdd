"""`sample_videos`: the one sampling procedure (three conditions, noise, guided sampler, decode).

VimiPipeline and the trainer's periodic samples both call it, so a checkpoint's training samples
are drawn exactly as `vimi generate` would draw them.
"""

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from vimi.config import DiffusionConfig
from vimi.diffusion.edm import sampling_sigmas
from vimi.diffusion.guidance import multimodal_guidance
from vimi.diffusion.noise import randn_per_sample
from vimi.diffusion.samplers import SAMPLERS, STOCHASTIC_SAMPLERS

if TYPE_CHECKING:  # vimi_model imports vimi.diffusion; a runtime import here would be circular
    from vimi.models.vimi_model import VimiModel
    from vimi.prompt import MultimodalPrompt


@torch.no_grad()
def sample_videos(
    model: "VimiModel",
    prompts: "list[MultimodalPrompt]",
    latent_shape: tuple[int, ...],
    seeds: list[int],
    diffusion: DiffusionConfig,
    *,
    steps: int,
    sampler: str,
    guidance_text: float,
    guidance_image: float,
    context: Tensor | None = None,
    context_mask: Tensor | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> Tensor:
    """Videos [B, C, T, H, W] in [-1, 1] (float32) for templated prompts; sample i's noise depends only on seeds[i].

    `latent_shape` is [B, C, t, h, w] of the diffusion space; `context` [B, 3, T, H, W] and
    `context_mask` [B, 1, T, H, W] are the given frames, which constrain all three conditions
    (guidance is over the prompt only) and are returned in place of the generated ones.
    """
    # Conditions: the full prompt, its image-only variant and the unconditional (empty) prompt.
    variants = {
        "cond": prompts,
        "cond_image": [p.drop_text() for p in prompts],
        "cond_uncond": [p.drop_text().drop_images() for p in prompts],
    }
    size = tuple(n * model.autoencoder.spatial_compression for n in latent_shape[-2:])  # pixels (H, W)
    conds = {
        name: model.condition(variant, context, context_mask, size) for name, variant in variants.items()
    }

    sigmas = sampling_sigmas(steps, diffusion, latent_shape, device=device)
    noise = randn_per_sample(latent_shape, seeds, device=device, dtype=torch.float32)
    latents = noise * sigmas[0].to(torch.float32)

    def denoise(x: Tensor, sigma: Tensor, cond: dict) -> Tensor:
        return model.denoiser(x, sigma, cond)

    guided = multimodal_guidance(denoise, guidance_text, guidance_image)
    options = {}
    if sampler in STOCHASTIC_SAMPLERS:
        # Step i's noise for sample i comes from its own seed too (an offset stream per step).
        options["noise_sampler"] = lambda step: randn_per_sample(
            latent_shape,
            [(seed * 1_000_003 + step + 1) % 2**63 for seed in seeds],
            device=device,
            dtype=torch.float32,
        )
    latents = SAMPLERS[sampler](guided, latents, sigmas, extra_args=conds, disable=not progress, **options)
    videos = model.autoencoder.decode(latents).float().clamp(-1.0, 1.0)
    if context is not None:
        # Given frames come back as given (as SVD's pipeline returns its conditioning frame), not as the
        # model's rendering of them: the video starts with the user's own image.
        videos = torch.where(context_mask.to(videos.device).bool(), context.to(videos), videos)
    return videos

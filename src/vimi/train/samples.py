"""Periodic sample videos from fixed eval prompts, drawn with the vimi.diffusion samplers and guidance."""

import torch

from vimi.config import VimiConfig
from vimi.data.tasks import TaskSample, collate_samples
from vimi.diffusion import SAMPLERS, multimodal_guidance, randn_per_sample, sampling_sigmas
from vimi.models.vimi_model import VimiModel
from vimi.prompt import MultimodalPrompt


@torch.no_grad()
def generate_samples(
    model: VimiModel, samples: list[TaskSample], cfg: VimiConfig, device: torch.device
) -> dict[str, torch.Tensor]:
    """One video [C, T, H, W] in [-1, 1] per eval sample, keyed "<i>-<task>"; seeds cfg.sample.seed + i."""
    batch = collate_samples(samples)
    context = batch.context.to(device) if batch.context is not None else None
    context_mask = batch.context_mask.to(device) if batch.context_mask is not None else None
    prompts = batch.prompts
    conds = {
        "cond": model.condition(prompts, context, context_mask),
        "cond_image": model.condition([p.drop_text() for p in prompts], context, context_mask),
        "cond_uncond": model.condition(
            [MultimodalPrompt([], p.task) for p in prompts], context, context_mask
        ),
    }
    shape = model.autoencoder.encode(batch.videos.to(device)).shape  # the latent shape of one batch
    sigmas = sampling_sigmas(cfg.sample.steps, cfg.diffusion, shape, device)
    seeds = [cfg.sample.seed + i for i in range(len(samples))]
    x = randn_per_sample(shape, seeds, device) * sigmas[0].float()

    def denoise(x_noisy: torch.Tensor, sigma: torch.Tensor, cond: dict) -> torch.Tensor:
        return model.denoiser(x_noisy, sigma, cond)

    guided = multimodal_guidance(denoise, cfg.sample.guidance_text, cfg.sample.guidance_image)
    latents = SAMPLERS[cfg.sample.sampler](guided, x, sigmas, extra_args=conds)
    videos = model.autoencoder.decode(latents).clamp(-1, 1).cpu()  # [B, C, T, H, W]
    return {f"{i}-{s.prompt.task}": video for i, (s, video) in enumerate(zip(samples, videos))}

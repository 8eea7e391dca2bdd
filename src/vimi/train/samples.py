"""Periodic sample videos from fixed eval prompts, drawn by the pipeline's own sampling procedure."""

import torch

from vimi.config import VimiConfig
from vimi.data.tasks import TaskSample, collate_samples
from vimi.diffusion.sampling import sample_videos
from vimi.models.vimi_model import VimiModel


@torch.no_grad()
def generate_samples(
    model: VimiModel, samples: list[TaskSample], cfg: VimiConfig, device: torch.device
) -> dict[str, torch.Tensor]:
    """One video [C, T, H, W] in [-1, 1] per eval sample, keyed "<i>-<task>"; seeds cfg.sample.seed + i."""
    batch = collate_samples(samples)
    context = batch.context.to(device) if batch.context is not None else None
    context_mask = batch.context_mask.to(device) if batch.context_mask is not None else None
    num_frames, height, width = batch.videos.shape[2:]  # [B, C, T, H, W]: the training clip size
    latent_shape = (len(samples), *model.autoencoder.latent_shape(num_frames, height, width))
    videos = sample_videos(
        model,
        batch.prompts,
        latent_shape,
        [cfg.sample.seed + i for i in range(len(samples))],
        cfg.diffusion,
        steps=cfg.sample.steps,
        sampler=cfg.sample.sampler,
        guidance_text=cfg.sample.guidance_text,
        guidance_image=cfg.sample.guidance_image,
        context=context,
        context_mask=context_mask,
        device=device,
    ).cpu()  # [B, C, T, H, W]
    return {f"{i}-{s.prompt.task}": video for i, (s, video) in enumerate(zip(samples, videos))}

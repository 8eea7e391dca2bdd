"""Periodic sample videos from fixed eval prompts, drawn by the pipeline itself, so a checkpoint's training
samples are what `vimi generate` would draw."""

import torch

from vimi.config import PipelineConfig
from vimi.data.tasks import TaskSample, collate_samples
from vimi.models.vimi_model import VimiModel
from vimi.pipeline import VimiPipeline


@torch.no_grad()
def generate_samples(
    model: VimiModel, samples: list[TaskSample], cfg: PipelineConfig
) -> dict[str, torch.Tensor]:
    """One video [C, T, H, W] in [-1, 1] per eval sample, keyed "<i>-<task>"; seeds cfg.sample.seed + i."""
    batch = collate_samples(samples)
    num_frames, height, width = batch.videos.shape[2:]  # [B, C, T, H, W]: the training clip size
    videos = VimiPipeline(model, cfg)(
        batch.prompts,
        num_frames=num_frames,
        height=height,
        width=width,
        seed=cfg.sample.seed,
        context=batch.context,
        context_mask=batch.context_mask,
        progress=False,
    ).frames.cpu()  # [B, C, T, H, W]
    return {f"{i}-{s.prompt.task}": video for i, (s, video) in enumerate(zip(samples, videos))}

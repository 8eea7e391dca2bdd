"""`export_to_video`: write one generated video to an mp4 or GIF file (as diffusers.utils.export_to_video)."""

from pathlib import Path

import numpy as np
import torch

from vimi.errors import ConfigError


def export_to_video(video, path: str | Path, fps: int = 8) -> Path:
    """Write `video` to `path` (.mp4 or .gif, by its suffix) atomically and return the path.

    video: one of `VimiPipelineOutput.frames`: a tensor [C, T, H, W] in [-1, 1] ("pt"), an array
    [T, H, W, C] of floats in [0, 1] ("np"), or a list of PIL images ("pil").
    """
    from vimi.data.video_io import write_gif, write_mp4

    path = Path(path)
    writers = {".mp4": write_mp4, ".gif": write_gif}
    if path.suffix.lower() not in writers:
        raise ConfigError(f"{path}: export_to_video writes .mp4 or .gif files")
    return writers[path.suffix.lower()](as_tensor(video), path, fps=fps)


def as_tensor(video) -> torch.Tensor:
    """A video in any output_type's form as vimi's [C, T, H, W] tensor in [-1, 1]."""
    if isinstance(video, torch.Tensor):
        frames = video
    elif isinstance(video, np.ndarray):  # [T, H, W, C] in [0, 1]
        frames = torch.from_numpy(video).float().permute(3, 0, 1, 2) * 2 - 1
    elif isinstance(video, list | tuple) and video:  # PIL images
        pixels = np.stack([np.asarray(frame.convert("RGB")) for frame in video])  # [T, H, W, 3] uint8
        frames = torch.from_numpy(pixels).float().permute(3, 0, 1, 2) / 127.5 - 1
    else:
        raise ConfigError(
            f"export_to_video: expected a tensor, an array or a list of images, got {type(video).__name__}"
        )
    if frames.ndim != 4:
        raise ConfigError(
            f"export_to_video: expected one video [C, T, H, W], got shape {tuple(frames.shape)}"
        )
    return frames

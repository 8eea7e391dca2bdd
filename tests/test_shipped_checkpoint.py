"""The checkpoint shipped in the repository (what `make demo` uses) loads and generates."""

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from vimi.commands.demo import SHIPPED_CHECKPOINT
from vimi.pipeline import VimiPipeline


def test_shipped_checkpoint_is_small_fp16_and_generates():
    folder = Path(SHIPPED_CHECKPOINT)
    if not folder.is_dir():
        pytest.fail(f"{folder} is missing: `make demo` needs it (see MODEL_CARD.md)")
    weights = folder / "model.safetensors"
    assert weights.stat().st_size <= 25 * 2**20  # it lives in git
    with safe_open(weights, framework="pt") as f:
        dtypes = {f.get_slice(name).get_dtype() for name in f.keys()}  # noqa: SIM118
    assert dtypes == {"F16"}
    pipe = VimiPipeline.from_pretrained(folder, device="cpu")
    video = pipe(
        "A video of a blicket that spins in the desert.", seed=0, num_inference_steps=2, progress=False
    ).frames
    sample = pipe.cfg.sample
    assert video.shape == (1, 3, sample.num_frames, sample.height, sample.width)
    assert torch.isfinite(video).all() and video.abs().max() <= 1.0

"""Fixtures for the training tests: a tiny dataset on disk and the debug recipe pointed at it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vimi.config import VimiConfig, load_config
from vimi.data.image_io import save_image
from vimi.data.manifest import ManifestWriter
from vimi.data.video_io import write_mp4

REPO = Path(__file__).resolve().parents[2]
DEBUG_CONFIG = REPO / "configs" / "debug.yaml"
NAMES = ["blicket", "dax", "wug", "toma"]


def _square_video(rng: np.random.Generator, frames: int = 8, size: int = 32) -> torch.Tensor:
    """A coloured square sliding over a flat background: [3, T, H, W] in [-1, 1]."""
    video = torch.full((3, frames, size, size), -0.5) + torch.tensor(rng.uniform(-0.3, 0.3, 3)).float()[:, None, None, None]
    color = torch.tensor(rng.uniform(-1, 1, 3)).float()
    x, y, dx = int(rng.integers(0, size // 2)), int(rng.integers(0, size // 2)), int(rng.integers(1, 3))
    for t in range(frames):
        left = min(x + dx * t, size - 10)
        video[:, t, y : y + 10, left : left + 10] = color[:, None, None]
    return video


def build_tiny_dataset(root: Path, num_videos: int = 6) -> Path:
    """A GroundedWorld-shaped folder: memory/, videos/train/ and a build-prompts-style prompts/ manifest."""
    rng = np.random.default_rng(0)
    (root / "memory" / "images").mkdir(parents=True)
    with ManifestWriter(root / "memory", shard_size=100) as memory:
        for i, name in enumerate(NAMES * 2):
            image = torch.full((3, 32, 32), -1.0)
            image[:, 8:24, 8:24] = torch.tensor(rng.uniform(-1, 1, 3)).float()[:, None, None]
            save_image(image, root / "memory" / "images" / f"{i}.png")
            memory.write({"id": f"m{i}", "text": f"A photo of a {name}.", "image": f"images/{i}.png",
                          "kind": "subject", "subject": name, "scene": None})
    videos_dir = root / "videos" / "train"
    (videos_dir / "clips").mkdir(parents=True)
    rows = []
    for i in range(num_videos):
        name = NAMES[i % len(NAMES)]
        write_mp4(_square_video(rng), videos_dir / "clips" / f"{i}.mp4", fps=8, lossless=True)
        rows.append({"id": f"v{i}", "caption": f"A {name} moves right in the desert.", "video": f"clips/{i}.mp4",
                     "subjects": [name]})
    with ManifestWriter(videos_dir, shard_size=100) as writer:
        writer.write_many(rows)
    prompts_dir = root / "prompts"
    with ManifestWriter(prompts_dir, shard_size=100) as writer:
        for i, row in enumerate(rows):
            segments = [{"type": "text", "text": f"A photo of a {row['subjects'][0]}. "},
                        {"type": "image", "path": f"../memory/images/{i % len(NAMES)}.png"},
                        {"type": "text", "text": f" + {row['caption']}"}]
            writer.write({"id": row["id"], "caption": row["caption"], "video": f"../videos/train/{row['video']}",
                          "prompt": json.dumps({"task": "pretrain", "segments": segments})})
    return root


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_dataset(tmp_path_factory.mktemp("tiny_world"))


def debug_config(world: Path, out_dir: Path, *overrides: str) -> VimiConfig:
    """configs/debug.yaml on the tiny dataset, writing to out_dir."""
    return load_config(
        DEBUG_CONFIG,
        [f"data.world_dir={world}", f"data.train_manifest={world / 'prompts'}", f"train.out_dir={out_dir}",
         "train.progress=false", *overrides],
    )

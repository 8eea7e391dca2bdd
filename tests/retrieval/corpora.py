"""Small image-text memories and video-text datasets written with the real manifest writer."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vimi.data.manifest import ManifestWriter
from vimi.data.video_io import write_mp4

SUBJECTS = ["blicket", "zorblax", "dax", "wug", "toma", "fep", "kiki", "bouba"]
SCENES = ["meadow", "desert", "ocean", "forest"]


def pattern(seed: int, size: int = 32) -> np.ndarray:
    """A distinct smooth random image (uint8 [H, W, 3]); smooth so that its dHash is stable."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))


def write_memory(root: Path, shard_size: int = 7) -> dict:
    """(id, text, image) memory: 3 images per subject, 2 per scene, 10 distractors; returns id -> row."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in SUBJECTS:
        for j, scene in enumerate(SCENES[:3]):
            rows.append(
                {"id": f"{name}-{j}", "text": f"A photo of a {name} in the {scene}.", "kind": "subject"}
            )
    for scene in SCENES:
        for j in range(2):
            rows.append({"id": f"{scene}-{j}", "text": f"A view of the {scene}.", "kind": "scene"})
    for j in range(10):
        rows.append(
            {"id": f"other-{j}", "text": f"A red teapot number {j} resting on a table.", "kind": "distractor"}
        )
    (root / "images").mkdir(exist_ok=True)
    for seed, row in enumerate(rows, start=1):
        row["image"] = f"images/{row['id']}.png"
        Image.fromarray(pattern(seed)).save(root / row["image"])
    with ManifestWriter(root, shard_size=shard_size) as writer:
        writer.write_many(rows)
    return {row["id"]: row for row in rows}


def write_videos(
    root: Path, memory_root: Path | None = None, leak_id: str = "", extra_rows=(), shard_size: int = 4
) -> list[dict]:
    """(id, caption, video) rows over the subjects; video 0 copies memory image `leak_id` into its frames."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "clips").mkdir(exist_ok=True)
    rows = []
    for i, name in enumerate(SUBJECTS):
        scene = SCENES[i % len(SCENES)]
        frame = pattern(1000 + i)
        if i == 0 and leak_id:
            frame = np.asarray(Image.open(memory_root / "images" / f"{leak_id}.png").convert("RGB"))
        clip = torch.from_numpy(np.stack([frame] * 4)).permute(3, 0, 1, 2).float() / 127.5 - 1  # [C, T, H, W]
        write_mp4(clip, root / "clips" / f"v{i}.mp4", fps=8)
        rows.append(
            {
                "id": f"v{i}",
                "caption": f"A {name} spins slowly in the {scene}.",
                "video": f"clips/v{i}.mp4",
                "subjects": [name],
                "scene": scene,
            }
        )
    rows.extend(extra_rows)
    with ManifestWriter(root, shard_size=shard_size) as writer:
        writer.write_many(rows)
    return rows

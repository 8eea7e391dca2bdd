"""Building a GroundedWorld folder: world.json, the memory corpus, train and held-out videos with exact
ground truth. Same config and seed, same bytes.

    WORLD/world.json                  summary, subject/scene/motion tables, the WorldConfig used
    WORLD/memory/                     image-text manifest + PNGs (see vimi.data.world.memory)
    WORLD/videos/{train,heldout}/     video-text manifests + lossless mp4 clips + ground-truth columns

The folder is built in a hidden staging folder beside WORLD and renamed into place when complete,
so WORLD is either absent, the old world, or the complete new one.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from vimi.config import WorldConfig, to_dict
from vimi.data.manifest import ManifestWriter
from vimi.data.world.captions import video_caption
from vimi.data.world.media import write_lossless_mp4
from vimi.data.world.memory import write_memory
from vimi.data.world.motions import MOTIONS, SPEEDS, motion_phrase
from vimi.data.world.presets import apply_preset, check_world_config
from vimi.data.world.render import WorldRenderer
from vimi.data.world.scenes import SCENES
from vimi.data.world.shapes import SHAPE_FAMILIES
from vimi.data.world.subjects import Subject, sample_subjects
from vimi.data.world.textures import TEXTURE_KINDS
from vimi.data.world.videos import plan_videos
from vimi.errors import DataError
from vimi.utils.atomic import atomic_directory, write_json_atomic

log = logging.getLogger(__name__)

WORLD_FILE = "world.json"
WORLD_FORMAT = "vimi-world"
SPLITS = ("train", "heldout")
VIDEO_BATCH = 128
_float_grid = pa.list_(pa.list_(pa.float32()))
VIDEO_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("caption", pa.string()),
        ("video", pa.string()),
        ("split", pa.string()),
        ("subjects", pa.list_(pa.string())),
        ("subject_names", pa.list_(pa.string())),
        ("motions", pa.list_(pa.string())),
        ("speeds", pa.list_(pa.string())),
        ("scene", pa.string()),
        ("scene_variant", pa.int32()),
        ("num_frames", pa.int32()),
        ("fps", pa.int32()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("boxes", pa.list_(pa.list_(pa.list_(pa.int32())))),  # [K][T][4] x0, y0, x1, y1 (exclusive)
        ("centers", pa.list_(_float_grid)),  # [K][T][2] pixels
        ("scales", _float_grid),  # [K][T] sprite diameter / min(H, W)
        ("angles", _float_grid),  # [K][T] radians, counter-clockwise
    ]
)


@dataclass
class WorldSummary:
    """What a build wrote: the folder, row counts, and seconds per stage."""

    out_dir: Path
    config: WorldConfig
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def build_world(
    cfg: WorldConfig,
    out_dir: str | Path,
    overwrite: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> WorldSummary:
    """Build the world described by `cfg` (its preset applied) into `out_dir`; `progress(stage, rows)`."""
    cfg = apply_preset(cfg)
    check_world_config(cfg)
    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)
    # Thousands of small files: no per-file fsync (a lost world is rebuilt from its seed), but the folder
    # appears complete or not at all, and an old world is replaced only once the new one is whole.
    with atomic_directory(out_dir, fsync=False) as staging:
        summary = _build_into(staging, out_dir, cfg, progress)
    return summary


def _build_into(
    staging: Path, out_dir: Path, cfg: WorldConfig, progress: Callable[[str, int], None] | None
) -> WorldSummary:
    """Render and write every part of the world into `staging` (renamed to `out_dir` by the caller)."""
    summary = WorldSummary(out_dir, cfg)
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        summary.seconds[stage] = now - clock
        clock = now

    def report(stage: str) -> Callable[[int], None]:
        return lambda rows: progress(stage, rows) if progress else None

    subjects, distractors = sample_world_subjects(cfg)
    renderer = WorldRenderer(
        [s.appearance for s in subjects + distractors],
        cfg.height,
        cfg.width,
        cfg.seed,
        cfg.background_variants,
        plain_scenes=cfg.plain_scenes,
    )
    lap("sprites")
    memory_counts = write_memory(cfg, renderer, subjects, distractors, staging / "memory", report("memory"))
    summary.counts.update({f"memory_{kind}": n for kind, n in memory_counts.items()})
    lap("memory")
    for split, count in (("train", cfg.num_train_videos), ("heldout", cfg.num_heldout_videos)):
        pool = np.array([i for i, s in enumerate(subjects) if s.split == split])
        _write_videos(cfg, renderer, subjects, split, pool, count, staging / "videos" / split, report(split))
        summary.counts[f"videos_{split}"] = count
        lap(f"videos_{split}")
    summary.counts.update(
        subjects_train=sum(s.split == "train" for s in subjects),
        subjects_heldout=sum(s.split == "heldout" for s in subjects),
        distractor_subjects=len(distractors),
        scenes=len(SCENES),
        motions=len(MOTIONS),
    )
    write_json_atomic(staging / WORLD_FILE, _world_json(cfg, subjects, distractors, renderer, summary.counts))
    lap("finish")
    return summary


def sample_world_subjects(cfg: WorldConfig) -> tuple[list[Subject], list[Subject]]:
    """(train + held-out subjects, distractor subjects) of a world; names unique across all of them."""
    rng = np.random.default_rng([cfg.seed, 11])
    splits = {"train": cfg.num_train_subjects, "heldout": cfg.num_heldout_subjects}
    if cfg.num_distractor_pairs > 0:
        splits["distractor"] = cfg.distractor_subjects
    everyone = sample_subjects(
        rng,
        splits,
        {"train": "s", "heldout": "h", "distractor": "d"},
        shape_families=tuple(cfg.shape_families) or SHAPE_FAMILIES,
        texture_kinds=tuple(cfg.texture_kinds) or TEXTURE_KINDS,
    )
    return [s for s in everyone if s.split != "distractor"], [s for s in everyone if s.split == "distractor"]


def motion_pool(cfg: WorldConfig) -> np.ndarray:
    """Indices into MOTIONS of the motions a world's clips are drawn from (world.motion_kinds; empty: all)."""
    return np.array([i for i, m in enumerate(MOTIONS) if not cfg.motion_kinds or m.kind in cfg.motion_kinds])


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    if not overwrite:
        raise DataError(f"{out_dir} already exists; pass --overwrite to replace it or choose another --out")
    if not (out_dir / WORLD_FILE).is_file():
        raise DataError(
            f"{out_dir} is not empty and holds no {WORLD_FILE}; refusing to delete it (choose another --out)"
        )


def _write_videos(
    cfg: WorldConfig,
    renderer: WorldRenderer,
    subjects: list[Subject],
    split: str,
    pool: np.ndarray,
    count: int,
    out_dir: Path,
    on_rows: Callable[[int], None],
) -> None:
    """Render `count` clips of `split` in batches, encode each as lossless mp4, stream the rows."""
    with ManifestWriter(out_dir, cfg.shard_size, VIDEO_SCHEMA, extra={"split": split}) as writer:
        for start in range(0, count, VIDEO_BATCH):
            n = min(VIDEO_BATCH, count - start)
            rng = np.random.default_rng([cfg.seed, 41, SPLITS.index(split), start])
            plan = plan_videos(
                rng, n, pool, len(SCENES), cfg.num_frames, cfg.height, cfg.width,
                cfg.two_subject_fraction, cfg.background_variants, motion_pool(cfg),
            )  # fmt: skip
            rendered = renderer.render_batch(plan.background_index, plan.subjects, plan.poses)
            for j in range(n):
                index = start + j
                relative = f"clips/{index // 1000:03d}/{index:06d}.mp4"
                (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
                write_lossless_mp4(rendered["frames"][j], out_dir / relative, cfg.fps)
                writer.write(_video_row(cfg, subjects, split, index, relative, plan, rendered["boxes"], j))
            on_rows(n)


def _video_row(cfg, subjects, split, index, relative, plan, boxes, j) -> dict:
    """The manifest row of clip j of a plan: caption and exact ground truth."""
    present = int((plan.subjects[j] >= 0).sum())
    who = [subjects[s] for s in plan.subjects[j, :present]]
    motions = [MOTIONS[m].id for m in plan.motions[j, :present]]
    speeds = [
        "none" if MOTIONS[m].kind == "still" else SPEEDS[v]
        for m, v in zip(plan.motions[j, :present], plan.speeds[j, :present])
    ]
    scene = SCENES[plan.scene[j]]
    phrases = [motion_phrase(m, v) for m, v in zip(motions, speeds)]
    poses = {name: value[j, :present] for name, value in plan.poses.items()}  # [K, T] each
    return {
        "id": f"{split}-{index:06d}",
        "caption": video_caption([s.name for s in who], phrases, scene, int(plan.template[j])),
        "video": relative,
        "split": split,
        "subjects": [s.id for s in who],
        "subject_names": [s.name for s in who],
        "motions": motions,
        "speeds": speeds,
        "scene": scene.id,
        "scene_variant": int(plan.variant[j]),
        "num_frames": cfg.num_frames,
        "fps": cfg.fps,
        "height": cfg.height,
        "width": cfg.width,
        "boxes": boxes[j, :present].tolist(),
        "centers": np.stack([poses["cx"], poses["cy"]], axis=-1).tolist(),  # [K, T, 2]
        "scales": poses["scale"].tolist(),
        "angles": poses["angle"].tolist(),
    }


def _world_json(cfg, subjects, distractors, renderer, counts) -> dict:
    return {
        "format": WORLD_FORMAT,
        "version": 1,
        "config": to_dict(cfg),
        "counts": counts,
        "memory": "memory",
        "videos": {split: f"videos/{split}" for split in SPLITS},
        "sprite_size": renderer.sprite_size,
        "subjects": [s.to_dict() for s in subjects],
        "distractor_subjects": [s.to_dict() for s in distractors],
        "scenes": [
            {
                "id": scene.id,
                "name": scene.name,
                "phrase": scene.phrase,
                "split": "train",
                "mean_rgb": [round(float(c), 4) for c in renderer.backgrounds[i].mean(axis=(0, 1, 2))],
            }
            for i, scene in enumerate(SCENES)
        ],
        "motions": [{"id": m.id, "phrase": m.phrase, "kind": m.kind} for m in MOTIONS],
        "speeds": list(SPEEDS),
    }

"""The world's image-text memory: subject images (named), scene images and distractor pairs.

Rows: id, text, image (PNG path relative to WORLD/memory), kind (subject | scene | distractor),
subject (subject id or None), scene (scene id or None). Written streaming through ManifestWriter.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from vimi.config import WorldConfig
from vimi.data.manifest import ManifestWriter
from vimi.data.world.captions import distractor_caption, scene_caption, subject_caption
from vimi.data.world.media import write_png
from vimi.data.world.render import WorldRenderer
from vimi.data.world.scenes import SCENES, scene_background
from vimi.data.world.subjects import Subject

MEMORY_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("image", pa.string()),
        ("kind", pa.string()),
        ("subject", pa.string()),
        ("scene", pa.string()),
    ]
)
REFERENCE_SCALE = 0.7
IMAGE_SCALE = (0.3, 0.7)
BATCH = 512
FILES_PER_FOLDER = 1000


def write_memory(
    cfg: WorldConfig,
    renderer: WorldRenderer,
    subjects: list[Subject],
    distractors: list[Subject],
    out_dir: Path,
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Render and write the whole memory corpus under `out_dir`; returns row counts per kind.

    Renderer indices: subjects first (0..len(subjects)-1), then distractors. Fills each Subject's `images`.
    """
    counts = {"subject": 0, "scene": 0, "distractor": 0}
    with ManifestWriter(out_dir, shard_size=cfg.shard_size, schema=MEMORY_SCHEMA, prefix="part") as writer:
        for rows in _subject_rows(cfg, renderer, subjects, out_dir):
            writer.write_many(rows)
            counts["subject"] += len(rows)
            if on_rows:
                on_rows(len(rows))
        rows = _scene_rows(cfg, out_dir)
        writer.write_many(rows)
        counts["scene"] += len(rows)
        for rows in _distractor_rows(cfg, renderer, len(subjects), distractors, out_dir):
            writer.write_many(rows)
            counts["distractor"] += len(rows)
            if on_rows:
                on_rows(len(rows))
    return counts


def _random_placement(rng: np.random.Generator, count: int, height: int, width: int) -> dict[str, np.ndarray]:
    """Poses [count, 1, 1] for still images: scale in IMAGE_SCALE, fully inside the frame, upright."""
    scale = rng.uniform(*IMAGE_SCALE, count)
    radius = scale * min(height, width) / 2
    cx = rng.uniform(radius, width - radius)
    cy = rng.uniform(radius, height - radius)
    as_pose = lambda a: np.asarray(a, np.float32).reshape(count, 1, 1)  # noqa: E731
    return {"cx": as_pose(cx), "cy": as_pose(cy), "scale": as_pose(scale), "angle": as_pose(np.zeros(count))}


def _subject_rows(cfg: WorldConfig, renderer: WorldRenderer, subjects: list[Subject], out_dir: Path):
    """Per subject: image 0 the reference (plain backdrop, centred), then random scene/scale/position."""
    per = cfg.images_per_subject
    jobs = [(s, j) for s in range(len(subjects)) for j in range(per)]
    for start in range(0, len(jobs), BATCH):
        chunk = jobs[start : start + BATCH]
        rng = np.random.default_rng([cfg.seed, 21, start])
        count = len(chunk)
        poses = _random_placement(rng, count, cfg.height, cfg.width)
        scene = rng.integers(len(SCENES), size=count)
        variant = rng.integers(cfg.background_variants, size=count)
        template = rng.integers(0, 1000, size=count)
        reference = np.array([j == 0 for _, j in chunk])
        scene = np.where(reference, renderer.plain_index, scene)
        poses["cx"][reference], poses["cy"][reference] = cfg.width / 2, cfg.height / 2
        poses["scale"][reference] = REFERENCE_SCALE
        index = np.array([[s] for s, _ in chunk])
        frames = renderer.render_batch(np.stack([scene, variant], 1), index, poses)["frames"][:, 0]
        rows = []
        for n, (s, j) in enumerate(chunk):
            subject = subjects[s]
            relative = f"subjects/{subject.id}/{j:03d}.png"
            (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            write_png(frames[n], out_dir / relative)
            subject.images.append(relative)
            where = None if reference[n] else SCENES[scene[n]]
            rows.append(
                {
                    "id": f"subject-{subject.id}-{j:03d}",
                    "text": subject_caption(subject.name, where, int(template[n])),
                    "image": relative,
                    "kind": "subject",
                    "subject": subject.id,
                    "scene": None if where is None else where.id,
                }
            )
        yield rows


def _scene_rows(cfg: WorldConfig, out_dir: Path) -> list[dict]:
    """Empty scene images; variants beyond the renderer's bank are new procedural variants."""
    rows = []
    for scene in SCENES:
        for j in range(cfg.images_per_scene):
            image = scene_background(scene, cfg.height, cfg.width, j, cfg.seed, cfg.plain_scenes)
            relative = f"scenes/{scene.id}/{j:03d}.png"
            (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            write_png((image * 255 + 0.5).astype(np.uint8), out_dir / relative)
            rows.append(
                {
                    "id": f"scene-{scene.id}-{j:03d}",
                    "text": scene_caption(scene, j),
                    "image": relative,
                    "kind": "scene",
                    "subject": None,
                    "scene": scene.id,
                }
            )
    return rows


def _distractor_rows(
    cfg: WorldConfig, renderer: WorldRenderer, first_index: int, distractors: list[Subject], out_dir: Path
):
    """Distractor pairs: row r shows pool image r % pool (one file per row unless distractor_images > 0)."""
    pairs = cfg.num_distractor_pairs
    if pairs == 0:
        return
    pool = min(pairs, cfg.distractor_images) if cfg.distractor_images > 0 else pairs
    rng = np.random.default_rng([cfg.seed, 31])
    image_subject = np.arange(pool) % len(distractors)  # every distractor subject gets images
    image_scene = rng.integers(len(SCENES), size=pool)
    image_variant = rng.integers(cfg.background_variants, size=pool)
    for start in range(0, pairs, BATCH * 8):
        stop = min(start + BATCH * 8, pairs)
        rows_rng = np.random.default_rng([cfg.seed, 32, start])
        template = rows_rng.integers(0, 1000, size=stop - start)
        new_images = np.arange(start, min(stop, pool))  # images first shown by these rows
        if len(new_images):
            poses = _random_placement(rows_rng, len(new_images), cfg.height, cfg.width)
            backgrounds = np.stack([image_scene[new_images], image_variant[new_images]], 1)
            index = (first_index + image_subject[new_images])[:, None]
            frames = renderer.render_batch(backgrounds, index, poses)["frames"][:, 0]
            for n, i in enumerate(new_images):
                path = out_dir / _distractor_path(int(i))
                path.parent.mkdir(parents=True, exist_ok=True)
                write_png(frames[n], path)
        rows = []
        for r in range(start, stop):
            i = r % pool
            subject, scene = distractors[image_subject[i]], SCENES[image_scene[i]]
            rows.append(
                {
                    "id": f"distractor-{r:07d}",
                    "text": distractor_caption(subject.name, scene, int(template[r - start])),
                    "image": _distractor_path(i),
                    "kind": "distractor",
                    "subject": subject.id,
                    "scene": scene.id,
                }
            )
        yield rows


def _distractor_path(image: int) -> str:
    return f"distractors/{image // FILES_PER_FOLDER:04d}/{image % FILES_PER_FOLDER:03d}.png"

"""Building and loading a world: determinism, splits, captions, memory, lossless ground truth."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vimi.config import WorldConfig
from vimi.data.manifest import count_rows, iter_records
from vimi.data.world import MOTION_IDS, SCENES, apply_preset, build_world, load_world, motion_phrase
from vimi.data.world.media import read_mp4_frames
from vimi.errors import DataError


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def world_digest(root: Path) -> str:
    """SHA-256 of what a world holds: world.json less its config, every manifest row, every decoded pixel.

    Decoded pixels and rows rather than file bytes, so that a new Parquet or mp4 writer does not change it."""
    digest = hashlib.sha256()
    info = json.loads((root / "world.json").read_text())
    info.pop("config")  # gains a key with every new WorldConfig field, whatever its value
    digest.update(json.dumps(info, sort_keys=True).encode())
    for folder, column in (("memory", "image"), ("videos/train", "video"), ("videos/heldout", "video")):
        for row in iter_records(root / folder):
            digest.update(json.dumps(row, sort_keys=True).encode())
            path = root / folder / row[column]
            pixels = (
                read_mp4_frames(path) if column == "video" else np.asarray(Image.open(path).convert("RGB"))
            )
            digest.update(pixels.tobytes())
    return digest.hexdigest()


TINY_SEED_3_DIGEST = "aa9445f8b25eb4f52040ab13384724e07c583acb21bdcb977d09ce61eae56af6"
"""world_digest of the tiny world at seed 3, measured before the easy-world fields (shape_families,
texture_kinds, motion_kinds, plain_scenes) existed. A change meant to alter the world updates it."""


def test_default_world_is_the_one_built_before_the_easy_fields(tiny_world_dir):
    # Every draw of the full world (subjects, motions, poses, scenes, memory) must be what it was, so that
    # worlds, checkpoints and measurements made before stay comparable with the same seed.
    assert world_digest(tiny_world_dir) == TINY_SEED_3_DIGEST
    config = json.loads((tiny_world_dir / "world.json").read_text())["config"]
    assert config["shape_families"] == config["texture_kinds"] == config["motion_kinds"] == []
    assert config["plain_scenes"] is False


def test_same_seed_same_bytes_other_seed_differs(tiny_world_dir, tmp_path):
    again = tmp_path / "again"
    build_world(WorldConfig(preset="tiny", seed=3), again)
    first, second = _hashes(tiny_world_dir), _hashes(again)
    assert len(first) > 100 and first == second
    other = tmp_path / "other"
    build_world(WorldConfig(preset="tiny", seed=4, num_distractor_pairs=0), other)
    third = _hashes(other)
    assert third["world.json"] != first["world.json"]
    assert third["videos/train/clips/000/000000.mp4"] != first["videos/train/clips/000/000000.mp4"]


def test_world_tables(tiny_world):
    cfg = apply_preset(WorldConfig(preset="tiny"))
    assert len(tiny_world.subjects_in("train")) == cfg.num_train_subjects
    assert len(tiny_world.subjects_in("heldout")) == cfg.num_heldout_subjects
    names = [s.name for s in tiny_world.subjects + tiny_world.distractor_subjects]
    assert len(set(names)) == len(names)
    assert {"left", "right", "up", "down", "up_left", "bounce", "spin", "grow", "shrink", "still"} <= set(
        MOTION_IDS
    )
    info = json.loads((tiny_world.root / "world.json").read_text())
    assert len(info["scenes"]) == len(SCENES) >= 6 and info["config"]["preset"] == "tiny"
    assert tiny_world.subject(names[0]).name == names[0]
    with pytest.raises(DataError, match="no subject"):
        tiny_world.subject("not-a-subject")


def test_heldout_names_never_occur_in_training_videos(tiny_world):
    heldout = {s.name for s in tiny_world.subjects_in("heldout")}
    train_ids = {s.id for s in tiny_world.subjects_in("train")}
    for record in tiny_world.videos("train"):
        assert not _words(record.caption) & heldout, record.caption
        assert set(record.subjects) <= train_ids
    heldout_ids = {s.id for s in tiny_world.subjects_in("heldout")}
    for record in tiny_world.videos("heldout"):
        assert set(record.subjects) <= heldout_ids


def test_captions_name_subjects_motions_and_scene(tiny_world):
    records = list(tiny_world.videos("train")) + list(tiny_world.videos("heldout"))
    assert any(len(r.subjects) == 2 for r in records) and any(len(r.subjects) == 1 for r in records)
    for record in records:
        scene = SCENES[tiny_world.scene_index(record.scene)]
        assert scene.name in record.caption
        for name, motion, speed in zip(record.subject_names, record.motions, record.speeds):
            assert name in _words(record.caption)
            assert motion_phrase(motion, speed) in record.caption


def test_memory_has_images_of_every_subject_and_resolving_paths(tiny_world):
    rows = list(iter_records(tiny_world.memory_dir))
    assert {r["kind"] for r in rows} == {"subject", "scene", "distractor"}
    for row in rows:
        assert (tiny_world.memory_dir / row["image"]).is_file(), row["image"]
    for subject in tiny_world.subjects:
        mine = [r for r in rows if r["kind"] == "subject" and r["subject"] == subject.id]
        assert len(mine) >= 2 and all(subject.name in _words(r["text"]) for r in mine)
        assert tiny_world.reference_image(subject.id).is_file()
    distractor_names = {s.name for s in tiny_world.distractor_subjects}
    world_names = {s.name for s in tiny_world.subjects}
    for row in rows:
        if row["kind"] == "distractor":
            assert _words(row["text"]) & distractor_names and not _words(row["text"]) & world_names


def test_mp4_frames_equal_the_ground_truth_rendering(tiny_world):
    for split in ("train", "heldout"):
        for record in tiny_world.videos(split):
            decoded = read_mp4_frames(record.video)
            cfg = tiny_world.config
            assert decoded.shape == (cfg.num_frames, cfg.height, cfg.width, 3)
            np.testing.assert_array_equal(decoded, tiny_world.render_ground_truth(record))


def test_ground_truth_boxes_contain_each_subjects_mask_centroid(tiny_world):
    renderer = tiny_world.renderer
    ys, xs = np.mgrid[0 : tiny_world.config.height, 0 : tiny_world.config.width] + 0.5
    for record in tiny_world.videos("train"):
        count, frames = len(record.subjects), tiny_world.config.num_frames
        assert record.boxes.shape == (count, frames, 4) and record.scales.shape == (count, frames)
        poses = {"cx": record.centers[None, ..., 0], "cy": record.centers[None, ..., 1],
                 "scale": record.scales[None], "angle": record.angles[None]}  # fmt: skip
        index = np.array([[tiny_world.subject_index(s) for s in record.subjects]])
        background = np.array([[tiny_world.scene_index(record.scene), record.scene_variant]])
        alpha = renderer.render_batch(background, index, poses, return_alpha=True)["alpha"][0]  # [K, T, H, W]
        for k in range(count):
            for t in range(frames):
                mass = alpha[k, t].sum()
                cx, cy = (alpha[k, t] * xs).sum() / mass, (alpha[k, t] * ys).sum() / mass
                x0, y0, x1, y1 = record.boxes[k, t]
                assert x0 <= cx <= x1 and y0 <= cy <= y1, (record.id, k, t)


def test_motion_ground_truth_follows_the_caption(tiny_world):
    seen = set()
    for split in ("train", "heldout"):
        for record in tiny_world.videos(split):
            for k, motion in enumerate(record.motions):
                seen.add(motion)
                x, y = record.centers[k, :, 0], record.centers[k, :, 1]
                if "left" in motion:
                    assert x[-1] < x[0] - 2
                if "right" in motion:
                    assert x[-1] > x[0] + 2
                if motion.startswith("up"):
                    assert y[-1] < y[0] - 2
                if motion.startswith("down"):
                    assert y[-1] > y[0] + 2
                if motion == "grow":
                    assert np.all(np.diff(record.scales[k]) > 0)
                if motion == "shrink":
                    assert np.all(np.diff(record.scales[k]) < 0)
                if motion == "spin":
                    assert abs(record.angles[k, -1] - record.angles[k, 0]) > 1
                if motion == "still":
                    assert np.ptp(record.centers[k], axis=0).max() == 0 and record.speeds[k] == "none"
    assert len(seen) >= 8


def test_row_counts_match_the_config(tiny_world):
    cfg = tiny_world.config
    assert count_rows(tiny_world.video_dir("train")) == cfg.num_train_videos
    assert count_rows(tiny_world.video_dir("heldout")) == cfg.num_heldout_videos
    expected = (cfg.num_train_subjects + cfg.num_heldout_subjects) * cfg.images_per_subject
    expected += len(SCENES) * cfg.images_per_scene + cfg.num_distractor_pairs
    assert count_rows(tiny_world.memory_dir) == expected


def test_distractor_pairs_can_share_a_bounded_pool_of_image_files(tmp_path):
    out = tmp_path / "pool"
    build_world(
        WorldConfig(preset="tiny", num_distractor_pairs=50, distractor_images=7, distractor_subjects=3), out
    )
    rows = [r for r in iter_records(out / "memory") if r["kind"] == "distractor"]
    assert len(rows) == 50 and len({r["image"] for r in rows}) == 7
    assert len(list((out / "memory" / "distractors").rglob("*.png"))) == 7
    by_image = {}
    for row in rows:  # one image, one subject: captions of a shared image agree on who is in it
        assert by_image.setdefault(row["image"], (row["subject"], row["scene"])) == (
            row["subject"],
            row["scene"],
        )


def test_presets_fill_only_fields_left_at_defaults():
    cfg = apply_preset(WorldConfig(preset="gpu", num_train_videos=7))
    assert (cfg.num_frames, cfg.height, cfg.width) == (16, 64, 64) and cfg.num_train_videos == 7
    assert apply_preset(WorldConfig(preset="large")).num_distractor_pairs >= 1_000_000


def test_refuses_to_overwrite_or_delete_foreign_folders(tiny_world_dir, tmp_path):
    with pytest.raises(DataError, match="--overwrite"):
        build_world(WorldConfig(preset="tiny"), tiny_world_dir)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing to delete"):
        build_world(WorldConfig(preset="tiny"), foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(DataError, match="vimi world"):
        load_world(tmp_path / "missing")


def test_corrupt_world_file_is_a_data_error_naming_it(tmp_path):
    (tmp_path / "world.json").write_text('{"format": "vimi-grounded')
    with pytest.raises(DataError, match=r"world\.json: corrupt GroundedWorld file"):
        load_world(tmp_path)

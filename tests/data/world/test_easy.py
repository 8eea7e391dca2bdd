"""The easy world (rung 3 of the learning ladder): one solid ellipse per subject, translations only, plain
scenes, one subject a clip; truthful captions; ground truth the grounding scorer reads correctly."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vimi.config import EvalConfig, WorldConfig, load_config
from vimi.data.manifest import iter_records
from vimi.data.world import MOTIONS, SCENES, apply_preset, build_world, load_world, motion_phrase
from vimi.data.world.build import motion_pool, sample_world_subjects
from vimi.data.world.media import read_mp4_frames
from vimi.data.world.presets import check_world_config
from vimi.data.world.shapes import SHAPE_FAMILIES
from vimi.data.world.textures import TEXTURE_KINDS
from vimi.errors import ConfigError
from vimi.eval.bench import clearly_visible, ground_truth
from vimi.eval.grounding import GroundingScorer

# The easy preset at the tiny preset's sizes, 8 held-out subjects to choose among as the scorer's validity
# world has (builds in about a second).
EASY_TINY = WorldConfig(
    preset="easy",
    seed=5,
    num_train_subjects=6,
    num_heldout_subjects=8,
    num_train_videos=16,
    num_heldout_videos=24,
    images_per_subject=3,
    images_per_scene=2,
    num_distractor_pairs=20,
    distractor_subjects=4,
    background_variants=2,
)


@pytest.fixture(scope="module")
def easy_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("easy") / "world"
    build_world(EASY_TINY, out)
    return out


def test_easy_preset_is_small_made_easy_and_yields_to_explicit_values():
    easy, small = apply_preset(WorldConfig(preset="easy")), apply_preset(WorldConfig(preset="small"))
    assert (easy.shape_families, easy.texture_kinds, easy.motion_kinds) == (
        ["ellipse"],
        ["solid"],
        ["translate"],
    )
    assert easy.plain_scenes and easy.two_subject_fraction == 0.0
    sizes = (
        "num_frames",
        "height",
        "width",
        "num_train_subjects",
        "num_heldout_subjects",
        "num_train_videos",
    )
    assert all(getattr(easy, name) == getattr(small, name) for name in sizes)
    mine = apply_preset(WorldConfig(preset="easy", motion_kinds=["spin"], two_subject_fraction=0.5))
    assert mine.motion_kinds == ["spin"] and mine.two_subject_fraction == 0.5 and mine.plain_scenes
    easy.shape_families.append("star")  # the config's list is its own, not the preset table's
    assert apply_preset(WorldConfig(preset="easy")).shape_families == ["ellipse"]
    cfg = load_config(None, ["world.preset=easy", "world.shape_families=[ellipse, ring]"]).world
    assert apply_preset(cfg).shape_families == ["ellipse", "ring"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("shape_families", ["oval"]), ("texture_kinds", ["plaid"]), ("motion_kinds", ["left"])],
)
def test_unknown_family_kind_or_motion_kind_is_a_config_error_naming_the_key(field, value):
    with pytest.raises(
        ConfigError, match=rf"world\.{field} has unknown entries \['{value[0]}'\]; choose from"
    ):
        check_world_config(WorldConfig(**{field: value}))


def test_listing_every_family_kind_and_motion_draws_the_full_world():
    # The empty list means "all"; spelling all out must not change a single draw either.
    cfg = apply_preset(WorldConfig(preset="tiny"))
    spelled = dataclasses.replace(
        cfg,
        shape_families=list(SHAPE_FAMILIES),
        texture_kinds=list(TEXTURE_KINDS),
        motion_kinds=sorted({m.kind for m in MOTIONS}),
    )
    assert sample_world_subjects(spelled) == sample_world_subjects(cfg)
    np.testing.assert_array_equal(motion_pool(spelled), np.arange(len(MOTIONS)))
    np.testing.assert_array_equal(motion_pool(cfg), np.arange(len(MOTIONS)))


def test_easy_subjects_are_solid_ellipses_and_clips_single_translations(easy_world_dir):
    world = load_world(easy_world_dir)
    everyone = world.subjects + world.distractor_subjects
    assert len(everyone) == 6 + 8 + 4
    assert {(s.appearance["shape"]["family"], s.appearance["texture"]["kind"]) for s in everyone} == {
        ("ellipse", "solid")
    }
    # Held-out subjects are still other subjects: each its own colour.
    colours = {tuple(np.round(s.appearance["texture"]["colors"][0], 3)) for s in world.subjects}
    assert len(colours) == len(world.subjects)
    translations = {m.id: m for m in MOTIONS if m.kind == "translate"}
    records = list(world.videos("train")) + list(world.videos("heldout"))
    assert len({r.motions[0] for r in records}) >= 5
    for record in records:
        assert len(record.subjects) == 1 and record.motions[0] in translations
        assert record.speeds[0] in ("slow", "fast")
        # The caption says the motion the subject makes and names the scene it is drawn on.
        assert motion_phrase(record.motions[0], record.speeds[0]) in record.caption
        assert SCENES[world.scene_index(record.scene)].name in record.caption
        shift = record.centers[0, -1] - record.centers[0, 0]  # [2] pixels
        direction = np.asarray(translations[record.motions[0]].direction)
        assert shift @ direction > 0.9 * np.linalg.norm(shift) * np.linalg.norm(direction), record.id


def test_easy_scenes_are_flat_base_colours_in_clips_and_memory(easy_world_dir):
    world = load_world(easy_world_dir)
    for record in list(world.videos("heldout"))[:8]:
        frames = read_mp4_frames(record.video)  # [T, H, W, 3] uint8
        np.testing.assert_array_equal(frames, world.render_ground_truth(record))
        outside = np.ones(frames.shape[:3], bool)
        for t, (x0, y0, x1, y1) in enumerate(record.boxes[0]):
            outside[t, max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1] = False
        base = np.round(np.asarray(SCENES[world.scene_index(record.scene)].base) * 255)
        assert np.abs(frames[outside] - base).max() <= 1, record.id
    for row in iter_records(world.memory_dir):
        if row["kind"] == "scene":
            image = np.asarray(Image.open(world.memory_dir / row["image"]).convert("RGB"))
            base = np.round(np.asarray(SCENES[world.scene_index(row["scene"])].base) * 255)
            assert np.abs(image - base).max() <= 1, row["image"]


def test_grounding_scorer_reads_easy_ground_truth_as_right(easy_world_dir):
    # The decoded clips, not a re-rendering: a loader that drew other backgrounds than the build would fail.
    world = load_world(easy_world_dir)
    pool = [world.subject_index(s.id) for s in world.subjects_in("heldout")]
    scorer = GroundingScorer(world.renderer, EvalConfig(), pool)
    records = [r for r in world.videos("heldout") if clearly_visible(r)][:12]
    assert len(records) == 12
    scores = [scorer.score(read_mp4_frames(r.video), ground_truth(world, r), r.id).metrics() for r in records]
    means = {metric: np.mean([s[metric] for s in scores]) for metric in ("subject", "motion", "scene")}
    # Subjects differ only in colour and aspect here, so a near-twin may rarely be read instead (1 in 64
    # at seed 0); motion and scene have no such excuse.
    assert means["subject"] >= 11 / 12 and means["motion"] == means["scene"] == 1.0, means
    noise = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    broken = scorer.score(noise, ground_truth(world, records[0]), records[0].id).metrics()
    assert broken["subject"] == broken["motion"] == broken["scene"] == 0.0

"""The renderer: silhouettes, textures, scenes, pose conventions and motion semantics in pixels."""

import itertools

import numpy as np
import pytest

from vimi.data.world.motions import MOTION_IDS, MOTIONS, sample_poses
from vimi.data.world.render import WorldRenderer
from vimi.data.world.scenes import SCENES, scene_background
from vimi.data.world.shapes import SHAPE_FAMILIES, sample_shape, shape_alpha
from vimi.data.world.subjects import sample_appearance
from vimi.data.world.textures import TEXTURE_KINDS, sample_texture, texture_rgb

SIZE = 32


@pytest.fixture(scope="module")
def renderer() -> WorldRenderer:
    rng = np.random.default_rng(0)
    appearances = [sample_appearance(rng) for _ in range(6)]
    # A right-pointing arrow with no rotation of its own, to pin down the angle convention.
    appearances.append({"shape": {"family": "arrow", "shaft": 0.2, "head": 0.5, "rotation": 0.0},
                        "texture": sample_texture(rng)})  # fmt: skip
    return WorldRenderer(appearances, SIZE, SIZE, seed=0, background_variants=2)


def test_every_shape_family_rasterises_inside_the_unit_disc():
    assert len(SHAPE_FAMILIES) >= 8
    rng = np.random.default_rng(0)
    seen = {}
    while len(seen) < len(SHAPE_FAMILIES):
        spec = sample_shape(rng)
        seen.setdefault(spec["family"], spec)
    coords = (np.arange(64) + 0.5) / 64 * 2 - 1
    outside = np.hypot(*np.meshgrid(coords, coords)) > 1.0
    for family, spec in seen.items():
        alpha = shape_alpha(spec, 64)
        assert 0.1 < alpha.mean() < 0.9, family
        assert alpha[outside].max() == 0, f"{family} leaves the unit disc"


def test_textures_use_two_continuous_colours():
    assert len(TEXTURE_KINDS) >= 4
    rng = np.random.default_rng(1)
    specs = [sample_texture(rng) for _ in range(200)]
    assert {s["kind"] for s in specs} == set(TEXTURE_KINDS)
    first_colours = np.array([s["colors"][0] for s in specs])
    assert len(np.unique(first_colours.round(6), axis=0)) == 200  # a continuous space, not a palette
    stripes = texture_rgb({**specs[0], "kind": "stripes", "period": 0.5}, 32)
    assert len(np.unique(stripes.reshape(-1, 3), axis=0)) == 2


def test_scenes_have_distinct_colour_statistics():
    assert len(SCENES) >= 6
    means = np.array(
        [[scene_background(s, SIZE, SIZE, v).mean(axis=(0, 1)) for v in range(4)] for s in SCENES]
    )
    centres = means.mean(axis=1)  # [scenes, 3]
    spread = np.linalg.norm(means - centres[:, None], axis=-1).max()
    for i, j in itertools.combinations(range(len(SCENES)), 2):
        gap = np.linalg.norm(centres[i] - centres[j])
        assert gap > 2 * spread + 0.02, (SCENES[i].id, SCENES[j].id, gap, spread)


def _render_one(renderer, subject, poses, scene=0):
    batch = {k: np.asarray(v, np.float32).reshape(1, 1, -1) for k, v in poses.items()}
    return renderer.render_batch(np.array([[scene, 0]]), np.array([[subject]]), batch, return_alpha=True)


def _centroids(alpha):
    """alpha [T, H, W] -> (x, y) [T, 2] in pixel coordinates (centres at +0.5)."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    mass = alpha.sum(axis=(1, 2))
    return np.stack([(alpha * xs).sum(axis=(1, 2)) / mass, (alpha * ys).sum(axis=(1, 2)) / mass], axis=-1)


def test_angle_is_counter_clockwise_on_screen(renderer):
    arrow = 6
    out = _render_one(
        renderer, arrow, {"cx": [16, 16], "cy": [16, 16], "scale": [0.8, 0.8], "angle": [0, np.pi / 2]}
    )
    centroid = _centroids(out["alpha"][0, 0])
    assert centroid[0, 0] > 16.5  # unrotated: the arrow head (more mass) points right
    assert centroid[1, 1] < 15.5  # +90 degrees: it points up (y down on screen)


def test_boxes_hold_the_subject_pixels_and_are_tight(renderer):
    rng = np.random.default_rng(2)
    count, frames = 40, 4
    poses = {
        "cx": rng.uniform(8, 24, (count, 1, frames)),
        "cy": rng.uniform(8, 24, (count, 1, frames)),
        "scale": rng.uniform(0.2, 0.8, (count, 1, frames)),
        "angle": rng.uniform(-3, 3, (count, 1, frames)),
    }
    poses = {k: v.astype(np.float32) for k, v in poses.items()}
    subjects = rng.integers(0, 7, (count, 1))
    out = renderer.render_batch(np.zeros((count, 2), int), subjects, poses, return_alpha=True)
    assert out["frames"].shape == (count, frames, SIZE, SIZE, 3) and out["frames"].dtype == np.uint8
    for n, t in itertools.product(range(count), range(frames)):
        x0, y0, x1, y1 = out["boxes"][n, 0, t]
        mask = out["alpha"][n, 0, t] > 0.5
        assert mask[y0:y1, x0:x1].sum() == mask.sum() > 0
        assert mask[y0, x0:x1].any() and mask[y1 - 1, x0:x1].any()  # tight
        radius = poses["scale"][n, 0, t] * SIZE / 2
        assert x0 >= np.floor(poses["cx"][n, 0, t] - radius) and x1 <= np.ceil(poses["cx"][n, 0, t] + radius)


@pytest.mark.parametrize("motion", MOTION_IDS)
def test_motion_semantics_in_rendered_pixels(renderer, motion):
    index = np.array([MOTION_IDS.index(motion)])
    poses = sample_poses(index, np.array([1]), np.array([0.45]), 8, SIZE, SIZE, np.random.default_rng(3))
    out = _render_one(renderer, 0, {k: v[0] for k, v in poses.items()})
    alpha = out["alpha"][0, 0]  # [T, H, W]
    centroid, area = _centroids(alpha), alpha.sum(axis=(1, 2))
    shift = centroid[-1] - centroid[0]
    kind, direction = MOTIONS[index[0]].kind, MOTIONS[index[0]].direction
    if kind == "translate":
        for axis in (0, 1):
            if direction[axis] != 0:
                assert np.sign(shift[axis]) == np.sign(direction[axis]) and abs(shift[axis]) > 3
            else:
                assert abs(shift[axis]) < 1
    elif kind == "bounce":
        assert centroid[:, 1].min() < centroid[0, 1] - 3 and abs(shift[1]) < 1
    elif kind in ("grow", "shrink"):
        ratio = area[-1] / area[0]
        assert (ratio > 1.5) if kind == "grow" else (ratio < 1 / 1.5)
        assert np.all(np.diff(poses["scale"][0]) > 0) == (kind == "grow")
    elif kind == "spin":
        assert abs(poses["angle"][0, -1] - poses["angle"][0, 0]) >= np.pi / 2 - 1e-6
        assert not np.array_equal(out["frames"][0, 0], out["frames"][0, -1])
    else:
        assert (out["frames"][0] == out["frames"][0, :1]).all()


def test_render_subject_on_plain_backdrop(renderer):
    image = renderer.render_subject(0)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert (image[0, 0] == np.round(np.array([0.85] * 3) * 255)).all()  # corner: the backdrop
    assert not np.array_equal(image, renderer.render_subject(1))

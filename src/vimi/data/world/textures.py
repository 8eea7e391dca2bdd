"""Subject textures: solid, stripes at an angle, checker, dots, gradient, rings, split; colours are
continuous (HSV), so an appearance can be shown by an image but not pinned down in words."""

import colorsys
from collections.abc import Sequence

import numpy as np

TEXTURE_KINDS = ("solid", "stripes", "checker", "dots", "gradient", "rings", "split")


def sample_color(rng: np.random.Generator) -> list[float]:
    """A random saturated-enough RGB colour in [0, 1]."""
    hue, saturation, value = rng.uniform(0, 1), rng.uniform(0.45, 1.0), rng.uniform(0.55, 1.0)
    return [float(c) for c in colorsys.hsv_to_rgb(hue, saturation, value)]


def contrasting_color(rng: np.random.Generator, color: list[float]) -> list[float]:
    """A second colour visibly different from `color` (hue turned, value flipped)."""
    hue, _, value = colorsys.rgb_to_hsv(*color)
    hue = (hue + rng.uniform(0.2, 0.8)) % 1.0
    value = rng.uniform(0.15, 0.45) if value > 0.7 else rng.uniform(0.8, 1.0)
    return [float(c) for c in colorsys.hsv_to_rgb(hue, rng.uniform(0.3, 1.0), value)]


def sample_texture(rng: np.random.Generator, kinds: Sequence[str] = TEXTURE_KINDS) -> dict:
    """A random texture spec {"kind", "colors", params}; the kind is uniform over `kinds`."""
    kind = kinds[rng.integers(len(kinds))]
    first = sample_color(rng)
    spec: dict = {"kind": kind, "colors": [first, contrasting_color(rng, first)]}
    spec["angle"] = float(rng.uniform(0, np.pi))
    # Periods in sprite units ([-1, 1] spans 2): coarse enough to survive a 10-pixel sprite.
    spec["period"] = float(rng.uniform(0.45, 0.9))
    spec["phase"] = float(rng.uniform(0, 1))
    if kind == "dots":
        spec["dot_radius"] = float(rng.uniform(0.22, 0.38))
    return spec


def texture_rgb(spec: dict, size: int) -> np.ndarray:
    """The texture on a `size` x `size` grid of sprite coordinates in [-1, 1], float32 [size, size, 3]."""
    coords = (np.arange(size, dtype=np.float64) + 0.5) / size * 2 - 1
    u, v = np.meshgrid(coords, coords)
    c, s = np.cos(spec["angle"]), np.sin(spec["angle"])
    along, across = c * u + s * v, -s * u + c * v
    period, phase, kind = spec["period"], spec["phase"], spec["kind"]
    if kind == "solid":
        weight = np.zeros_like(u)
    elif kind == "stripes":
        weight = (np.floor(along / period + phase) % 2).astype(np.float64)
    elif kind == "checker":
        weight = ((np.floor(along / period + phase) + np.floor(across / period + phase)) % 2).astype(
            np.float64
        )
    elif kind == "dots":
        cell_u = (along / period + phase) % 1 - 0.5
        cell_v = (across / period + phase) % 1 - 0.5
        weight = (np.hypot(cell_u, cell_v) <= spec["dot_radius"]).astype(np.float64)
    elif kind == "gradient":
        weight = np.clip((along + 1) / 2, 0, 1)
    elif kind == "rings":
        weight = (np.floor(np.hypot(u, v) / (period / 2) + phase) % 2).astype(np.float64)
    elif kind == "split":
        weight = (along > (phase - 0.5)).astype(np.float64)
    else:
        raise ValueError(f"unknown texture kind {kind!r}; expected one of {TEXTURE_KINDS}")
    first, second = (np.asarray(col, dtype=np.float64) for col in spec["colors"])
    rgb = first * (1 - weight[..., None]) + second * weight[..., None]  # [size, size, 3]
    return rgb.astype(np.float32)

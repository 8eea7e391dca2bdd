"""Subject silhouettes: ten shape families with continuous random parameters.

A shape is a JSON-able dict {"family": ..., params}; `shape_alpha` rasterises it (anti-aliased by
supersampling) on sprite-local coordinates u, v in [-1, 1] (v points down). Every shape lies inside
the unit disc, so a rotated sprite never leaves its square.
"""

from collections.abc import Sequence

import numpy as np

SHAPE_FAMILIES = (
    "ellipse",
    "regular_polygon",
    "star",
    "random_polygon",
    "cross",
    "crescent",
    "ring",
    "heart",
    "blob",
    "arrow",
)


def sample_shape(rng: np.random.Generator, families: Sequence[str] = SHAPE_FAMILIES) -> dict:
    """A random shape spec; the family is uniform over `families` (a subset of SHAPE_FAMILIES)."""
    family = families[rng.integers(len(families))]
    turn = float(rng.uniform(0, 2 * np.pi))
    if family == "ellipse":
        return {"family": family, "rx": 0.92, "ry": float(rng.uniform(0.45, 0.8)), "rotation": turn}
    if family == "regular_polygon":
        return {"family": family, "sides": int(rng.integers(3, 7)), "rotation": turn}
    if family == "star":
        return {
            "family": family,
            "points": int(rng.integers(4, 8)),
            "inner": float(rng.uniform(0.38, 0.6)),
            "rotation": turn,
        }
    if family == "random_polygon":
        n = int(rng.integers(5, 10))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(0.45, 0.95, n)
        return {"family": family, "angles": angles.tolist(), "radii": radii.tolist()}
    if family == "cross":
        return {"family": family, "arm": float(rng.uniform(0.22, 0.4)), "rotation": turn}
    if family == "crescent":
        return {
            "family": family,
            "offset": float(rng.uniform(0.35, 0.65)),
            "inner": float(rng.uniform(0.7, 0.9)),
            "rotation": turn,
        }
    if family == "ring":
        return {"family": family, "inner": float(rng.uniform(0.35, 0.6)), "ry": float(rng.uniform(0.7, 0.92))}
    if family == "heart":
        return {"family": family, "rotation": float(rng.uniform(-0.4, 0.4))}
    if family == "blob":
        k = 5
        return {
            "family": family,
            "amplitudes": rng.uniform(0.0, 0.18, k).tolist(),
            "phases": rng.uniform(0, 2 * np.pi, k).tolist(),
        }
    # arrow
    return {
        "family": family,
        "shaft": float(rng.uniform(0.15, 0.3)),
        "head": float(rng.uniform(0.35, 0.55)),
        "rotation": turn,
    }


def shape_alpha(spec: dict, size: int, supersample: int = 4) -> np.ndarray:
    """Coverage in [0, 1] of the shape on a `size` x `size` grid, float32 [size, size]."""
    fine = size * supersample
    coords = (np.arange(fine, dtype=np.float64) + 0.5) / fine * 2 - 1
    u, v = np.meshgrid(coords, coords)  # [fine, fine] each; u to the right, v down
    inside = _inside(spec, u, v).astype(np.float32)
    # [fine, fine] -> [size, s, size, s] -> mean over the supersamples
    return inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def _rotate(u: np.ndarray, v: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    return c * u + s * v, -s * u + c * v


def _inside(spec: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    family = spec["family"]
    if "rotation" in spec:
        u, v = _rotate(u, v, spec["rotation"])
    radius = np.hypot(u, v)
    theta = np.arctan2(v, u)
    if family == "ellipse":
        return (u / spec["rx"]) ** 2 + (v / spec["ry"]) ** 2 <= 1
    if family == "regular_polygon":
        n = spec["sides"]
        angles = np.arange(n) * 2 * np.pi / n
        return _in_polygon(u, v, 0.95 * np.cos(angles), 0.95 * np.sin(angles))
    if family == "star":
        n = spec["points"]
        angles = np.arange(2 * n) * np.pi / n
        radii = np.where(np.arange(2 * n) % 2 == 0, 0.95, 0.95 * spec["inner"])
        return _in_polygon(u, v, radii * np.cos(angles), radii * np.sin(angles))
    if family == "random_polygon":
        angles, radii = np.asarray(spec["angles"]), np.asarray(spec["radii"])
        return _in_polygon(u, v, radii * np.cos(angles), radii * np.sin(angles))
    if family == "cross":
        arm, reach = spec["arm"], 0.92
        return ((np.abs(u) <= arm) & (np.abs(v) <= reach)) | ((np.abs(v) <= arm) & (np.abs(u) <= reach))
    if family == "crescent":
        return (radius <= 0.92) & (np.hypot(u - spec["offset"], v) > 0.92 * spec["inner"])
    if family == "ring":
        scaled = np.hypot(u / 0.92, v / spec["ry"])
        return (scaled <= 1) & (scaled >= spec["inner"])
    if family == "heart":
        # The classic implicit heart (point down), centred on (0, 0.3): radius <= 1.23 there, scaled to 0.94.
        x, y = u * 1.31, 0.3 - v * 1.31
        return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0
    if family == "blob":
        bumps = sum(
            a * np.cos((k + 2) * theta + p)
            for k, (a, p) in enumerate(zip(spec["amplitudes"], spec["phases"]))
        )
        limit = 0.95 / (1 + sum(spec["amplitudes"]))
        return radius <= limit * (1 + bumps)
    if family == "arrow":
        shaft, head = spec["shaft"], spec["head"]
        in_shaft = (u >= -0.9) & (u <= 0.3) & (np.abs(v) <= shaft / 2 + 0.05)
        in_head = (u >= 0.3) & (u <= 0.92) & (np.abs(v) <= head * (0.92 - u) / 0.62 + 0.02)
        return in_shaft | in_head
    raise ValueError(f"unknown shape family {family!r}; expected one of {SHAPE_FAMILIES}")


def _in_polygon(u: np.ndarray, v: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of every (u, v) against the closed polygon (xs, ys)."""
    inside = np.zeros(u.shape, dtype=bool)
    for x1, y1, x2, y2 in zip(xs, ys, np.roll(xs, -1), np.roll(ys, -1)):
        if y1 == y2:
            continue
        crosses = (y1 > v) != (y2 > v)
        x_at = x1 + (v - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (u < x_at)
    return inside

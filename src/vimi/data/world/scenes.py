"""Named scene backgrounds (meadow, desert, night sky, ...), procedural and each with its own colour
statistics, so a scene can be told from a frame's colours alone (the scene-accuracy metric). A plain
scene (world.plain_scenes) is the same scene drawn as its flat base colour: no pattern, no noise."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scene:
    """A named background: `id` is a slug, `name` the words captions use, `phrase` its caption phrase."""

    id: str
    name: str
    phrase: str
    base: tuple[float, float, float]
    """The dominant RGB colour in [0, 1]."""
    accent: tuple[float, float, float]
    """The colour of the scene's pattern (stars, waves, trunks, ...)."""


SCENES: tuple[Scene, ...] = (
    Scene("meadow", "meadow", "in the meadow", (0.33, 0.62, 0.22), (0.95, 0.9, 0.3)),
    Scene("desert", "desert", "in the desert", (0.88, 0.74, 0.47), (0.75, 0.58, 0.33)),
    Scene("night_sky", "night sky", "under the night sky", (0.04, 0.06, 0.2), (0.95, 0.95, 1.0)),
    Scene("ocean", "ocean", "over the ocean", (0.08, 0.33, 0.68), (0.55, 0.8, 0.95)),
    Scene("snowfield", "snowfield", "on the snowfield", (0.92, 0.94, 0.98), (0.7, 0.8, 0.92)),
    Scene("forest", "forest", "in the forest", (0.09, 0.28, 0.12), (0.35, 0.22, 0.1)),
    Scene("lava_field", "lava field", "across the lava field", (0.35, 0.06, 0.03), (1.0, 0.55, 0.1)),
    Scene("city", "city", "in the city", (0.52, 0.52, 0.56), (0.25, 0.25, 0.3)),
    Scene("sunset", "sunset", "against the sunset", (0.98, 0.55, 0.38), (0.75, 0.3, 0.5)),
    Scene("lavender_field", "lavender field", "in the lavender field", (0.58, 0.45, 0.78), (0.3, 0.55, 0.25)),
)

SCENE_IDS = tuple(scene.id for scene in SCENES)

# The backdrop of each subject's reference image in the memory: no scene at all.
PLAIN_BACKDROP = (0.85, 0.85, 0.85)


def scene_background(
    scene: Scene, height: int, width: int, variant: int, seed: int = 0, plain: bool = False
) -> np.ndarray:
    """Background `variant` of `scene`, float32 [height, width, 3] in [0, 1]; a pure function of its inputs.

    `plain`: the scene's flat base colour, the same for every variant and seed."""
    if plain:
        return np.full((height, width, 3), scene.base, np.float32)
    index = SCENE_IDS.index(scene.id)
    rng = np.random.default_rng([seed, 7, index, variant])
    y, x = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
    base = np.asarray(scene.base) * rng.uniform(0.93, 1.07)
    accent = np.asarray(scene.accent)
    pattern = _PATTERNS[scene.id](x, y, rng, height, width)  # [H, W] weight of the accent colour
    noise = rng.normal(0, 0.025, (height, width, 1))
    image = base * (1 - pattern[..., None]) + accent * pattern[..., None] + noise
    return np.clip(image, 0, 1).astype(np.float32)


def _specks(rng, height, width, density, size=1):
    """Random single-pixel (or size x size) specks with the given density."""
    specks = (rng.random((height, width)) < density).astype(np.float64)
    if size > 1:
        specks = np.maximum(specks, np.roll(specks, 1, axis=0))
    return specks


def _meadow(x, y, rng, h, w):
    grass = 0.12 * (np.sin(2 * np.pi * (x * 9 + rng.uniform()) + 3 * y) > 0.6)
    return np.clip(grass + _specks(rng, h, w, 0.03), 0, 1)


def _desert(x, y, rng, h, w):
    return 0.5 * (np.sin(2 * np.pi * (y * 3 + 0.4 * np.sin(2 * np.pi * x + rng.uniform(0, 6)))) > 0.3)


def _night_sky(x, y, rng, h, w):
    return _specks(rng, h, w, 0.04)


def _ocean(x, y, rng, h, w):
    return 0.6 * (np.sin(2 * np.pi * (y * 6 + 0.15 * np.sin(2 * np.pi * x * 2 + rng.uniform(0, 6)))) > 0.7)


def _snowfield(x, y, rng, h, w):
    return 0.6 * np.clip((y - 0.55) * 2, 0, 1) * (np.sin(2 * np.pi * (x * 2 + rng.uniform())) > 0)


def _forest(x, y, rng, h, w):
    trunks = np.zeros_like(x)
    for center in rng.uniform(0, 1, 4):
        trunks = np.maximum(trunks, np.abs(x - center) < 0.035)
    return 0.9 * trunks * (y > 0.3)


def _lava_field(x, y, rng, h, w):
    a, b = rng.uniform(0, 1, 2)
    flow = np.sin(2 * np.pi * (1.5 * x + a)) * np.sin(2 * np.pi * (1.2 * y + b)) + 0.3 * np.sin(
        2 * np.pi * (3 * x + 2 * y)
    )
    return 0.9 * (flow > 0.45)


def _city(x, y, rng, h, w):
    heights = rng.uniform(0.2, 0.7, 6)
    column = np.minimum((x * 6).astype(int), 5)
    buildings = y > (1 - heights[column])
    windows = (np.sin(2 * np.pi * x * 18) > 0.3) & (np.sin(2 * np.pi * y * 14) > 0.3)
    return 0.8 * buildings * (1 - 0.6 * windows)


def _sunset(x, y, rng, h, w):
    return np.clip(y * 1.2 - 0.1 + 0.05 * np.sin(2 * np.pi * (x + rng.uniform())), 0, 1) * 0.8


def _lavender_field(x, y, rng, h, w):
    rows = np.sin(2 * np.pi * (x * 7 + (y - 0.5) * 4 * (x - 0.5) + rng.uniform())) > 0.55
    return 0.7 * rows * (y > 0.35)


_PATTERNS = {
    "meadow": _meadow,
    "desert": _desert,
    "night_sky": _night_sky,
    "ocean": _ocean,
    "snowfield": _snowfield,
    "forest": _forest,
    "lava_field": _lava_field,
    "city": _city,
    "sunset": _sunset,
    "lavender_field": _lavender_field,
}

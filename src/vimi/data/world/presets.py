"""Named worlds. WorldConfig's defaults are the `small` preset; another preset replaces the fields
that were left at their defaults, so a YAML file or `--set world.x=...` still wins over the preset.

`easy` is rung 3 of the learning ladder (issue 34): the `small` world's sizes, but every subject a
solid-colour ellipse, every motion a translation, every scene its flat base colour and one subject per
clip. A model that cannot learn to move one simple subject and copy it from its image here will not in
the full world, so this is where that is checked first. Held-out subjects still exist (their own colours
and ellipse proportions), so subject-from-image prompts still test copying rather than recall; captions
and scene names are those of the full world.
"""

import copy
import dataclasses

from vimi.config import WorldConfig
from vimi.data.world.motions import MOTIONS
from vimi.data.world.shapes import SHAPE_FAMILIES
from vimi.data.world.textures import TEXTURE_KINDS
from vimi.errors import ConfigError

PRESETS: dict[str, dict] = {
    "tiny": {
        "num_train_subjects": 6,
        "num_heldout_subjects": 3,
        "num_train_videos": 24,
        "num_heldout_videos": 8,
        "images_per_subject": 3,
        "images_per_scene": 2,
        "num_distractor_pairs": 40,
        "distractor_subjects": 8,
        "background_variants": 2,
    },
    "small": {},
    # >= 1M memory pairs for retrieval at scale. Distractor pairs share a pool of 65,536 image files
    # (pair r shows image r % 65,536, each caption names that image's own subject and scene), which
    # keeps the build to minutes and the folder to ~300 MB instead of a million tiny files.
    "large": {
        "num_train_subjects": 1000,
        "num_heldout_subjects": 200,
        "num_train_videos": 10000,
        "num_heldout_videos": 1000,
        "images_per_subject": 16,
        "images_per_scene": 64,
        "num_distractor_pairs": 1_000_000,
        "distractor_subjects": 4096,
        "distractor_images": 65536,
        "shard_size": 50000,
    },
    "gpu": {
        "num_frames": 16,
        "height": 64,
        "width": 64,
        "num_train_subjects": 200,
        "num_heldout_subjects": 40,
        "num_train_videos": 10000,
        "num_heldout_videos": 512,
        "images_per_subject": 12,
        "num_distractor_pairs": 50000,
        "distractor_subjects": 2048,
    },
    "easy": {
        "shape_families": ["ellipse"],
        "texture_kinds": ["solid"],
        "motion_kinds": ["translate"],
        "plain_scenes": True,
        "two_subject_fraction": 0.0,
    },
}


def apply_preset(cfg: WorldConfig) -> WorldConfig:
    """The config with its preset's values filled into every field still at its default."""
    if cfg.preset not in PRESETS:
        raise ConfigError(f"world.preset={cfg.preset!r} is not a preset; choose one of {', '.join(PRESETS)}")
    defaults = WorldConfig()
    # Copies: a config's lists must not be the preset table's own (editing one would edit the preset).
    changes = {
        name: copy.deepcopy(value)
        for name, value in PRESETS[cfg.preset].items()
        if getattr(cfg, name) == getattr(defaults, name)
    }
    return dataclasses.replace(cfg, **changes)


def check_world_config(cfg: WorldConfig) -> None:
    """Reject sizes that cannot make a world, naming the key and the fix."""
    positive = ("num_frames", "height", "width", "fps", "num_train_subjects", "num_heldout_subjects",
                "images_per_subject", "background_variants", "shard_size")  # fmt: skip
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"world.{name} must be >= 1, got {getattr(cfg, name)}")
    for name in (
        "num_train_videos",
        "num_heldout_videos",
        "images_per_scene",
        "num_distractor_pairs",
        "distractor_images",
    ):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"world.{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.num_distractor_pairs > 0 and cfg.distractor_subjects < 1:
        raise ConfigError("world.distractor_subjects must be >= 1 when there are distractor pairs")
    if not 0.0 <= cfg.two_subject_fraction <= 1.0:
        raise ConfigError(f"world.two_subject_fraction must be in [0, 1], got {cfg.two_subject_fraction}")
    if min(cfg.height, cfg.width) < 8:
        raise ConfigError(f"world frames must be at least 8x8 pixels, got {cfg.height}x{cfg.width}")
    motion_kinds = tuple(dict.fromkeys(m.kind for m in MOTIONS))
    for name, known in (
        ("shape_families", SHAPE_FAMILIES),
        ("texture_kinds", TEXTURE_KINDS),
        ("motion_kinds", motion_kinds),
    ):
        unknown = [value for value in getattr(cfg, name) if value not in known]
        if unknown:
            raise ConfigError(
                f"world.{name} has unknown entries {unknown}; choose from {', '.join(known)} (empty: all)"
            )

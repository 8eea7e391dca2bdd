"""Subjects: a made-up name plus an appearance (silhouette + texture + colours) that only an image conveys."""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vimi.data.world.names import generate_names
from vimi.data.world.shapes import SHAPE_FAMILIES, sample_shape, shape_alpha
from vimi.data.world.textures import TEXTURE_KINDS, sample_texture, texture_rgb


@dataclass
class Subject:
    """One subject of the world; `appearance` = {"shape": {...}, "texture": {...}} rebuilds its sprite exactly."""

    id: str
    name: str
    split: str
    """train | heldout | distractor"""
    appearance: dict
    images: list[str] = field(default_factory=list)
    """Its memory images, relative to WORLD/memory; the first is the reference (plain backdrop)."""

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "split": self.split,
            "appearance": self.appearance,
            "images": self.images,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Subject":
        return cls(data["id"], data["name"], data["split"], data["appearance"], list(data.get("images", [])))


def sample_appearance(
    rng: np.random.Generator,
    shape_families: Sequence[str] = SHAPE_FAMILIES,
    texture_kinds: Sequence[str] = TEXTURE_KINDS,
) -> dict:
    """A random appearance: silhouette family and parameters, texture kind, continuous colours."""
    return {"shape": sample_shape(rng, shape_families), "texture": sample_texture(rng, texture_kinds)}


def sample_subjects(
    rng: np.random.Generator,
    splits: dict[str, int],
    prefix: dict[str, str],
    exclude_names: set[str] = frozenset(),
    shape_families: Sequence[str] = SHAPE_FAMILIES,
    texture_kinds: Sequence[str] = TEXTURE_KINDS,
) -> list[Subject]:
    """Subjects for each split in order, e.g. splits={"train": 48, "heldout": 16}; names unique over all.

    Appearances are drawn from `shape_families` x `texture_kinds` (the full world: every one of each)."""
    total = sum(splits.values())
    names = generate_names(rng, total, exclude=set(exclude_names))
    subjects, position = [], 0
    for split, count in splits.items():
        for i in range(count):
            appearance = sample_appearance(rng, shape_families, texture_kinds)
            subjects.append(Subject(f"{prefix[split]}{i:05d}", names[position], split, appearance))
            position += 1
    return subjects


def make_sprite(appearance: dict, size: int, supersample: int = 4) -> np.ndarray:
    """Premultiplied RGBA sprite, float32 [size, size, 4], of an appearance on sprite coords [-1, 1]."""
    alpha = shape_alpha(appearance["shape"], size, supersample)  # [S, S]
    rgb = texture_rgb(appearance["texture"], size)  # [S, S, 3]
    return np.concatenate([rgb * alpha[..., None], alpha[..., None]], axis=-1).astype(np.float32)

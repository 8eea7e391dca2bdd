"""Planning video clips: which scene, which subjects, which motions, and their exact per-frame poses."""

from dataclasses import dataclass

import numpy as np

from vimi.data.world.motions import MOTIONS, sample_poses

SINGLE_SCALE = (0.35, 0.55)
"""Sprite diameter / frame side of a lone subject (before grow/shrink)."""
PAIR_SCALE = (0.28, 0.42)


@dataclass
class VideoPlan:
    """A batch of N clips with up to two subjects each (index -1 = no second subject)."""

    scene: np.ndarray
    """int [N] scene index"""
    variant: np.ndarray
    """int [N] background variant"""
    subjects: np.ndarray
    """int [N, 2] renderer subject index, -1 = none"""
    motions: np.ndarray
    """int [N, 2] index into MOTIONS"""
    speeds: np.ndarray
    """int [N, 2] index into SPEEDS"""
    poses: dict[str, np.ndarray]
    """cx, cy, scale, angle: float32 [N, 2, T]"""
    template: np.ndarray
    """int [N] caption template"""

    @property
    def background_index(self) -> np.ndarray:
        return np.stack([self.scene, self.variant], axis=1)


def plan_videos(
    rng: np.random.Generator,
    count: int,
    subject_pool: np.ndarray,
    num_scenes: int,
    num_frames: int,
    height: int,
    width: int,
    two_subject_fraction: float,
    background_variants: int,
    motion_pool: np.ndarray | None = None,
) -> VideoPlan:
    """Sample `count` clips whose subjects come from `subject_pool` (renderer indices) and whose motions come
    from `motion_pool` (indices into MOTIONS; None: all of them)."""
    pool = np.asarray(subject_pool)
    pairs = (rng.random(count) < two_subject_fraction) & (len(pool) >= 2)
    # Two distinct subjects per clip: a random first one and a random non-zero offset for the second.
    first = rng.integers(len(pool), size=count)
    offset = rng.integers(1, max(len(pool), 2), size=count)
    second = np.where(pairs, pool[(first + offset) % len(pool)], -1)
    subjects = np.stack([pool[first], second], axis=1)
    # Indexing the pool keeps the draws of the full world (pool = every motion) what they always were.
    motion_pool = np.arange(len(MOTIONS)) if motion_pool is None else np.asarray(motion_pool)
    motions = motion_pool[rng.integers(len(motion_pool), size=(count, 2))]
    speeds = rng.integers(2, size=(count, 2))
    low = np.where(pairs, PAIR_SCALE[0], SINGLE_SCALE[0])
    high = np.where(pairs, PAIR_SCALE[1], SINGLE_SCALE[1])
    base_scale = np.stack([rng.uniform(low, high), rng.uniform(low, high)], axis=1)
    # Paired subjects start in opposite halves of their feasible ranges, which keeps overlaps rare.
    lane = np.stack([np.where(pairs, -1, 0), np.where(pairs, 1, 0)], axis=1)
    flat = sample_poses(
        motions.reshape(-1),
        speeds.reshape(-1),
        base_scale.reshape(-1),
        num_frames,
        height,
        width,
        rng,
        lane.reshape(-1),
    )
    # [N * 2, T] -> [N, 2, T]
    poses = {name: value.reshape(count, 2, num_frames) for name, value in flat.items()}
    return VideoPlan(
        scene=rng.integers(num_scenes, size=count),
        variant=rng.integers(background_variants, size=count),
        subjects=subjects,
        motions=motions,
        speeds=speeds,
        poses=poses,
        template=rng.integers(0, 6, size=count),
    )

"""Forced-choice scores: guesses and ties favour no option; world trajectories are read by their direction."""

import numpy as np
import pytest
import scipy.stats

from vimi.data.world.motions import MOTION_IDS, sample_poses
from vimi.eval.choice import (
    TRANSLATIONS,
    choose_direction,
    choose_subject,
    displacement,
    guess_order,
    pick,
)
from vimi.eval.grounding import classify_motion
from vimi.eval.tracking import TemplateFit

KEYS = [f"subject-heldout-{i:06d}" for i in range(800)]
CANDIDATES = [3, 5, 8, 11, 12, 17, 20, 26]


def within_chance(hits: np.ndarray, options: int) -> None:
    """Each option's count among len(hits) picks lies in the central 99.9% range of a uniform pick."""
    low, high = scipy.stats.binom.interval(0.999, len(hits), 1 / options)
    counts = np.bincount(hits, minlength=options)
    assert low <= counts.min() and counts.max() <= high, (counts, (low, high))


def equal_fit(count: int, frames: int = 4) -> TemplateFit:
    """A fit in which every candidate explains every frame equally well: a tie."""
    return TemplateFit(
        errors=np.ones((count, 24, frames)),
        best=np.ones((count, frames)),
        baseline=np.full(frames, 2.0),
        present=np.ones(frames, bool),
        centroids=np.full((frames, 2), 16.0),
        areas=np.full(frames, 40.0),
    )


def test_guesses_and_ties_favour_no_option():
    # 800 videos, 8 options: each option's count must lie in [71, 132] (expected 100).
    guesses = np.array([CANDIDATES.index(choose_subject(None, CANDIDATES, key)) for key in KEYS])
    within_chance(guesses, len(CANDIDATES))
    tied = np.array([CANDIDATES.index(choose_subject(equal_fit(8), CANDIDATES, key)) for key in KEYS])
    within_chance(tied, len(CANDIDATES))
    # The same video gets the same guess; the subject and the motion guesses are drawn apart.
    assert choose_subject(None, CANDIDATES, KEYS[0]) == choose_subject(None, CANDIDATES, KEYS[0])
    orders = [
        (guess_order(key, 8, "subject").argmin(), guess_order(key, 8, "motion").argmin()) for key in KEYS
    ]
    assert np.mean([a == b for a, b in orders]) < 0.25
    # No foreground in any frame is a guess too, not the first candidate.
    empty = equal_fit(8)
    empty.present[:] = False
    assert len({choose_subject(empty, CANDIDATES, key) for key in KEYS[:64]}) == len(CANDIDATES)
    directions = [choose_direction(np.zeros((8, 2)), np.zeros(8, bool), key) for key in KEYS]
    within_chance(np.array([list(TRANSLATIONS).index(d) for d in directions]), len(TRANSLATIONS))


def test_pick_takes_the_lowest_cost_and_breaks_ties_only_among_the_tied():
    costs = np.array([3.0, 1.0, 2.0, 1.0, 5.0, 1.0 + 1e-9, 4.0, 9.0])
    picks = np.array([pick(costs, guess_order(key, 8, "subject")) for key in KEYS])
    assert set(picks) == {1, 3, 5}  # float32 rounding of an equal sum is a tie
    assert all(abs(np.mean(picks == i) - 1 / 3) < 0.06 for i in (1, 3, 5))
    assert pick(np.array([2.0, 0.5, 1.0]), np.array([0, 1, 2])) == 1
    fit = equal_fit(8)
    fit.best[4] = 0.5  # candidate 4 explains the frames best: no guessing
    assert {choose_subject(fit, CANDIDATES, key) for key in KEYS[:32]} == {CANDIDATES[4]}


OPPOSITE = {
    name: next(o for o in TRANSLATIONS if TRANSLATIONS[o] @ TRANSLATIONS[name] < -0.99)
    for name in TRANSLATIONS
}


@pytest.mark.parametrize("speed", [0, 1])
def test_world_translations_are_read_and_reversed_or_shuffled_ones_are_not(speed):
    rng = np.random.default_rng(speed)
    present = np.ones(8, bool)
    shuffle = np.array([3, 7, 0, 5, 1, 6, 2, 4])  # a linear fit over it explains 0.2% of the spread
    for motion in TRANSLATIONS:
        poses = sample_poses(
            np.array([MOTION_IDS.index(motion)]), np.array([speed]), np.array([0.45]), 8, 32, 32, rng
        )
        centres = np.stack([poses["cx"][0], poses["cy"][0]], axis=-1) / 32  # [T, 2] in frame sides
        assert choose_direction(centres, present, "k") == motion
        assert choose_direction(centres[::-1], present, "k") == OPPOSITE[motion]
        assert displacement(centres[shuffle], present) is None
        # Frames without a foreground are left out, down to three.
        sparse = np.array([True, False, False, True, False, False, False, True])
        assert choose_direction(centres, sparse, "k") == motion
        assert displacement(centres, sparse & (np.arange(8) < 4)) is None


def test_a_small_drift_is_read_where_the_gated_classifier_sees_no_motion():
    """A blob that drifts 2 px right over 8 frames of 32 px with half-pixel jitter: the gated motion classifier
    needs 11% of the side and a clean line; the forced choice reads the direction, a still one it guesses."""
    rng = np.random.default_rng(0)
    progress = np.linspace(0, 1, 8)
    centres = np.stack([16 + 2 * progress, np.full(8, 16.0)], axis=-1) + rng.uniform(-0.25, 0.25, (8, 2))
    centres /= 32
    assert classify_motion(progress, centres, np.zeros(8), turns=0.0) != "right"
    assert choose_direction(centres, np.ones(8, bool), "k") == "right"
    still = np.full((8, 2), 0.5) + rng.uniform(-0.005, 0.005, (8, 2))
    assert displacement(still, np.ones(8, bool)) is None

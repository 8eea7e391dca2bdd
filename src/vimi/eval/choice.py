"""Forced-choice grounding scores: every video gets an answer, so a video that shows nothing scores chance.

The gated metrics (vimi.eval.grounding) score a video that does not clearly show the prompted subject or
motion as wrong: noise, an empty scene or a sprite that explains too little of its region scores 0, below
chance, so a model's curve sits at 0 until it draws well. The forced-choice scores always pick one of a fixed
set of options and are right when it is the prompted one:
  subject_choice  the candidate (the prompted subject + distractors) whose fitted sprite leaves the lowest
                  error summed over the sampled frames, from the fits the gated metric makes anyway; no
                  explained-foreground gate, no frame-count gate. Chance 1 / candidates.
  motion_choice   the translation direction nearest to the displacement of the largest foreground part's
                  centroid (a least-squares line over the frames); no identity gate. Chance 1 / directions.
What the pixels do not decide is guessed: ties go by a random order of the options, and a video with no
foreground (subject_choice) or no coherent displacement (motion_choice) gets that order's first option. The
order is seeded by the video's key and the prompted option's place in it is uniform, so a video that shows
nothing scores chance in expectation, never 0 or 1.
"""

import hashlib

import numpy as np

from vimi.data.world.motions import MOTIONS
from vimi.eval.tracking import TemplateFit

TRANSLATIONS = {
    m.id: np.asarray(m.direction) / np.hypot(*m.direction) for m in MOTIONS if m.kind == "translate"
}
"""The world's translation directions as unit screen vectors (x right, y down)."""
MIN_SHIFT = 0.03
"""A displacement over the clip below this fraction of the frame side (about a pixel at 32x32) is no motion."""
MIN_COHERENCE = 0.6
"""Fraction of the centroid track's spread a constant-velocity line must explain to count as a displacement.
Shuffled frames of a translation still lie on its line, in random order: 8 of them reach this in 3% of
orders, so their direction (right or reversed, half each) is almost never read."""
TIE_TOLERANCE = 1e-6
"""Relative difference below which two costs are a tie (float32 sums of identical renders)."""


def guess_order(key: str, count: int, salt: str) -> np.ndarray:
    """A random rank of each of `count` options [count], fixed by (salt, key): a video's tie-break and guess."""
    seed = int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "little")
    return np.random.default_rng(seed).permutation(count)


def pick(costs: np.ndarray | None, rank: np.ndarray) -> int:
    """Index of the lowest of `costs` [N]; ties, and every option when `costs` is None, go by `rank` [N]."""
    if costs is None:
        return int(rank.argmin())
    costs = np.asarray(costs, np.float64)
    best = costs.min()
    tied = np.flatnonzero(costs <= best + TIE_TOLERANCE * max(abs(best), 1e-12))
    return int(tied[rank[tied].argmin()])


def choose_subject(fit: TemplateFit | None, candidates: list[int], key: str) -> int:
    """The candidate (renderer index) whose best fits have the lowest error summed over the frames with a
    foreground; a random candidate (seeded by `key`) when no frame has one (`fit` None: no frames).

    A video that shows something unrelated to the prompt (noise) is still read: every such video picks the
    sprite that best matches it, whichever was prompted, so it scores chance over the prompts, not per video."""
    rank = guess_order(key, len(candidates), "subject")
    if fit is None or not fit.present.any():
        return candidates[pick(None, rank)]
    return candidates[pick(fit.best[:, fit.present].sum(axis=1), rank)]


def displacement(centroids: np.ndarray, present: np.ndarray) -> np.ndarray | None:
    """Displacement over the clip [2] of a centroid track [T, 2] (frame sides) on its frames `present` [T]:
    the slope of a least-squares line over progress 0..1; None when under 3 frames, under MIN_SHIFT, or
    the line explains less than MIN_COHERENCE of the track's spread (no coherent motion)."""
    if present.sum() < 3:
        return None
    progress = np.linspace(0, 1, len(present))[present]
    track = centroids[present]  # [n, 2]
    basis = np.stack([np.ones_like(progress), progress], axis=1)  # [n, 2]
    coef, *_ = np.linalg.lstsq(basis, track, rcond=None)  # [2 (intercept, slope), 2 (x, y)]
    residual = np.sum((basis @ coef - track) ** 2)
    spread = np.sum((track - track.mean(axis=0)) ** 2)
    slope = coef[1]
    if np.hypot(*slope) < MIN_SHIFT or residual > (1 - MIN_COHERENCE) * spread:
        return None
    return slope


def choose_direction(centroids: np.ndarray, present: np.ndarray, key: str) -> str:
    """The translation (a TRANSLATIONS id) nearest in angle to the track's displacement; a random one (seeded
    by `key`) when it has none. centroids [T, 2] in frame sides, present bool [T]."""
    names = list(TRANSLATIONS)
    rank = guess_order(key, len(names), "motion")
    shift = displacement(centroids, present)
    if shift is None:
        return names[pick(None, rank)]
    direction = shift / np.hypot(*shift)
    return names[pick(np.array([-(TRANSLATIONS[name] @ direction) for name in names]), rank)]

"""Two-subject identification by explaining away: no segmentation of touching subjects is trusted.

Per sampled frame, every candidate is fitted to each hypothesised part (the two largest foreground parts;
touching subjects cut three ways, see part_hypotheses) and scored on the WHOLE foreground region, so a candidate may explain only
part of it. The best few single fits are rendered at their poses onto the background (a new reference);
the pixels they leave unexplained are the residual, and every other candidate is fitted to that residual
while painted together with the first (render_batch, K=2). Each pair is then refined together:
both poses are polished by coordinate descent on the pair's joint error (best paint order per
frame), so a bad split only costs a starting pose, never the answer.
"""

from dataclasses import dataclass

import numpy as np
import scipy.ndimage

from vimi.eval.tracking import (
    _FRAME_CONNECTIVITY,
    BackgroundMatch,
    FixedLayer,
    SubjectTracker,
    _blur,
    _region,
    _RegionErrors,
    _split,
    pose_dict,
)

FIRST_CHOICES = 2
"""Best single fits kept as the first subject to explain away."""
SECOND_CHOICES = 2
"""Best second subjects kept per first subject for the joint polish."""


@dataclass
class PairFit:
    """Joint fits of candidate pairs to the frames of one video."""

    pairs: list[tuple[int, int]]
    """Renderer subject indices of each fitted pair (first explained, second explained)."""
    errors: np.ndarray
    """float [P, T]: each pair's joint error over the foreground region (both painted at their best poses)."""
    alone: np.ndarray
    """float [P, 2, T]: the error with only the pair's first / second subject painted (at the same poses)."""
    baseline: np.ndarray
    """float [T]: the background-only error over the same region."""
    poses: np.ndarray
    """float [P, 2, T, 4]: each pair's subjects' poses (POSE_FIELDS)."""
    own_baseline: np.ndarray
    """float [P, 2, T]: the background-only error inside each subject's own footprint (its pose's pixels)."""


def fit_pairs(
    tracker: SubjectTracker,
    frames: np.ndarray,
    match: BackgroundMatch,
    mask: np.ndarray,
    candidates: list[int],
) -> PairFit:
    """Fit pairs of `candidates` (renderer indices) to frames [T, H, W, 3] whose foreground is mask [T, H, W]."""
    cand = np.asarray(candidates)
    union = _region(mask, np.zeros_like(mask))[None]  # [1, T, H, W]: the whole foreground's region
    scorer = _RegionErrors(tracker.renderer, frames, match, union)
    # Stage 1: single fits posed from each hypothesised part, judged on the whole region -> best part.
    splits = part_hypotheses(tracker, mask, frames)  # [S, 2, T, H, W]
    parts = splits.reshape(-1, *mask.shape)  # [S * 2, T, H, W]
    part_poses = np.zeros((len(parts), len(cand), len(frames), 4))
    for s, split in enumerate(splits):
        # Only the frames where this way differs from the earlier ones are fitted (apart subjects: once).
        own = np.flatnonzero(
            [
                s == 0 or not any((split[:, t] == splits[d, :, t]).all() for d in range(s))
                for t in range(len(frames))
            ]
        )
        part_poses[2 * s : 2 * s + 2] = part_poses[:2]  # frames fitted before: the first way's poses
        if len(own):
            regions = np.stack([_region(split[k, own], split[1 - k, own]) for k in (0, 1)])
            fits = tracker.fit(frames[own], match, split[:, own], candidates, regions)
            part_poses[2 * s : 2 * s + 2, :, own] = np.stack([fit.poses for fit in fits])
    single = _joint_errors(
        scorer, cand[None, :, None].repeat(len(parts), 0), part_poses[:, :, None]
    )  # [P, C, T]
    pick = single.argmin(axis=0)  # [C, T]
    first_poses = np.take_along_axis(part_poses, pick[None, :, :, None], axis=0)[0]  # [C, T, 4]
    first_errors = single.min(axis=0)  # [C, T]

    pairs, errors, alone, poses, own = [], [], [], [], []
    difference = np.abs(_blur(tracker.renderer.background(match.scene, match.variant)[None]) - _blur(frames))
    difference = difference.mean(axis=-1)  # [T, H, W]
    for first in np.argsort(first_errors.sum(axis=1), kind="stable")[:FIRST_CHOICES]:
        # Stage 2: explain the first subject away, fit every other candidate to what it leaves.
        others = [int(c) for c in cand if c != cand[first]]
        residual = _residual(tracker, frames, match, mask, int(cand[first]), first_poses[first])
        fixed = FixedLayer(int(cand[first]), first_poses[first], front=True)
        fits = tracker.fit(frames, match, residual[None], others, regions=union, fixed=fixed)[0]
        for second in np.argsort(fits.best.sum(axis=1), kind="stable")[:SECOND_CHOICES]:
            pair = (int(cand[first]), others[second])
            pair_poses = np.stack([first_poses[first], fits.poses[second]])  # [2, T, 4]
            # Stage 3: polish both poses on the joint error, in either paint order.
            pair_poses, pair_errors = _polish(scorer, pair, pair_poses, tracker.angles)
            pairs.append(pair)
            errors.append(pair_errors)
            poses.append(pair_poses)
            subjects = np.array([[pair[0]], [pair[1]]])  # [2, 1]
            alone.append(_joint_errors(scorer, subjects[:, :, None], pair_poses[:, None, None])[:, 0])
            own.append(_own_baselines(tracker, match, subjects, pair_poses, difference))
    return PairFit(
        pairs, np.stack(errors), np.stack(alone), scorer.baseline[0], np.stack(poses), np.stack(own)
    )


def _own_baselines(
    tracker, match, subjects: np.ndarray, poses: np.ndarray, difference: np.ndarray
) -> np.ndarray:
    """[2, T]: background-only error summed over each subject's footprint (coverage > 0.5, grown 1 pixel)."""
    background = np.array([[match.scene, match.variant]] * 2)
    alpha = tracker.renderer.render_batch(background, subjects, pose_dict(poses[:, None]), return_alpha=True)
    footprint = alpha["alpha"][:, 0] > 0.5  # [2, T, H, W]
    footprint = scipy.ndimage.binary_dilation(footprint, structure=_FRAME_CONNECTIVITY[None])
    return (footprint * difference[None]).sum(axis=(-2, -1))


POLISH_STEPS = ((1, 0, 0, 0), (-1, 0, 0, 0), (0, 1, 0, 0), (0, -1, 0, 0), (0, 0, 0.08, 0), (0, 0, -0.08, 0))
"""Pose changes tried per subject while polishing a pair: pixels in x, y; log-scale; (angle steps below)."""


def _polish(
    scorer, pair, poses: np.ndarray, angles: np.ndarray, rounds: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate descent of both subjects' poses [2, T, 4] on the pair's joint error (best paint order per frame)."""
    step = float(angles[1] - angles[0]) if len(angles) > 1 else 0.0
    changes = np.array([*POLISH_STEPS, (0, 0, 0, step), (0, 0, 0, -step)], np.float64)  # [V, 4]
    subjects = np.array([[pair[0], pair[1]], [pair[1], pair[0]]])  # both paint orders
    poses = poses.astype(np.float64)
    best = _joint_errors(scorer, subjects[:, None], np.stack([poses, poses[::-1]])[:, None])[:, 0].min(axis=0)
    for _ in range(rounds):
        for layer in (0, 1):
            trial = np.repeat(poses[None], len(changes), axis=0)  # [V, 2, T, 4]
            trial[:, layer, :, :2] += changes[:, None, :2]
            trial[:, layer, :, 2] *= np.exp(changes[:, None, 2])
            trial[:, layer, :, 3] += changes[:, None, 3]
            both = np.stack([trial, trial[:, ::-1]])  # [2 orders, V, 2, T, 4]
            errors = _joint_errors(scorer, np.broadcast_to(subjects[:, None], (2, len(changes), 2)), both)
            errors = errors.min(axis=0)  # [V, T]
            pick = errors.argmin(axis=0)  # [T]
            better = errors[pick, np.arange(len(pick))] < best
            frames_better = np.flatnonzero(better)
            poses[layer, frames_better] = trial[pick[frames_better], layer, frames_better]
            best = np.where(better, errors[pick, np.arange(len(pick))], best)
    return poses, best


def _joint_errors(scorer: _RegionErrors, subjects: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """subjects int [..., L], poses [..., L, T, 4] -> errors [...] x [T] on the scorer's single region."""
    lead = subjects.shape[:-1]
    layers, frames_count = poses.shape[-3], poses.shape[-2]
    flat_subjects = subjects.reshape(-1, layers)
    flat_poses = pose_dict(
        np.broadcast_to(poses, (*lead, layers, frames_count, 4)).reshape(-1, layers, frames_count, 4)
    )
    errors = scorer(flat_subjects, np.zeros(len(flat_subjects), np.int64), flat_poses)
    return errors.reshape(*lead, frames_count)


def _residual(tracker, frames, match, mask, subject: int, poses: np.ndarray) -> np.ndarray:
    """bool [T, H, W]: foreground pixels that `subject` at poses [T, 4] over the background does not explain."""
    renderer = tracker.renderer
    reference = (
        renderer.render_batch(
            np.array([[match.scene, match.variant]]), np.array([[subject]]), pose_dict(poses[None, None])
        )["frames"][0].astype(np.float32)
        / 255
    )  # [T, H, W, 3]
    threshold = tracker.fg_threshold + 2 * match.distance
    residual = mask & (np.abs(frames - reference).max(axis=-1) > threshold)
    # Edge pixels of the explained subject differ by a fraction of a pixel's shift: drop thin specks.
    labels, count = scipy.ndimage.label(residual, structure=_FRAME_CONNECTIVITY)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= max(2, tracker.min_pixels // 2)
    keep[0] = False
    return keep[labels]


def part_hypotheses(tracker: SubjectTracker, mask: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """bool [S, 2, T, H, W]: distinct ways to cut each frame's foreground into two subjects' parts.

    Apart subjects: the two largest connected parts (every way agrees). Touching subjects: the one part
    split by 2-means on position and colour (overlaps), on position alone (side by side), and by growing
    the cores that an erosion leaves (narrow contacts).
    """
    splits = np.zeros((3, 2, *mask.shape), bool)
    for t in range(mask.shape[0]):
        labels, _ = scipy.ndimage.label(mask[t], structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel())[1:]
        order = [
            label + 1 for label in np.argsort(-sizes, kind="stable")[:2] if sizes[label] >= tracker.min_pixels
        ]
        if len(order) == 2:
            splits[:, 0, t], splits[:, 1, t] = labels == order[0], labels == order[1]
        elif len(order) == 1 and sizes[order[0] - 1] >= 2 * tracker.min_pixels:
            part = labels == order[0]
            ways = (_split(part, frames[t]), _split(part, frames[t][..., :0]), _erosion_split(part))
            for s, halves in enumerate(ways):
                splits[s, :, t] = halves
        elif len(order) == 1:
            splits[:, 0, t] = labels == order[0]
    distinct = [0] + [s for s in (1, 2) if not any((splits[s] == splits[d]).all() for d in range(s))]
    return splits[distinct]


def _erosion_split(part: np.ndarray, max_iterations: int = 3) -> np.ndarray:
    """bool [2, H, W]: the part cut where erosion first leaves two cores, each pixel going to the nearest core."""
    for iterations in range(1, max_iterations + 1):
        core = scipy.ndimage.binary_erosion(part, iterations=iterations)
        labels, count = scipy.ndimage.label(core, structure=np.ones((3, 3)))
        if count >= 2:
            sizes = np.bincount(labels.ravel())[1:]
            keep = np.argsort(-sizes, kind="stable")[:2] + 1
            cores = np.where(np.isin(labels, keep), labels, 0)
            # Nearest core pixel of every pixel: [2, H, W] indices of the nearest non-zero entry.
            _, (rows, cols) = scipy.ndimage.distance_transform_edt(cores == 0, return_indices=True)
            nearest = cores[rows, cols]
            return np.stack([part & (nearest == keep[0]), part & (nearest == keep[1])])
    return np.stack([part, np.zeros_like(part)])

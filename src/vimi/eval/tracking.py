"""Subject tracking on GroundedWorld frames by analysis by synthesis: segment the foreground against the
nearest scene background, then fit each candidate subject's sprite (rotated, scaled) with the world's
own renderer and keep the per-frame errors.

Pose conventions are the renderer's: centre (x, y) in pixels, scale = sprite diameter / min(H, W),
angle in radians counter-clockwise on screen.
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.ndimage

from vimi.data.world.render import WorldRenderer


@dataclass
class BackgroundMatch:
    """The scene background nearest to a video: scene index, variant, and the median per-pixel L1 distance."""

    scene: int
    variant: int
    distance: float
    """Median over pixels and frames of the mean-over-channels |frame - background| (0..1 scale)."""
    scene_distances: np.ndarray
    """float [S]: the best distance of each scene over its variants."""


@dataclass
class TemplateFit:
    """Errors of every candidate sprite at every angle in every frame, for one target (subject) of a video."""

    errors: np.ndarray
    """float [C, A, T]: sum over the target's region of |rendered - frame| (candidates x angles x frames)."""
    best: np.ndarray
    """float [C, T]: each candidate's lowest error after refining its best angle's pose."""
    baseline: np.ndarray
    """float [T]: the same sum for the background alone (no subject)."""
    present: np.ndarray
    """bool [T]: the target's foreground is large enough to fit in this frame."""
    centroids: np.ndarray
    """float [T, 2]: foreground centroid (x, y) in pixels."""
    areas: np.ndarray
    """float [T]: foreground pixels."""
    poses: np.ndarray | None = None
    """float [C, T, 4]: each candidate's best pose per frame (cx, cy, scale, angle; POSE_FIELDS)."""


POSE_FIELDS = ("cx", "cy", "scale", "angle")


def pose_dict(poses: np.ndarray) -> dict[str, np.ndarray]:
    """Poses float [..., 4] (POSE_FIELDS order) -> the renderer's dict of float32 [...] arrays."""
    return {name: np.ascontiguousarray(poses[..., i], np.float32) for i, name in enumerate(POSE_FIELDS)}


def to_frames(video, height: int, width: int) -> np.ndarray:
    """A video (tensor [C, T, H, W] in [-1, 1], or uint8 [T, H, W, 3]) as float32 [T, H, W, 3] in [0, 1] at the world's size."""
    import torch

    if isinstance(video, np.ndarray) and video.dtype == np.uint8:
        video = (
            torch.from_numpy(np.ascontiguousarray(video)).permute(3, 0, 1, 2).float() / 127.5 - 1
        )  # [T, H, W, C] -> [C, T, H, W]
    video = torch.as_tensor(video).detach().float().cpu()
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a video [3, T, H, W] in [-1, 1], got shape {tuple(video.shape)}")
    if video.shape[-2:] != (height, width):
        # [C, T, H, W] -> [T, C, H, W]: frames as a batch of images
        video = torch.nn.functional.interpolate(
            video.permute(1, 0, 2, 3),
            size=(height, width),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        ).permute(1, 0, 2, 3)
    frames = ((video.clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0)  # [C, T, H, W] -> [T, H, W, C]
    return np.ascontiguousarray(frames.numpy(), dtype=np.float32)


class SubjectTracker:
    """Segments and fits subjects of a world's renderer in frames of that world's size."""

    def __init__(
        self, renderer: WorldRenderer, angle_steps: int = 24, fg_threshold: float = 0.12, min_pixels: int = 6
    ):
        self.renderer = renderer
        self.angles = np.arange(angle_steps) * (2 * np.pi / angle_steps)
        self.fg_threshold = fg_threshold
        self.min_pixels = min_pixels

    @cached_property
    def _scene_backgrounds(self) -> np.ndarray:
        """float32 [S, V, H, W, 3]: every variant of every scene (the plain backdrop excluded)."""
        return self.renderer.backgrounds[: len(self.renderer.scenes)]

    @cached_property
    def _sprite_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per subject: fill (covered fraction of the sprite square) [P] and alpha centroid (u, v) in [-1, 1] [P, 2]."""
        fills, offsets = [], []
        size = self.renderer.sprite_size
        coords = (np.arange(size) + 0.5) / size * 2 - 1
        for index in range(self.renderer.num_subjects):
            covered = self.renderer.sprite(index)[..., 3] > 0.5  # [S, S]
            total = max(int(covered.sum()), 1)
            fills.append(total / size**2)
            offsets.append(
                [(covered.sum(axis=0) * coords).sum() / total, (covered.sum(axis=1) * coords).sum() / total]
            )
        return np.asarray(fills), np.asarray(offsets)

    # ---------------------------------------------------------------------------------------------
    def match_background(self, frames: np.ndarray) -> BackgroundMatch:
        """The scene background (scene, variant) nearest to the frames, robust to the subjects on top."""
        backgrounds = self._scene_backgrounds  # [S, V, H, W, 3]
        scenes, variants = backgrounds.shape[:2]
        # [S, V, 1, H, W, 3] vs [T, H, W, 3] -> per-pixel L1 [S, V, T, H, W] -> median per (S, V)
        diff = np.abs(backgrounds[:, :, None] - frames[None, None]).mean(axis=-1)
        distances = np.median(diff.reshape(scenes, variants, -1), axis=-1)
        best = np.unravel_index(int(distances.argmin()), distances.shape)
        return BackgroundMatch(int(best[0]), int(best[1]), float(distances[best]), distances.min(axis=1))

    def foreground(self, frames: np.ndarray, match: BackgroundMatch) -> np.ndarray:
        """bool [T, H, W]: pixels that differ from the matched background (1-pixel gaps closed, specks removed)."""
        background = self._scene_backgrounds[match.scene, match.variant]
        # A generated background is never exact: raise the bar by the typical background mismatch.
        threshold = self.fg_threshold + 2 * match.distance
        mask = np.abs(frames - background[None]).max(axis=-1) > threshold
        mask = scipy.ndimage.binary_closing(mask, structure=np.ones((1, 3, 3)), border_value=0) | mask
        labels, count = scipy.ndimage.label(mask, structure=_FRAME_CONNECTIVITY)
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        keep = sizes >= max(2, self.min_pixels // 2)
        keep[0] = False
        return keep[labels]

    def components(self, mask: np.ndarray, count: int, frames: np.ndarray | None = None) -> np.ndarray:
        """bool [count, T, H, W]: per frame, the `count` largest connected foreground parts (largest first).

        With `frames`, a frame with fewer parts than `count` (touching subjects) has its largest part split
        by 2-means clustering of pixel position and colour.
        """
        out = np.zeros((count, *mask.shape), bool)
        for t in range(mask.shape[0]):
            labels, _ = scipy.ndimage.label(mask[t], structure=np.ones((3, 3)))
            sizes = np.bincount(labels.ravel())[1:]
            order = np.argsort(-sizes, kind="stable")
            parts = [labels == label + 1 for label in order[:count] if sizes[label] >= self.min_pixels]
            if (
                frames is not None
                and count == 2
                and len(parts) == 1
                and parts[0].sum() >= 2 * self.min_pixels
            ):
                parts = _split(parts[0], frames[t])
            for k, part in enumerate(parts[:count]):
                out[k, t] = part
        return out

    def largest_part_track(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centroid (x, y) in pixels [T, 2] of each frame's largest foreground part, and whether it has one [T]."""
        part = self.components(mask, 1)[0]  # [T, H, W]
        area = part.sum(axis=(1, 2))  # [T]
        ys, xs = np.mgrid[0 : mask.shape[1], 0 : mask.shape[2]] + 0.5
        safe = np.maximum(area, 1)
        centroids = np.stack([(part * xs).sum(axis=(1, 2)) / safe, (part * ys).sum(axis=(1, 2)) / safe], -1)
        return centroids, area > 0

    # ---------------------------------------------------------------------------------------------
    def fit(
        self,
        frames: np.ndarray,
        match: BackgroundMatch,
        targets: np.ndarray,
        candidates: list[int],
        regions: np.ndarray | None = None,
        fixed: "FixedLayer | None" = None,
    ) -> list[TemplateFit]:
        """Fit every candidate sprite to each target mask ([K, T, H, W]); one TemplateFit per target.

        Pass 1 derives the pose from the target mask (scale from its area and the candidate's fill
        fraction, centre from its centroid minus the candidate's rotated alpha-centroid offset) and tries
        every angle. Pass 2 refines the best angle's pose (scale, sub-pixel shift, half an angle step),
        since a mask's area is biased by anti-aliased edges. Each target's error region is its bounding
        box grown by a margin, minus the other targets' pixels, unless `regions` [K, T, H, W] are given.
        With `fixed`, a known subject is painted with every candidate (behind or in front of it).
        """
        num_targets, frames_count = targets.shape[:2]
        fills = self._sprite_stats[0]
        cand = np.asarray(candidates)
        areas = targets.sum(axis=(2, 3)).astype(np.float64)  # [K, T]
        ys, xs = np.mgrid[0 : frames.shape[1], 0 : frames.shape[2]] + 0.5
        safe = np.maximum(areas, 1)
        centroids = np.stack(
            [(targets * xs).sum(axis=(2, 3)) / safe, (targets * ys).sum(axis=(2, 3)) / safe], -1
        )
        if regions is None:
            others = [targets[np.arange(num_targets) != k].any(axis=0) for k in range(num_targets)]
            regions = np.stack([_region(targets[k], others[k]) for k in range(num_targets)])
        scorer = _RegionErrors(self.renderer, frames, match, regions, fixed)

        # Pass 1: [K, C, A, T] over every angle.
        diameter = np.sqrt(safe[:, None, :] / fills[cand][None, :, None])  # [K, C, T] pixels
        shape = (num_targets, len(cand), len(self.angles), frames_count)
        angle = np.broadcast_to(self.angles[None, None, :, None], shape)
        poses1 = self._poses(cand, centroids, diameter[:, :, None], angle, shape)
        errors = self._errors(scorer, cand, poses1)
        # Pass 2: variations of the best pose of each (target, candidate, frame).
        best_angle = self.angles[errors.argmin(axis=2)][:, :, None, :]  # [K, C, 1, T]
        step = self.angles[1] - self.angles[0] if len(self.angles) > 1 else 0.0
        variations = [(0.0, f, 0.0, 0.0) for f in REFINE_SCALES] + [
            (d * step / 2, 1.0, 0.0, 0.0) for d in (-1, 1)
        ]
        variations += [(0.0, 1.0, dx, dy) for dx, dy in REFINE_SHIFTS]
        turn, factor, dx, dy = (np.asarray(v, np.float64)[None, None, :, None] for v in zip(*variations))
        shape2 = (num_targets, len(cand), len(variations), frames_count)
        poses2 = self._poses(
            cand,
            centroids,
            diameter[:, :, None] * factor,
            np.broadcast_to(best_angle + turn, shape2),
            shape2,
            dx,
            dy,
        )
        refined = self._errors(scorer, cand, poses2)
        # Best pose of each (target, candidate, frame) over both passes: [K, C, A + V, T(, 4)]
        every = np.concatenate([errors, refined], axis=2)
        pick = every.argmin(axis=2)[:, :, None, :, None]  # [K, C, 1, T, 1]
        best_poses = np.take_along_axis(np.concatenate([poses1, poses2], axis=2), pick, axis=2)[:, :, 0]
        best = every.min(axis=2)  # [K, C, T]
        baseline = scorer.baseline
        present = areas >= self.min_pixels
        return [
            TemplateFit(errors[k], best[k], baseline[k], present[k], centroids[k], areas[k], best_poses[k])
            for k in range(num_targets)
        ]

    def _errors(self, scorer, cand, poses: np.ndarray) -> np.ndarray:
        """Errors [K, C, V, T] of candidates at poses [K, C, V, T, 4] on the targets."""
        shape = poses.shape[:-1]
        subjects = np.broadcast_to(cand[None, :, None], shape[:3]).reshape(-1, 1)
        targets = np.broadcast_to(np.arange(shape[0])[:, None, None], shape[:3]).reshape(-1)
        flat = pose_dict(poses.reshape(-1, 1, shape[-1], 4))  # [K * C * V, 1, T]
        return scorer(subjects, targets, flat).reshape(shape)

    def _poses(self, cand, centroids, diameter, angle, shape, dx=0.0, dy=0.0) -> np.ndarray:
        """Poses [K, C, V, T, 4] of candidates sized by diameter [K, C, V|1, T] at angle [K, C, V, T], centred on the targets."""
        offsets = self._sprite_stats[1]
        u, v = offsets[cand, 0][None, :, None, None], offsets[cand, 1][None, :, None, None]  # [1, C, 1, 1]
        cos, sin = np.cos(angle), np.sin(angle)
        radius = diameter / 2
        # Centre = centroid - the sprite's alpha-centroid offset turned to screen (the renderer's map transposed).
        cx = centroids[:, None, None, :, 0] - radius * (cos * u + sin * v) + dx
        cy = centroids[:, None, None, :, 1] - radius * (-sin * u + cos * v) + dy
        values = (cx, cy, radius * 2 / self.renderer.side, angle)
        return np.stack([np.broadcast_to(v, shape) for v in values], axis=-1)

    def centre_track(
        self, fit: TemplateFit, subject: int, angles: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sprite centres [T, 2] (pixels) and scales [T] of `subject` given its angle per frame."""
        fills, offsets = self._sprite_stats
        diameter = np.sqrt(np.maximum(fit.areas, 1) / fills[subject])
        u, v = offsets[subject]
        cos, sin = np.cos(angles), np.sin(angles)
        radius = diameter / 2
        centres = fit.centroids - radius[:, None] * np.stack([cos * u + sin * v, -sin * u + cos * v], -1)
        return centres, diameter / self.renderer.side


REFINE_SCALES = (0.8, 0.87, 0.93, 1.07)
"""Scale factors tried around the area-derived scale (a mask's area over-counts anti-aliased edges)."""
REFINE_SHIFTS = ((-0.5, 0.0), (0.5, 0.0), (0.0, -0.5), (0.0, 0.5))
"""Sub-pixel centre shifts tried around the centroid-derived centre."""
BLUR_SIGMA = 1.0
RENDER_CHUNK = 96
"""Candidate-angle clips rendered at once (bounds memory: 96 x T x H x W x 16 bytes)."""
_FRAME_CONNECTIVITY = np.zeros((3, 3, 3), bool)
_FRAME_CONNECTIVITY[1] = True  # 8-connected within a frame, never across frames


def _region(target: np.ndarray, others: np.ndarray, margin: int = 3) -> np.ndarray:
    """bool [T, H, W]: each frame's target bounding box grown by `margin` pixels, minus the other targets' pixels."""
    region = np.zeros_like(target)
    for t in range(target.shape[0]):
        rows, cols = np.flatnonzero(target[t].any(axis=1)), np.flatnonzero(target[t].any(axis=0))
        if len(rows) == 0:
            continue
        region[
            t,
            max(rows[0] - margin, 0) : rows[-1] + margin + 1,
            max(cols[0] - margin, 0) : cols[-1] + margin + 1,
        ] = True
    return region & ~scipy.ndimage.binary_dilation(others, structure=_FRAME_CONNECTIVITY)


@dataclass
class FixedLayer:
    """A subject whose pose is known, painted with every fitted candidate."""

    subject: int
    poses: np.ndarray
    """float [T, 4] (POSE_FIELDS)."""
    front: bool
    """Painted over the candidate (True) or under it."""


class _RegionErrors:
    """Renders posed candidates over the matched background and sums |rendered - frame| in each target's region."""

    def __init__(
        self,
        renderer: WorldRenderer,
        frames: np.ndarray,
        match: BackgroundMatch,
        regions: np.ndarray,
        fixed: FixedLayer | None = None,
    ):
        self.renderer = renderer
        self.fixed = fixed
        self.background = (match.scene, match.variant)
        # Errors count only inside the regions: crop every frame to their joint bounding box.
        rows, cols = np.flatnonzero(regions.any(axis=(0, 1, 3))), np.flatnonzero(regions.any(axis=(0, 1, 2)))
        if len(rows) == 0:
            rows = cols = np.array([0])
        self.crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        self.observed = _blur(frames[:, self.crop[0], self.crop[1]])  # [T, h, w, 3]
        self.inside = regions[:, :, self.crop[0], self.crop[1]]  # [K, T, h, w]
        background = renderer.background(*self.background)[self.crop[0], self.crop[1]]
        self.baseline = self._sums(
            np.abs(_blur(background[None]) - self.observed)[None], np.arange(len(regions))
        )  # [K, T]

    def __call__(self, subjects: np.ndarray, targets: np.ndarray, poses: dict[str, np.ndarray]) -> np.ndarray:
        """subjects int [N, L], targets int [N], poses [N, L, T] -> errors float32 [N, T] (in pixels x mean channel L1)."""
        if self.fixed is not None:  # one more layer: [N, 1] -> [N, 2]
            known = np.full((len(subjects), 1), self.fixed.subject)
            order = (lambda new, old: (old, new)) if not self.fixed.front else (lambda new, old: (new, old))
            subjects = np.concatenate(order(subjects, known), axis=1)
            fixed = pose_dict(self.fixed.poses[None])  # [T, 4] -> [1, T] per field
            poses = {
                name: np.concatenate(order(value, np.broadcast_to(fixed[name], value.shape)), axis=1)
                for name, value in poses.items()
            }
        count, frames_count = len(subjects), self.observed.shape[0]
        errors = np.empty((count, frames_count), np.float32)
        background_index = np.tile([self.background], (count, 1))
        for start in range(0, count, RENDER_CHUNK):
            part = slice(start, min(start + RENDER_CHUNK, count))
            chunk = {name: np.ascontiguousarray(value[part], np.float32) for name, value in poses.items()}
            rendered = self.renderer.render_batch(background_index[part], subjects[part], chunk)["frames"]
            window = _blur(rendered[:, :, self.crop[0], self.crop[1]].astype(np.float32) / 255)
            errors[part] = self._sums(np.abs(window - self.observed[None]), targets[part])
        return errors

    def _sums(self, difference: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """|difference| [n, T, h, w, 3] -> mean over channels, summed over each target's region -> [n, T]."""
        return (difference.mean(axis=-1) * self.inside[targets]).sum(axis=(-2, -1))


def _blur(images: np.ndarray) -> np.ndarray:
    """Gaussian blur (sigma BLUR_SIGMA px) of float images [..., h, w, 3]: pose and generation errors of a
    fraction of a pixel then cost a fraction of the error instead of whole mismatched edge pixels."""
    sigma = [0.0] * (images.ndim - 3) + [BLUR_SIGMA, BLUR_SIGMA, 0.0]
    return scipy.ndimage.gaussian_filter(images.astype(np.float32), sigma, mode="nearest", truncate=2.0)


def _split(part: np.ndarray, frame: np.ndarray) -> list[np.ndarray]:
    """Split one foreground part [H, W] into two by 2-means over (x, y, colour), larger cluster first."""
    import scipy.cluster.vq

    ys, xs = np.nonzero(part)
    scale = max(part.shape)
    features = np.column_stack([xs / scale, ys / scale, frame[ys, xs]]).astype(np.float64)  # [P, 5]
    _, labels = scipy.cluster.vq.kmeans2(features, 2, minit="++", seed=0)
    halves = []
    for label in (0, 1):
        half = np.zeros_like(part)
        half[ys[labels == label], xs[labels == label]] = True
        halves.append(half)
    return sorted(halves, key=lambda h: -int(h.sum()))

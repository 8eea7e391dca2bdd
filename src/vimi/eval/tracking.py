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
    baseline: np.ndarray
    """float [T]: the same sum for the background alone (no subject)."""
    present: np.ndarray
    """bool [T]: the target's foreground is large enough to fit in this frame."""
    centroids: np.ndarray
    """float [T, 2]: foreground centroid (x, y) in pixels."""
    areas: np.ndarray
    """float [T]: foreground pixels."""


def to_frames(video, height: int, width: int) -> np.ndarray:
    """A video (tensor [C, T, H, W] in [-1, 1], or uint8 [T, H, W, 3]) as float32 [T, H, W, 3] in [0, 1] at the world's size."""
    import torch

    if isinstance(video, np.ndarray) and video.dtype == np.uint8:
        video = torch.from_numpy(video).permute(3, 0, 1, 2).float() / 127.5 - 1  # [T, H, W, C] -> [C, T, H, W]
    video = torch.as_tensor(video).detach().float().cpu()
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a video [3, T, H, W] in [-1, 1], got shape {tuple(video.shape)}")
    if video.shape[-2:] != (height, width):
        # [C, T, H, W] -> [T, C, H, W]: frames as a batch of images
        video = torch.nn.functional.interpolate(
            video.permute(1, 0, 2, 3), size=(height, width), mode="bilinear", antialias=True, align_corners=False
        ).permute(1, 0, 2, 3)
    frames = ((video.clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0)  # [C, T, H, W] -> [T, H, W, C]
    return np.ascontiguousarray(frames.numpy(), dtype=np.float32)


class SubjectTracker:
    """Segments and fits subjects of a world's renderer in frames of that world's size."""

    def __init__(self, renderer: WorldRenderer, angle_steps: int = 24, fg_threshold: float = 0.12, min_pixels: int = 6):
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
            offsets.append([(covered.sum(axis=0) * coords).sum() / total, (covered.sum(axis=1) * coords).sum() / total])
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

    def components(self, mask: np.ndarray, count: int) -> np.ndarray:
        """bool [count, T, H, W]: per frame, the `count` largest connected foreground parts (largest first)."""
        out = np.zeros((count, *mask.shape), bool)
        for t in range(mask.shape[0]):
            labels, found = scipy.ndimage.label(mask[t], structure=np.ones((3, 3)))
            if found == 0:
                continue
            sizes = np.bincount(labels.ravel())[1:]
            for k, label in enumerate(np.argsort(-sizes, kind="stable")[:count]):
                out[k, t] = labels == label + 1
        return out

    # ---------------------------------------------------------------------------------------------
    def fit(
        self, frames: np.ndarray, match: BackgroundMatch, targets: np.ndarray, candidates: list[int]
    ) -> list[TemplateFit]:
        """Fit every candidate sprite to each target mask ([K, T, H, W]) at every angle; one TemplateFit per target.

        Per frame and candidate the pose is not searched but derived from the target mask: the scale from
        its area (the candidate's own fill fraction), the centre from its centroid minus the candidate's
        rotated alpha-centroid offset. Only the angle is searched. Each target's error region is its
        bounding box grown by a margin, minus the other targets' pixels.
        """
        num_targets, frames_count = targets.shape[:2]
        side = self.renderer.side
        background = self._scene_backgrounds[match.scene, match.variant]  # [H, W, 3]
        fills, offsets = self._sprite_stats
        cand = np.asarray(candidates)
        angles = self.angles
        areas = targets.sum(axis=(2, 3)).astype(np.float64)  # [K, T]
        present = areas >= self.min_pixels
        ys, xs = np.mgrid[0 : frames.shape[1], 0 : frames.shape[2]] + 0.5
        safe = np.maximum(areas, 1)
        centroids = np.stack([(targets * xs).sum(axis=(2, 3)) / safe, (targets * ys).sum(axis=(2, 3)) / safe], -1)
        regions = np.stack([_region(targets[k], targets[np.arange(num_targets) != k].any(axis=0)) for k in range(num_targets)])

        # Poses [K, C, A, T]: diameter from area / fill, centre = centroid - R(angle) * offset * radius.
        diameter = np.sqrt(safe[:, None, :] / fills[cand][None, :, None])  # [K, C, T] pixels
        u, v = offsets[cand, 0][None, :, None], offsets[cand, 1][None, :, None]  # [1, C, 1]
        cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]  # [A, 1]
        # Screen offset of the sprite's alpha centroid: the renderer's inverse map transposed.
        du = (cos[None, None] * u[..., None, :] + sin[None, None] * v[..., None, :])  # [1, C, A, 1]
        dv = (-sin[None, None] * u[..., None, :] + cos[None, None] * v[..., None, :])
        radius = diameter[:, :, None, :] / 2  # [K, C, 1, T]
        cx = centroids[:, None, None, :, 0] - radius * du  # [K, C, A, T]
        cy = centroids[:, None, None, :, 1] - radius * dv
        shape = (num_targets, len(cand), len(angles), frames_count)
        poses = {
            "cx": cx.reshape(-1, 1, frames_count).astype(np.float32),
            "cy": cy.reshape(-1, 1, frames_count).astype(np.float32),
            "scale": np.broadcast_to(radius * 2 / side, shape).reshape(-1, 1, frames_count).astype(np.float32),
            "angle": np.broadcast_to(angles[None, None, :, None], shape).reshape(-1, 1, frames_count).astype(np.float32),
        }
        count = int(np.prod(shape[:3]))
        subject_index = np.broadcast_to(cand[None, :, None], shape[:3]).reshape(count, 1)
        background_index = np.tile([[match.scene, match.variant]], (count, 1))
        rendered = self.renderer.render_batch(background_index, subject_index, poses)["frames"]  # [N, T, H, W, 3]
        # [N, T, H, W, 3] -> per-pixel L1 [K, C*A, T, H, W] summed over each target's region -> [K, C, A, T]
        error = np.abs(rendered.astype(np.float32) / 255 - frames[None]).mean(axis=-1)
        error = error.reshape(num_targets, -1, frames_count, *frames.shape[1:3])
        errors = (error * regions[:, None]).sum(axis=(-2, -1)).reshape(shape)
        baseline = (np.abs(background[None] - frames).mean(axis=-1)[None] * regions).sum(axis=(-2, -1))  # [K, T]
        return [TemplateFit(errors[k], baseline[k], present[k], centroids[k], areas[k]) for k in range(num_targets)]

    def centre_track(self, fit: TemplateFit, subject: int, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sprite centres [T, 2] (pixels) and scales [T] of `subject` given its angle per frame."""
        fills, offsets = self._sprite_stats
        diameter = np.sqrt(np.maximum(fit.areas, 1) / fills[subject])
        u, v = offsets[subject]
        cos, sin = np.cos(angles), np.sin(angles)
        radius = diameter / 2
        centres = fit.centroids - radius[:, None] * np.stack([cos * u + sin * v, -sin * u + cos * v], -1)
        return centres, diameter / self.renderer.side


_FRAME_CONNECTIVITY = np.zeros((3, 3, 3), bool)
_FRAME_CONNECTIVITY[1] = True  # 8-connected within a frame, never across frames


def _region(target: np.ndarray, others: np.ndarray, margin: int = 3) -> np.ndarray:
    """bool [T, H, W]: each frame's target bounding box grown by `margin` pixels, minus the other targets' pixels."""
    region = np.zeros_like(target)
    for t in range(target.shape[0]):
        rows, cols = np.flatnonzero(target[t].any(axis=1)), np.flatnonzero(target[t].any(axis=0))
        if len(rows) == 0:
            continue
        region[t, max(rows[0] - margin, 0) : rows[-1] + margin + 1, max(cols[0] - margin, 0) : cols[-1] + margin + 1] = True
    return region & ~scipy.ndimage.binary_dilation(others, structure=_FRAME_CONNECTIVITY)

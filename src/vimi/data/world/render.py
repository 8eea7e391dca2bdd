"""Fast batched rendering of GroundedWorld frames: any subject on any background at any pose.

Sprites are built once per subject as a small mip pyramid of premultiplied RGBA (so a shrunken
sprite is pre-filtered, not aliased). A frame is composed by inverse-affine nearest sampling: for
every output pixel, the sprite texel it shows is one gather from a flat texel table, vectorised over
a whole batch of videos x frames x pixels. Pose conventions: centre (cx, cy) in pixels (x right,
y down, pixel centres at +0.5), scale = sprite diameter / min(H, W), angle in radians,
counter-clockwise on screen.
"""

import numpy as np

from vimi.data.world.scenes import PLAIN_BACKDROP, SCENES, Scene, scene_background
from vimi.data.world.subjects import make_sprite

MIN_LEVEL_SIZE = 4


class WorldRenderer:
    """Renders frames of the world's subjects (indices into `appearances`) over scene backgrounds."""

    def __init__(
        self,
        appearances: list[dict],
        height: int,
        width: int,
        seed: int = 0,
        background_variants: int = 8,
        scenes: tuple[Scene, ...] = SCENES,
        plain_scenes: bool = False,
    ):
        self.height, self.width = height, width
        self.side = min(height, width)
        self.scenes = scenes
        self.num_subjects = len(appearances)
        self.background_variants = background_variants
        # Finest sprite level: the frame's side rounded up to a power of two (levels halve exactly). A
        # subject is never wider than the frame, so the finest level is never magnified more than 2x.
        self.sprite_size = 1 << int(np.ceil(np.log2(max(height, width, 8))))
        self.level_sizes = []
        size = self.sprite_size
        while size >= MIN_LEVEL_SIZE:
            self.level_sizes.append(size)
            size //= 2
        self._build_sprite_table(appearances)
        # [num_scenes + 1, V, H, W, 3]; the extra last "scene" is the plain backdrop of reference images.
        banks = [
            [
                scene_background(scene, height, width, v, seed, plain_scenes)
                for v in range(background_variants)
            ]
            for scene in scenes
        ]
        plain = np.broadcast_to(
            np.asarray(PLAIN_BACKDROP, np.float32), (background_variants, height, width, 3)
        )
        self.backgrounds = np.concatenate([np.asarray(banks, np.float32), plain[None]], axis=0)
        # The same with a 4th zero channel, so that compositing runs on contiguous 4-float pixels.
        self._backgrounds4 = np.concatenate(
            [self.backgrounds, np.zeros_like(self.backgrounds[..., :1])], axis=-1
        )
        self.plain_index = len(scenes)

    # ---------------------------------------------------------------------------------------------
    def _build_sprite_table(self, appearances: list[dict]) -> None:
        """Flat texel table [total, 4] with every subject's levels, each padded by a transparent border."""
        levels = len(self.level_sizes)
        sizes = np.array(self.level_sizes)
        per_subject = int(((sizes + 2) ** 2).sum())
        # One more, all-transparent subject at index num_subjects stands for "no subject".
        table = np.zeros(((self.num_subjects + 1) * per_subject, 4), np.float32)
        if len(table) >= 2**31:
            raise ValueError(
                f"{self.num_subjects} subjects at sprite size {self.sprite_size} overflow int32 texel indices"
            )
        self.offsets = np.zeros((self.num_subjects + 1, levels), np.int64)
        for p in range(self.num_subjects + 1):
            sprite = make_sprite(appearances[p], self.sprite_size) if p < self.num_subjects else None
            start = p * per_subject
            for level, size in enumerate(self.level_sizes):
                self.offsets[p, level] = start
                if sprite is not None:
                    padded = np.zeros((size + 2, size + 2, 4), np.float32)
                    padded[1:-1, 1:-1] = sprite
                    table[start : start + (size + 2) ** 2] = padded.reshape(-1, 4)
                    # [S, S, 4] -> [S/2, 2, S/2, 2, 4] -> box filter to the next level (premultiplied: exact)
                    sprite = sprite.reshape(size // 2, 2, size // 2, 2, 4).mean(axis=(1, 3))
                start += (size + 2) ** 2
        # Gathers of 16-byte rows through a 1-D complex128 view are ~15x faster than 2-D fancy indexing.
        self.texels = table
        self._premultiplied = table.view(np.complex128).reshape(-1)
        transmittance = np.repeat(1 - table[:, 3:], 4, axis=1)  # [total, 4]: what the background keeps
        self._transmittance = np.ascontiguousarray(transmittance).view(np.complex128).reshape(-1)
        self._coverage = np.ascontiguousarray(table[:, 3])

    def sprite(self, subject_index: int) -> np.ndarray:
        """The finest premultiplied RGBA sprite of a subject, float32 [S, S, 4]."""
        size = self.sprite_size
        start = self.offsets[subject_index, 0]
        return self.texels[start : start + (size + 2) ** 2].reshape(size + 2, size + 2, 4)[1:-1, 1:-1].copy()

    def background(self, scene_index: int, variant: int = 0) -> np.ndarray:
        """Background float32 [H, W, 3] in [0, 1]; scene_index == plain_index gives the plain backdrop."""
        return self.backgrounds[scene_index, variant % self.background_variants]

    # ---------------------------------------------------------------------------------------------
    def render_batch(
        self,
        background_index: np.ndarray,
        subject_index: np.ndarray,
        poses: dict[str, np.ndarray],
        return_alpha: bool = False,
    ) -> dict[str, np.ndarray]:
        """Render N clips of T frames with up to K subjects each (painted in order k = 0, 1, ...).

        background_index: int [N, 2] (scene index, variant); subject_index: int [N, K], -1 = none;
        poses: "cx", "cy", "scale", "angle" float32 [N, K, T].
        Returns "frames" uint8 [N, T, H, W, 3], "boxes" int32 [N, K, T, 4] (x0, y0, x1, y1; pixels with
        coverage > 0.5 before occlusion, x1/y1 exclusive; zeros when invisible), "visible" bool [N, K, T],
        and with return_alpha "alpha" float32 [N, K, T, H, W] (each subject's own coverage).
        """
        background_index = np.asarray(background_index)
        subject_index = np.asarray(subject_index)
        num, layers = subject_index.shape
        frames_count = poses["cx"].shape[-1]
        backgrounds = self._backgrounds4[
            background_index[:, 0], background_index[:, 1] % self.background_variants
        ]
        # [N, H, W, 4] -> [N, T, H, W, 4]; the 4th (ignored) channel keeps every composite op contiguous.
        canvas = np.repeat(backgrounds[:, None], frames_count, axis=1)
        boxes = np.zeros((num, layers, frames_count, 4), np.int32)
        visible = np.zeros((num, layers, frames_count), bool)
        alphas = (
            np.zeros((num, layers, frames_count, self.height, self.width), np.float32)
            if return_alpha
            else None
        )
        for k in range(layers):
            # Only the clips that have a k-th subject pay for it (most clips have one subject).
            rows = np.flatnonzero(subject_index[:, k] >= 0)
            if len(rows) == 0:
                continue
            every = len(rows) == num
            pose = {
                name: np.asarray(poses[name][rows, k], np.float32) for name in ("cx", "cy", "scale", "angle")
            }
            flat = self._texel_index(subject_index[rows, k], pose)  # [n, T, H, W]
            layer = canvas if every else canvas[rows]
            # complex128 [n, T, H, W] -> float32 [n, T, H, W, 4]
            layer *= np.take(self._transmittance, flat).view(np.float32).reshape(layer.shape)
            layer += np.take(self._premultiplied, flat).view(np.float32).reshape(layer.shape)
            if not every:
                canvas[rows] = layer
            alpha = np.take(self._coverage, flat)  # [n, T, H, W]
            boxes[rows, k], visible[rows, k] = _boxes(alpha > 0.5)
            if alphas is not None:
                alphas[rows, k] = alpha
        canvas *= 255
        canvas += 0.5
        frames = np.ascontiguousarray(canvas.astype(np.uint8)[..., :3])
        out = {"frames": frames, "boxes": boxes, "visible": visible}
        if alphas is not None:
            out["alpha"] = alphas
        return out

    def _texel_index(self, subject_index: np.ndarray, pose: dict[str, np.ndarray]) -> np.ndarray:
        """Row of the texel table that each pixel shows, for one subject per clip: int32 [N, T, H, W]."""
        sprite_row = np.asarray(subject_index)  # [N], every entry >= 0
        diameter = np.maximum(pose["scale"] * self.side, 1e-3)  # [N, T] pixels
        level = np.clip(np.floor(np.log2(self.sprite_size / diameter)), 0, len(self.level_sizes) - 1).astype(
            np.int64
        )
        size = (self.sprite_size >> level).astype(np.float32)  # [N, T] texels across at this level
        texels_per_pixel = size / diameter
        cos = np.cos(pose["angle"]) * texels_per_pixel
        sin = np.sin(pose["angle"]) * texels_per_pixel
        xs = np.arange(self.width, dtype=np.float32) + 0.5
        ys = np.arange(self.height, dtype=np.float32) + 0.5
        dx = xs[None, None, :] - pose["cx"][..., None]  # [N, T, W]
        dy = ys[None, None, :] - pose["cy"][..., None]  # [N, T, H]
        centre = (size / 2 + 1)[..., None, None]  # +1: the transparent border texel
        # Inverse of the on-screen rotation: u = cos*dx - sin*dy, v = sin*dx + cos*dy (in texels).
        u = (centre + cos[..., None, None] * dx[:, :, None, :]) - sin[..., None, None] * dy[:, :, :, None]
        v = (centre + sin[..., None, None] * dx[:, :, None, :]) + cos[..., None, None] * dy[:, :, :, None]
        upper = (size + 1)[..., None, None]
        np.clip(u, 0, upper, out=u)
        np.clip(v, 0, upper, out=v)
        stride = (size.astype(np.int32) + 2)[..., None, None]
        base = self.offsets[sprite_row[:, None], level].astype(np.int32)[..., None, None]  # [N, T, 1, 1]
        flat = v.astype(np.int32)
        flat *= stride
        flat += u.astype(np.int32)
        flat += base
        return flat

    # ---------------------------------------------------------------------------------------------
    def render_subject(
        self,
        subject_index: int,
        scene_index: int | None = None,
        variant: int = 0,
        cx: float | None = None,
        cy: float | None = None,
        scale: float = 0.6,
        angle: float = 0.0,
    ) -> np.ndarray:
        """One subject at one pose, uint8 [H, W, 3]; scene None is the plain backdrop, cx/cy None the centre."""
        pose = {
            "cx": np.full((1, 1, 1), self.width / 2 if cx is None else cx, np.float32),
            "cy": np.full((1, 1, 1), self.height / 2 if cy is None else cy, np.float32),
            "scale": np.full((1, 1, 1), scale, np.float32),
            "angle": np.full((1, 1, 1), angle, np.float32),
        }
        scene = self.plain_index if scene_index is None else scene_index
        out = self.render_batch(np.array([[scene, variant]]), np.array([[subject_index]]), pose)
        return out["frames"][0, 0]


def _boxes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tight boxes of boolean masks [N, T, H, W] -> (int32 [N, T, 4] x0, y0, x1, y1 exclusive, visible [N, T])."""
    rows = mask.any(axis=-1)  # [N, T, H]
    cols = mask.any(axis=-2)  # [N, T, W]
    visible = rows.any(axis=-1)
    height, width = rows.shape[-1], cols.shape[-1]
    y0 = rows.argmax(axis=-1)
    y1 = height - rows[..., ::-1].argmax(axis=-1)
    x0 = cols.argmax(axis=-1)
    x1 = width - cols[..., ::-1].argmax(axis=-1)
    boxes = np.stack([x0, y0, x1, y1], axis=-1).astype(np.int32) * visible[..., None]
    return boxes, visible

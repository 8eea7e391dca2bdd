"""Loading a built world: `load_world(path) -> GroundedWorld` with subject/scene/motion tables,
ground-truth video records and a renderer that draws any subject on any scene at any pose."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from vimi.config import WorldConfig, from_dict
from vimi.data.manifest import iter_records
from vimi.data.world.build import SPLITS, WORLD_FILE, WORLD_FORMAT
from vimi.data.world.motions import MOTIONS, Motion
from vimi.data.world.render import WorldRenderer
from vimi.data.world.scenes import SCENES, Scene
from vimi.data.world.subjects import Subject
from vimi.errors import DataError
from vimi.utils.files import read_json


@dataclass
class VideoGroundTruth:
    """One clip and its exact ground truth; K subjects, T frames."""

    id: str
    split: str
    caption: str
    video: Path
    """Absolute path of the lossless mp4."""
    subjects: list[str]
    subject_names: list[str]
    motions: list[str]
    speeds: list[str]
    """slow | fast | none (for still)."""
    scene: str
    scene_variant: int
    boxes: np.ndarray
    """int32 [K, T, 4] x0, y0, x1, y1 (x1, y1 exclusive) of pixels with coverage > 0.5, before occlusion."""
    centers: np.ndarray
    """float32 [K, T, 2] (x, y) in pixels."""
    scales: np.ndarray
    """float32 [K, T] sprite diameter / min(H, W)."""
    angles: np.ndarray
    """float32 [K, T] radians, counter-clockwise on screen."""

    @classmethod
    def from_row(cls, row: dict, root: Path) -> "VideoGroundTruth":
        return cls(
            id=row["id"],
            split=row["split"],
            caption=row["caption"],
            video=root / row["video"],
            subjects=list(row["subjects"]),
            subject_names=list(row["subject_names"]),
            motions=list(row["motions"]),
            speeds=list(row["speeds"]),
            scene=row["scene"],
            scene_variant=int(row["scene_variant"]),
            boxes=np.asarray(row["boxes"], np.int32),
            centers=np.asarray(row["centers"], np.float32),
            scales=np.asarray(row["scales"], np.float32),
            angles=np.asarray(row["angles"], np.float32),
        )


@dataclass
class GroundedWorld:
    """A built world: tables, paths, ground truth, and `renderer` for drawing subjects anew."""

    root: Path
    config: WorldConfig
    subjects: list[Subject]
    """Train and held-out subjects (renderer indices 0..len-1, in this order)."""
    distractor_subjects: list[Subject]
    """Subjects only distractor pairs show (renderer indices follow the subjects')."""
    scenes: tuple[Scene, ...] = SCENES
    motions: tuple[Motion, ...] = MOTIONS
    info: dict = field(default_factory=dict)
    """The raw world.json."""

    @property
    def memory_dir(self) -> Path:
        """The image-text memory manifest folder (rows: id, text, image, kind, subject, scene)."""
        return self.root / self.info.get("memory", "memory")

    def video_dir(self, split: str) -> Path:
        """The video-text manifest folder of a split (train | heldout)."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; a world has splits {', '.join(SPLITS)}")
        return self.root / self.info["videos"][split]

    def subjects_in(self, split: str) -> list[Subject]:
        return [s for s in self.subjects if s.split == split]

    def subject(self, key: str) -> Subject:
        """A subject (or distractor subject) by id or name."""
        for subject in self._by_key.get(key, []):
            return subject
        raise DataError(f"{self.root}: no subject with id or name {key!r}")

    def subject_index(self, key: str) -> int:
        """The renderer index of a subject given by id or name."""
        return self._index[self.subject(key).id]

    def scene_index(self, key: str) -> int:
        """The index of a scene given by id ("night_sky") or name ("night sky")."""
        for i, scene in enumerate(self.scenes):
            if key in (scene.id, scene.name):
                return i
        raise DataError(f"unknown scene {key!r}; scenes are {', '.join(s.id for s in self.scenes)}")

    def reference_image(self, key: str) -> Path:
        """The subject's reference image (plain backdrop, centred): the image to put in a prompt."""
        subject = self.subject(key)
        if not subject.images:
            raise DataError(f"subject {key!r} has no memory images")
        return self.memory_dir / subject.images[0]

    def videos(self, split: str) -> Iterator[VideoGroundTruth]:
        """Stream the ground-truth records of a split."""
        folder = self.video_dir(split)
        for row in iter_records(folder):
            yield VideoGroundTruth.from_row(row, folder)

    @cached_property
    def renderer(self) -> WorldRenderer:
        """The renderer that built this world (subjects, then distractor subjects), at the world's frame size."""
        appearances = [s.appearance for s in self.subjects + self.distractor_subjects]
        cfg = self.config
        return WorldRenderer(
            appearances,
            cfg.height,
            cfg.width,
            cfg.seed,
            cfg.background_variants,
            plain_scenes=cfg.plain_scenes,
        )

    def render_ground_truth(self, record: VideoGroundTruth) -> np.ndarray:
        """Re-render a clip from its ground truth alone: uint8 [T, H, W, 3], equal to the mp4's frames."""
        count = len(record.subjects)
        poses = {
            "cx": record.centers[None, ..., 0],  # [1, K, T]
            "cy": record.centers[None, ..., 1],
            "scale": record.scales[None],
            "angle": record.angles[None],
        }
        index = np.array([[self.subject_index(s) for s in record.subjects]]).reshape(1, count)
        background = np.array([[self.scene_index(record.scene), record.scene_variant]])
        return self.renderer.render_batch(background, index, poses)["frames"][0]

    @cached_property
    def _by_key(self) -> dict[str, list[Subject]]:
        table: dict[str, list[Subject]] = {}
        for subject in self.subjects + self.distractor_subjects:
            table.setdefault(subject.id, []).append(subject)
            table.setdefault(subject.name, []).append(subject)
        return table

    @cached_property
    def _index(self) -> dict[str, int]:
        return {s.id: i for i, s in enumerate(self.subjects + self.distractor_subjects)}


def load_world(path: str | Path) -> GroundedWorld:
    """Read WORLD/world.json (written last by `vimi world`, so its presence marks a complete world)."""
    root = Path(path)
    info_path = root / WORLD_FILE
    if not info_path.is_file():
        raise DataError(f"{root}: no {WORLD_FILE}; build a world first with `vimi world --out {root}`")
    info = read_json(info_path, "GroundedWorld file", expect_format=WORLD_FORMAT)
    return GroundedWorld(
        root=root,
        config=from_dict(WorldConfig, info["config"], source=str(info_path)),
        subjects=[Subject.from_dict(s) for s in info["subjects"]],
        distractor_subjects=[Subject.from_dict(s) for s in info.get("distractor_subjects", [])],
        info=info,
    )

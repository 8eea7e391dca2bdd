"""Task datasets: manifest rows -> (MultimodalPrompt, target video, optional context frames) training samples.

Every sample is a pure function of (seed, global sample index): the task, the row, the clip start,
the prompt images, the condition dropout and the diffusion noise seed all come from a generator
seeded by that pair. So a batch does not depend on the number of ranks, DataLoader workers or
accumulation steps it is split over, and a resumed run sees exactly the samples it would have seen.

Tasks (paper Sec. 3):
  pretrain       stage 1: the retrieval-augmented prompt that build-prompts wrote, no instruction
  retrieval_t2v  stage 2: the same prompt under the "retrieved text-image pairs" instruction
  subject        stage 2: subject names in the caption get an image of the subject that is never a
                 frame of the target video (see `SubjectTask`)
  predict        stage 2: the first frame(s) are given as <image> in the prompt AND as context frames
  t2v            the caption alone (text-to-video)
"""

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vimi.config import DataConfig, VimiConfig
from vimi.data.image_io import from_uint8
from vimi.data.manifest import ManifestRows, iter_records, manifest_root, require_columns
from vimi.data.video_io import clip_indices, decode_frames, probe_video, read_video
from vimi.errors import ConfigError, DataError, MediaError, PromptError
from vimi.prompt import INSTRUCTIONS, Image, MultimodalPrompt, Text, apply_template, parse_prompt


@dataclass
class TaskSample:
    """One training sample; context is None unless frames are given (video prediction)."""

    prompt: MultimodalPrompt
    video: torch.Tensor  # [C, T, H, W] in [-1, 1]
    context: torch.Tensor | None  # [C, T, H, W], zeros where no frame is given
    context_mask: torch.Tensor | None  # [1, T, H, W], 1 where a frame is given
    index: int  # global sample index
    seed: int  # the sample's diffusion-noise seed


@dataclass
class TaskBatch:
    prompts: list[MultimodalPrompt]
    videos: torch.Tensor  # [B, C, T, H, W]
    context: torch.Tensor | None  # [B, C, T, H, W]
    context_mask: torch.Tensor | None  # [B, 1, T, H, W]
    indices: list[int]
    seeds: list[int]
    prepared: Any = None
    """What `prepare` made of the prompts and seeds in the DataLoader worker (the trainer's: a PreparedBatch)."""


def collate_samples(
    samples: list[TaskSample], prepare: Callable[[list[MultimodalPrompt], list[int]], Any] | None = None
) -> TaskBatch:
    """Stack samples; when any sample has context frames, the others get zeros with a zero mask.

    prepare(prompts, seeds): run here, so that the CPU work on them (reading images, tokenizing, drawing noise)
    happens in the DataLoader's workers rather than in the training loop.
    """
    videos = torch.stack([s.video for s in samples])
    context = context_mask = None
    if any(s.context is not None for s in samples):
        context = torch.stack(
            [s.context if s.context is not None else torch.zeros_like(s.video) for s in samples]
        )
        context_mask = torch.stack(
            [s.context_mask if s.context_mask is not None else torch.zeros_like(s.video[:1]) for s in samples]
        )
    prompts, seeds = [s.prompt for s in samples], [s.seed for s in samples]
    return TaskBatch(
        prompts,
        videos,
        context,
        context_mask,
        [s.index for s in samples],
        seeds,
        prepare(prompts, seeds) if prepare is not None else None,
    )


# --------------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------------


class VideoClips:
    """Clips of the videos that manifest rows name; with `in_memory`, each video is decoded once (uint8) and kept."""

    def __init__(self, root: Path, cfg: DataConfig, in_memory: bool):
        self.root = root
        self.cfg = cfg
        self.in_memory = in_memory
        self._frames: dict[str, tuple[np.ndarray, float]] = {}  # path -> (uint8 [N, H, W, 3], fps)

    def path(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else self.root / path

    def clip(self, relative: str, rng: random.Random) -> torch.Tensor:
        """A [C, T, H, W] clip in [-1, 1] from the named video, start drawn from `rng` when random_start."""
        cfg, path = self.cfg, self.path(relative)
        size = (cfg.height, cfg.width)
        start = None if cfg.random_start else 0
        if not self.in_memory:
            return read_video(path, cfg.num_frames, cfg.frame_stride, cfg.target_fps, start, rng, size)
        key = str(path)
        if key not in self._frames:
            info = probe_video(path)
            self._frames[key] = (decode_frames(path, list(range(info.num_frames)), size), info.fps)
        frames, fps = self._frames[key]
        indices = clip_indices(
            len(frames), cfg.num_frames, cfg.frame_stride, fps, cfg.target_fps, start, rng, name=key
        )
        return from_uint8(frames[indices])  # [T, H, W, C] -> [C, T, H, W]


# Columns the video-text tasks read besides caption and video (each only where the manifest has it).
VIDEO_TASK_COLUMNS = ("id", "subjects", "subject_names", "subject_images")


# --------------------------------------------------------------------------------------------------
# Tasks: each turns row i (+ a sample generator) into (prompt, video, context, context_mask)
# --------------------------------------------------------------------------------------------------


class ManifestTask:
    """A task over the rows of one manifest and the clips they reference; subclasses define `make`."""

    def __init__(self, rows: ManifestRows, clips: VideoClips):
        self.rows, self.clips = rows, clips

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def manifest(self) -> Path:
        return self.rows.path


class PromptedVideoTask(ManifestTask):
    """Rows of a build-prompts manifest: a serialised interleaved `prompt` (JSON) and a `video` path."""

    def __init__(self, manifest: str | Path, cfg: DataConfig, task: str):
        self.root = manifest_root(manifest)
        rows = ManifestRows(manifest, "multimodal-prompt", ("prompt", "video"), ("id",))
        super().__init__(rows, VideoClips(self.root, cfg, cfg.in_memory))
        self.task = task

    def make(self, i: int, rng: random.Random, cfg: VimiConfig):
        row = self.rows[i]
        data = json.loads(row["prompt"]) if isinstance(row["prompt"], str) else row["prompt"]
        prompt = MultimodalPrompt.from_dict(data, base_dir=self.root)
        prompt = apply_template(self.task, MultimodalPrompt(prompt.segments, self.task))
        return prompt, self.clips.clip(row["video"], rng), None, None


class CaptionTask(ManifestTask):
    """Rows of a video-text manifest (id, caption, video) as plain text-to-video samples."""

    def make(self, i: int, rng: random.Random, cfg: VimiConfig):
        row = self.rows[i]
        return apply_template("t2v", row["caption"]), self.clips.clip(row["video"], rng), None, None


class PredictTask(CaptionTask):
    """Video prediction: the first `predict_frames` frames go into the prompt as <image> and to the backbone as context."""

    def make(self, i: int, rng: random.Random, cfg: VimiConfig):
        row = self.rows[i]
        video = self.clips.clip(row["video"], rng)  # [C, T, H, W]
        given = min(max(cfg.train.predict_frames, 1), video.shape[1] - 1)
        frames = [Image(video[:, t].clone()) for t in range(given)]
        prompt = MultimodalPrompt(
            [Text(INSTRUCTIONS["predict"] + " "), *frames, Text(" " + row["caption"].strip())], "predict"
        )
        context_mask = torch.zeros(1, *video.shape[1:])  # [1, T, H, W]
        context_mask[:, :given] = 1.0
        return prompt, video, video * context_mask, context_mask


class SubjectTask(CaptionTask):
    """Subject-driven generation: each subject name in the caption is grounded by an image of that subject.

    The images are never frames of the target video. On GroundedWorld they are memory images of the
    named subject (`subject_images`: subject id -> image paths, from WORLD/memory rows of kind "subject";
    video rows name their subjects by id in `subjects` and by name in `subject_names`).
    On real data, rows carry `subject_names` and `subject_images` columns prepared offline: for each
    noun phrase of the caption, an open-vocabulary detector (e.g. Grounding DINO) boxes the subject in
    a *different* clip of the same source video (or a frame at least a few seconds from the target
    clip), and the box, padded by 10% and squared, is cropped and saved; a crop whose perceptual hash
    is close to any target frame is dropped. Using another clip stops the model from copying pixels.

    Each name becomes "<name> <image>" with probability subject_name_prob, else the paper's template
    form "A <image> ..." (the name replaced by the image).
    """

    def __init__(
        self,
        rows: ManifestRows,
        clips: VideoClips,
        subject_images: dict[str, list[str]],
        memory_root: Path,
        references: dict[str, str] | None = None,
    ):
        super().__init__(rows, clips)
        self.subject_images = subject_images
        self.references = references or {}  # subject id -> its reference image (GroundedWorld)
        self.memory_root = memory_root

    def make(self, i: int, rng: random.Random, cfg: VimiConfig):
        row = self.rows[i]
        names, images = self._subjects(row, rng, cfg.train.subject_reference_prob)
        caption = row["caption"].strip()
        picked: list[str] = []
        # Replace names in the order they occur in the caption, so images fill the <image> slots in order.
        spans = sorted(
            (m.start(), m.end(), name, image)
            for name, image in zip(names, images)
            for m in [re.search(rf"\b{re.escape(name)}\b", caption, flags=re.IGNORECASE)]
            if m
        )
        text, cursor = "", 0
        for start, end, _name, image in spans:
            if start < cursor:
                continue
            keep_name = rng.random() < cfg.train.subject_name_prob
            text += caption[cursor:start] + (f"{caption[start:end]} <image>" if keep_name else "<image>")
            picked.append(image)
            cursor = end
        text += caption[cursor:]
        prompt = parse_prompt(text, images=picked, task="subject", check_files=False)
        return apply_template("subject", prompt), self.clips.clip(row["video"], rng), None, None

    def _subjects(self, row: dict, rng: random.Random, reference_prob: float) -> tuple[list[str], list[str]]:
        if row.get("subject_images"):  # real data: crops prepared offline, one per name
            return list(row["subject_names"]), [str(self.clips.path(p)) for p in row["subject_images"]]
        ids = list(row.get("subjects") or [])
        names = list(
            row.get("subject_names") or ids
        )  # GroundedWorld: ids key the memory, names are in the caption
        pairs = [(name, sid) for name, sid in zip(names, ids) if sid in self.subject_images]
        images = []
        for _, sid in pairs:
            # (reference_prob 0 draws the same random numbers as before the option existed)
            if reference_prob > 0 and sid in self.references and rng.random() < reference_prob:
                images.append(str(self.memory_root / self.references[sid]))
            else:
                images.append(str(self.memory_root / rng.choice(self.subject_images[sid])))
        return [name for name, _ in pairs], images


# --------------------------------------------------------------------------------------------------
# The mixture
# --------------------------------------------------------------------------------------------------


class TaskMixture(torch.utils.data.Dataset):
    """Map-style dataset over global sample indices: index -> a task drawn by weight -> a row -> a sample."""

    def __init__(self, tasks: dict[str, object], weights: dict[str, float], cfg: VimiConfig):
        self.tasks = {name: task for name, task in tasks.items() if weights.get(name, 0.0) > 0}
        self.names = list(self.tasks)
        self.weights = [weights[name] for name in self.names]
        self.cfg = cfg

    def __len__(self) -> int:
        return 2**62  # indices are drawn from an endless stream; rows repeat with replacement

    def __getitem__(self, index: int) -> TaskSample:
        return self.sample(index, dropout=True)

    def sample(
        self, index: int, dropout: bool = True, stream: str = "train", task: str | None = None
    ) -> TaskSample:
        """Sample `index` of the (seed, stream) sequence; deterministic across processes."""
        rng = random.Random(f"{self.cfg.train.seed}/{stream}/{index}")
        drawn = rng.choices(self.names, self.weights)[0]
        name = task or drawn
        task = self.tasks[name]
        row = rng.randrange(len(task))
        try:
            prompt, video, context, context_mask = task.make(row, rng, self.cfg)
            require_image_files(prompt)
        except (MediaError, PromptError, json.JSONDecodeError, KeyError) as err:
            raise DataError(f"task {name}, row {row} of {task.manifest}: {describe_row_error(err)}") from None
        if dropout:
            prompt = drop_condition(prompt, rng.random(), self.cfg)
        return TaskSample(prompt, video, context, context_mask, index, rng.getrandbits(62))

    def fixed_samples(self, n: int) -> list[TaskSample]:
        """`n` eval samples without dropout, cycling through the active tasks (for periodic sample videos)."""
        return [self.sample(i, False, "eval", self.names[i % len(self.names)]) for i in range(n)]


def require_image_files(prompt: MultimodalPrompt) -> None:
    """PromptError naming the first prompt image file that is missing (a stat; the encoder reads it later)."""
    for path in filter(None, (image.path for image in prompt.images)):
        if not Path(path).is_file():
            raise PromptError(f"prompt image not found: {path}")


def describe_row_error(err: Exception) -> str:
    """What is wrong with a manifest row, for the DataError that names the task, row and manifest."""
    if isinstance(err, json.JSONDecodeError):
        return f"the `prompt` column is not valid JSON ({err}); rebuild the dataset with `vimi build-prompts`"
    if isinstance(err, KeyError):
        return f"the row lacks field {err}; check the manifest's columns"
    return str(err)


def drop_condition(prompt: MultimodalPrompt, u: float, cfg: VimiConfig) -> MultimodalPrompt:
    """Classifier-free-guidance dropout: both with p=drop_both, else text with drop_text, else images with drop_images."""
    train = cfg.train
    if u < train.drop_both:
        return MultimodalPrompt([], prompt.task)
    if u < train.drop_both + train.drop_text:
        return prompt.drop_text()
    if u < train.drop_both + train.drop_text + train.drop_images:
        return prompt.drop_images()
    return prompt


# --------------------------------------------------------------------------------------------------
# Building the dataset a config asks for
# --------------------------------------------------------------------------------------------------


def stage_task_weights(cfg: VimiConfig) -> dict[str, float]:
    """Stage 1 trains on the retrieval-augmented prompts alone; stage 2 on the configured mixture."""
    if cfg.train.stage == "pretrain":
        return {"pretrain": 1.0}
    weights = {k: float(v) for k, v in vars(cfg.train.tasks).items()}
    if not any(w > 0 for w in weights.values()):
        raise DataError(
            "train.tasks: every task weight is 0; give at least one of subject/predict/retrieval_t2v > 0"
        )
    return weights


def build_task_dataset(cfg: VimiConfig) -> TaskMixture:
    """The TaskMixture of cfg.train.stage, checking that every dataset an active task needs exists."""
    weights = stage_task_weights(cfg)
    active = {name for name, w in weights.items() if w > 0}
    tasks: dict[str, object] = {}
    for name in active & {"pretrain", "retrieval_t2v"}:
        if not cfg.data.train_manifest:
            raise DataError(
                f"task {name} needs data.train_manifest: the multimodal-prompt dataset that "
                "`vimi build-prompts` writes (set it in the config or with --set data.train_manifest=DIR)"
            )
        tasks[name] = PromptedVideoTask(
            _existing(cfg.data.train_manifest, "data.train_manifest"), cfg.data, name
        )
    video_tasks = active & {"subject", "predict", "t2v"}
    if video_tasks:
        videos_path = cfg.data.video_manifest or str(Path(cfg.data.world_dir) / "videos" / "train")
        key = "data.video_manifest" if cfg.data.video_manifest else "data.world_dir"
        rows = ManifestRows(
            _existing(videos_path, key), "video-text", ("caption", "video"), VIDEO_TASK_COLUMNS
        )
        clips = VideoClips(manifest_root(videos_path), cfg.data, cfg.data.in_memory)
        if "predict" in video_tasks:
            tasks["predict"] = PredictTask(rows, clips)
        if "t2v" in video_tasks:
            tasks["t2v"] = CaptionTask(rows, clips)
        if "subject" in video_tasks:
            tasks["subject"] = _subject_task(cfg, rows, clips)
    return TaskMixture(tasks, weights, cfg)


def _subject_task(cfg: VimiConfig, rows: ManifestRows, clips: VideoClips) -> SubjectTask:
    """GroundedWorld: subject images from WORLD/memory; real data: the rows' own subject crops."""
    if not 0.0 <= cfg.train.subject_reference_prob <= 1.0:
        raise ConfigError(
            f"train.subject_reference_prob must be in [0, 1], got {cfg.train.subject_reference_prob}"
        )
    if "subject_images" in rows.columns:
        return SubjectTask(rows, clips, {}, clips.root)
    memory_path = Path(cfg.data.world_dir) / "memory"
    if not memory_path.exists():
        raise DataError(
            f"task subject needs subject images: {memory_path} (GroundedWorld memory) does not exist and the "
            "video manifest has no subject_images column; build the world or set train.tasks.subject=0"
        )
    require_columns(memory_path, "memory", ("image", "kind", "subject", "scene"))
    subject_images: dict[str, list[str]] = {}
    references: dict[str, str] = {}  # the image of a subject on the plain backdrop (no scene)
    for row in iter_records(memory_path, columns=["image", "kind", "subject", "scene"]):
        if row["kind"] == "subject" and row["subject"]:
            subject_images.setdefault(row["subject"], []).append(row["image"])
            if row["scene"] is None:
                references.setdefault(row["subject"], row["image"])
    if "subjects" not in rows.columns:
        raise DataError(
            "task subject: the video manifest has no `subjects` column naming each video's subjects"
        )
    return SubjectTask(rows, clips, subject_images, manifest_root(memory_path), references)


def _existing(path: str, key: str) -> str:
    if not Path(path).exists():
        raise DataError(f"{key}: dataset not found: {path}")
    return path

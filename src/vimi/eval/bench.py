"""The grounding benchmark: held-out prompts per task built from a GroundedWorld, generation through any
generate function (a VimiPipeline in practice), exact scoring and bootstrap 95% confidence intervals.

Tasks (one prompt per held-out video of the right kind, the first `n`):
  subject      single-subject videos; each subject name in the caption is replaced by an <image> slot
               filled with that subject's reference memory image (never a frame of the video)
  two_subject  the same for two-subject videos
  predict      the first frame is given (prompt image and context frame); scored also by PSNR/SSIM
  t2v          the caption alone, grounded by retrieved examples when a retrieval index is given,
               else the subject prompt without its images (the text-only condition)
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vimi.config import EvalConfig
from vimi.data.image_io import from_uint8
from vimi.data.world import GroundedWorld, VideoGroundTruth
from vimi.errors import ConfigError
from vimi.eval.bootstrap import bootstrap_ci
from vimi.eval.grounding import (
    ACCURACY_METRICS,
    PREDICTION_METRICS,
    GroundingScorer,
    GroundTruth,
    VideoScore,
    validated_metrics,
)
from vimi.prompt import MultimodalPrompt, apply_template, parse_prompt
from vimi.utils.typed_config import parse_override

TASKS = ("subject", "two_subject", "predict", "t2v")
MIN_VISIBLE_PIXELS = 25
"""A prompt's video must show each subject with a box of at least this many pixels in most frames: a
subject that blends into its scene (same colours) cannot be judged from pixels, truth or generated."""
METRICS = (*ACCURACY_METRICS, *PREDICTION_METRICS)

GenerateFn = Callable[[list[MultimodalPrompt], list[torch.Tensor | None], list[int], Any], torch.Tensor]
"""generate_fn(prompts, first_frames, seeds, index) -> videos [B, C, T, H, W] in [-1, 1]; video i depends
only on (prompts[i], first_frames[i], seeds[i]); `index` is a retrieval index (or None) for t2v prompts."""


@dataclass
class BenchItem:
    """One benchmark prompt: what is asked, what the world says the answer is."""

    id: str
    task: str
    prompt: MultimodalPrompt
    first_frame: torch.Tensor | None
    """[C, H, W] in [-1, 1] for video prediction."""
    truth: GroundTruth
    record: VideoGroundTruth
    seed: int
    use_index: bool = False

    @property
    def model_prompt(self) -> MultimodalPrompt:
        """The templated prompt the model gets: for prediction, the instruction, the first frame and the caption
        (as `VimiPipeline.prepare_prompt` builds it); otherwise `prompt` itself."""
        if self.first_frame is None:
            return self.prompt
        return apply_template("predict", self.prompt, first_frame=self.first_frame)

    @property
    def text(self) -> str:
        """The model prompt's words with <image> where each image goes."""
        return self.model_prompt.placeholder_text


@dataclass
class BenchResult:
    """Per-item videos and scores plus the per-task summaries (mean and 95% CI per metric)."""

    items: list[BenchItem]
    videos: list[torch.Tensor]
    scores: list[VideoScore]
    summary: dict = field(default_factory=dict)


def ground_truth(world: GroundedWorld, record: VideoGroundTruth) -> GroundTruth:
    return GroundTruth(
        tuple(world.subject_index(s) for s in record.subjects),
        tuple(record.motions),
        world.scene_index(record.scene),
    )


def subject_prompt(world: GroundedWorld, record: VideoGroundTruth) -> MultimodalPrompt:
    """The caption with every subject name replaced by an <image> of that subject's reference memory image."""
    text, images = record.caption, []
    spans = sorted(
        (m.start(), m.end(), subject)
        for name, subject in zip(record.subject_names, record.subjects)
        for m in [re.search(rf"\b{re.escape(name)}\b", text, flags=re.IGNORECASE)]
        if m
    )
    out, cursor = "", 0
    for start, end, subject in spans:
        out += text[cursor:start] + "<image>"
        images.append(world.reference_image(subject))
        cursor = end
    out += text[cursor:]
    return apply_template("subject", parse_prompt(out, images=images, task="subject", check_files=False))


def clearly_visible(record: VideoGroundTruth) -> bool:
    """Whether every subject's ground-truth box covers >= MIN_VISIBLE_PIXELS in at least half of the frames."""
    boxes = record.boxes  # [K, T, 4] x0, y0, x1, y1
    areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])  # [K, T]
    return bool(((areas >= MIN_VISIBLE_PIXELS).mean(axis=1) >= 0.5).all())


def build_items(
    world: GroundedWorld, task: str, split: str, n: int, seed: int = 0, has_index: bool = False
) -> list[BenchItem]:
    """The first `n` held-out prompts of `task` (fewer if the split has fewer videos of that kind)."""
    if task not in TASKS:
        raise ConfigError(f"unknown grounding task {task!r}; use one of {', '.join(TASKS)} or all")
    items: list[BenchItem] = []
    for record in world.videos(split):
        if len(items) >= n:
            break
        two = len(record.subjects) == 2
        if (task == "subject" and two) or (task == "two_subject" and not two) or not clearly_visible(record):
            continue
        first_frame, use_index = None, False
        if task == "predict":
            frames = world.render_ground_truth(record)  # [T, H, W, 3] uint8, equal to the mp4
            first_frame = (
                torch.from_numpy(frames[0]).permute(2, 0, 1).float() / 127.5 - 1
            )  # [H, W, C] -> [C, H, W]
            prompt = apply_template("t2v", record.caption)
        elif task == "t2v":
            use_index = has_index
            prompt = apply_template(
                "t2v", record.caption if has_index else subject_prompt(world, record).drop_images()
            )
        else:
            prompt = subject_prompt(world, record)
        index = len(items)
        items.append(
            BenchItem(
                f"{task}-{record.id}",
                task,
                prompt,
                first_frame,
                ground_truth(world, record),
                record,
                seed + index,
                use_index,
            )
        )
    return items


def truth_videos(world: GroundedWorld, items: Sequence[BenchItem]) -> torch.Tensor:
    """The items' exact ground-truth videos [B, C, T, H, W] in [-1, 1], e.g. to noise and denoise them."""
    return torch.stack([from_uint8(world.render_ground_truth(item.record)) for item in items])


def split_scorer(world: GroundedWorld, cfg: EvalConfig) -> GroundingScorer:
    """The scorer of cfg.split's prompts: its distractor candidates are that split's subjects."""
    pool = [world.subject_index(s.id) for s in world.subjects_in(cfg.split)]
    return GroundingScorer(world.renderer, cfg, pool)


def run_benchmark(
    world: GroundedWorld,
    generate_fn: GenerateFn,
    tasks: Sequence[str],
    cfg: EvalConfig,
    index: Any = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> BenchResult:
    """Build the prompts of each task, generate in batches of cfg.batch_size, score every video exactly."""
    scorer = split_scorer(world, cfg)
    items = [
        item
        for task in tasks
        for item in build_items(world, task, cfg.split, cfg.n, cfg.seed, has_index=index is not None)
    ]
    videos: list[torch.Tensor] = []
    for start in range(0, len(items), cfg.batch_size):
        batch = items[start : start + cfg.batch_size]
        # One index per call: t2v-with-retrieval items are generated apart from the others.
        for use_index in (False, True):
            group = [item for item in batch if item.use_index == use_index]
            if not group:
                continue
            out = generate_fn(
                [i.prompt for i in group],
                [i.first_frame for i in group],
                [i.seed for i in group],
                index if use_index else None,
            )
            if not isinstance(out, torch.Tensor) or out.ndim != 5 or out.shape[0] != len(group):
                raise ValueError(
                    f"generate_fn must return videos [B={len(group)}, C, T, H, W], got {getattr(out, 'shape', out)}"
                )
            for item, video in zip(group, out.detach().float().cpu()):
                videos.append((items.index(item), video))
        if progress:
            progress("generate", min(start + cfg.batch_size, len(items)), len(items))
    ordered = [video for _, video in sorted(videos, key=lambda pair: pair[0])]
    scores = []
    for i, (item, video) in enumerate(zip(items, ordered)):
        reference = world.render_ground_truth(item.record) if item.task == "predict" else None
        scores.append(
            scorer.score(
                video, item.truth, item.id, reference, given_frames=1 if item.task == "predict" else 0
            )
        )
        if progress:
            progress("score", i + 1, len(items))
    summary = {
        task: summarize([s for s, item in zip(scores, items) if item.task == task], cfg) for task in tasks
    }
    extra = {"chance": scorer.chance(), "validated_metrics": validated_metrics()}
    return BenchResult(items, ordered, scores, {"tasks": summary, **extra})


def summarize(scores: Sequence[VideoScore], cfg: EvalConfig) -> dict[str, dict[str, float]]:
    """metric -> {mean, ci_low, ci_high, n(, valid)} over the videos where the metric applies.

    Accuracy metrics carry "valid": whether they passed their validity check (grounding.VALIDITY).
    """
    validated = validated_metrics()
    out = {}
    for metric in METRICS:
        values = np.array([s.metrics()[metric] for s in scores if metric in s.metrics()], np.float64)
        if len(values) == 0:
            continue
        low, high = bootstrap_ci(values, cfg.bootstrap_samples, cfg.seed)
        out[metric] = {"mean": float(values.mean()), "ci_low": low, "ci_high": high, "n": len(values)}
        if metric in ACCURACY_METRICS:
            out[metric]["valid"] = metric in validated
    return out


SAMPLING_KEYS = ("num_inference_steps", "sampler", "guidance_text", "guidance_image")
"""The sample.* settings an evaluation may override; the video size is the world's."""


def sampling_overrides(
    overrides: Sequence[str], sample: Any, num_inference_steps: int | None = None
) -> dict[str, Any]:
    """The sample.* values a command's `--set` list names explicitly (resolved and type-checked in `sample`),
    and its --num-inference-steps flag (which wins) unless None.

    A checkpoint samples with its own config unless told otherwise; a sample.* key an evaluation cannot
    honour (the video size comes from the world) is a ConfigError rather than silently ignored.
    """
    chosen = {}
    for item in overrides:
        key = parse_override(item)[0]
        if not key.startswith("sample."):
            continue
        name = key.removeprefix("sample.")
        if name not in SAMPLING_KEYS:
            raise ConfigError(
                f"--set {item}: an evaluation samples at the world's video size; "
                f"of sample.* it takes {', '.join(SAMPLING_KEYS)}"
            )
        chosen[name] = getattr(sample, name)
    steps = {"num_inference_steps": num_inference_steps} if num_inference_steps is not None else {}
    return chosen | steps


def pipeline_generate_fn(
    pipe, num_frames: int, height: int, width: int, sampling: dict[str, Any] | None = None
) -> GenerateFn:
    """A GenerateFn over a VimiPipeline at the world's video size; `sampling` (SAMPLING_KEYS) overrides the
    checkpoint's own sample settings."""

    def generate(prompts, first_frames, seeds, index):
        frames = first_frames if any(f is not None for f in first_frames) else None
        return pipe(
            prompts, first_frame=frames, seed=list(seeds), index=index,
            num_frames=num_frames, height=height, width=width, progress=False, **(sampling or {}),
        ).frames  # fmt: skip

    return generate


def check_tasks(names: Sequence[str]) -> list[str]:
    """Expand "all" and reject unknown task names (ConfigError naming them)."""
    tasks: list[str] = []
    for name in names:
        for part in name.split(","):
            part = part.strip()
            if part == "all":
                tasks += [t for t in TASKS if t not in tasks]
            elif part in TASKS:
                tasks += [part] if part not in tasks else []
            else:
                raise ConfigError(f"--task {part}: unknown task; use one of {', '.join(TASKS)} or all")
    return tasks

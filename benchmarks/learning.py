"""Learning curves from scratch: arms (configs) trained on one rung of the learning ladder, scored as they learn.

Every arm of a run trains from random weights on the same GroundedWorld, with the same data order, seeds and
batch, in one process on one CPU thread. At fixed step counts it stops, is scored from its raw weights (EMA
lags them by its half-life in short runs) and goes on from its checkpoint (`--resume`), so a run that is
killed continues where it left off. It writes, under --out:

    curves.csv            one row per arm and scoring point: steps, samples seen, CPU seconds, loss, metrics
    curves.png            each metric against samples seen and against CPU seconds, one line per arm
    <arm>/run/            the arm's training run (config.yaml, checkpoints, metrics.jsonl)

The ladder (rungs are climbed from the bottom; a design is judged on a rung only once the rungs below pass):

    1  one clip: generation from its caption and prediction from its first frame reproduce it
       (pass: >= 30 dB inside the subject's box; the denoiser beats returning its noisy input and a 3x3 blur
       inside the box at every noise level)
    2  64 clips, each reproduced from its own caption
    3  the easy world (`world.preset: easy`): held-out motion from a given first frame and from a subject image
    4  the full world, prediction task: held-out motion and the gain over holding the first frame still
    5  the full world, held-out subjects given as images (grounding metrics, forced choice beside the gated ones)

    python benchmarks/learning.py --rung 1 --arms benchmarks/arms/control.yaml --out runs/ladder-1 --cpu-minutes 30
    python benchmarks/learning.py --rung 5 --arms benchmarks/arms/control.yaml benchmarks/arms/X.yaml \\
        --text-only --out runs/learning-5 --cpu-minutes 60          # each arm beside its text-only control
    python benchmarks/learning.py --quick --out /tmp/learning   # seconds: a tiny arm on a tiny world (the test)
    python benchmarks/learning.py --plot runs/a runs/b --out docs/ladder-2   # arms run apart, one figure
"""

import argparse
import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vimi.checkpoint import latest_checkpoint
from vimi.config import EvalConfig, RetrievalConfig, VimiConfig, WorldConfig, load_config
from vimi.data.video_io import read_video
from vimi.data.world import GroundedWorld, build_world, load_world
from vimi.diffusion import randn_per_sample
from vimi.pipeline import VimiPipeline
from vimi.prompt import apply_template
from vimi.train.logging import read_metrics
from vimi.train.trainer import train

DEFAULT_ARM = Path(__file__).resolve().parent / "arms" / "control.yaml"
DENOISE_SIGMAS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class Rung:
    """A rung of the ladder: the world an arm learns, the tasks it trains on and how it is scored."""

    name: str
    world: dict
    """WorldConfig fields (over the preset's)."""
    train: dict
    """train.* settings every arm of the rung shares (tasks, condition dropout)."""
    score: str
    """clips: the training clips reproduced from their captions / first frames; grounding: held-out metrics."""
    tasks: tuple[str, ...] = ()
    """Grounding tasks scored (score=grounding)."""
    needs_prompts: bool = False
    """Whether its tasks read the retrieval-augmented prompt dataset (index + build-prompts of the world)."""


# Every clip is seen with its caption (no condition dropout): rungs 1-2 ask whether the network can learn the
# clips at all, before any question of guidance.
ALWAYS_CONDITIONED = {"drop_text": 0.0, "drop_images": 0.0, "drop_both": 0.0}
CLIP_TASKS = {"subject": 0.0, "retrieval_t2v": 0.0, "pretrain": 0.0, "predict": 1.0, "t2v": 1.0}
RUNGS: dict[int, Rung] = {
    1: Rung("one clip", {"num_train_videos": 1}, {"tasks": CLIP_TASKS, **ALWAYS_CONDITIONED}, "clips"),
    2: Rung("64 clips", {"num_train_videos": 64}, {"tasks": CLIP_TASKS, **ALWAYS_CONDITIONED}, "clips"),
    3: Rung(
        "easy world: one solid shape, translations, plain scenes",
        {"preset": "easy"},
        {"tasks": {"subject": 1.0, "predict": 1.0, "retrieval_t2v": 0.0, "pretrain": 0.0, "t2v": 0.0}},
        "grounding",
        ("predict", "subject"),
    ),
    4: Rung(
        "full world, prediction",
        {},
        {"tasks": {**CLIP_TASKS, "t2v": 0.0}},
        "grounding",
        ("predict",),
    ),
    5: Rung(
        "full world, held-out subjects from images",
        {},
        {"tasks": {"subject": 1.0, "predict": 0.5, "retrieval_t2v": 0.5, "pretrain": 0.0, "t2v": 0.0}},
        "grounding",
        ("subject", "two_subject"),
        needs_prompts=True,
    ),
}
QUICK_WORLD = {
    "preset": "tiny",
    "num_train_videos": 4,
    "num_heldout_videos": 8,
    "num_frames": 4,
    "height": 16,
    "width": 16,
}
QUICK_MODEL = [
    "model.encoder.dim=32", "model.encoder.depth=1", "model.encoder.heads=2", "model.encoder.image_size=16",
    "model.backbone.hidden=32", "model.backbone.depth=1", "model.backbone.heads=2", "model.backbone.patch_t=1",
    "model.backbone.image_thumbnail=0", "data.num_frames=4", "data.height=16", "data.width=16",
    "sample.num_frames=4", "sample.height=16", "sample.width=16", "sample.num_inference_steps=3",
    "train.batch_size=4", "train.lr=3e-3", "train.warmup_steps=0", "train.ema_halflife_steps=1",
]  # fmt: skip


@dataclass
class Arm:
    """A design under test: a config file, and overrides on top of it (e.g. its text-only control's)."""

    name: str
    config: Path
    overrides: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# The world of a rung
# --------------------------------------------------------------------------------------------------


def prepare_world(rung: Rung, folder: Path, seed: int, extra: dict | None = None) -> Path:
    """The rung's world under `folder` (built once; the same seed gives the same bytes), with its retrieval
    index and prompt dataset when the rung's tasks read them."""
    world_dir = folder / "world"
    if not (world_dir / "world.json").is_file():
        cfg = WorldConfig(**{"preset": "small", "seed": seed, **rung.world, **(extra or {})})
        build_world(cfg, world_dir, overwrite=True)
    if rung.needs_prompts and not (folder / "prompts").is_dir():
        from vimi.retrieval import build_index
        from vimi.retrieval.build_prompts import build_prompts

        retrieval = RetrievalConfig()
        build_index(world_dir / "memory", folder / "index", retrieval, progress=False)
        build_prompts(
            world_dir / "videos" / "train", folder / "index", folder / "prompts", retrieval, progress=False
        )
    return world_dir


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


def box_mask(boxes: np.ndarray, height: int, width: int) -> torch.Tensor:
    """[T, H, W] bool: inside any subject's box in each frame (boxes [K, T, 4] x0, y0, x1, y1 exclusive)."""
    mask = torch.zeros(boxes.shape[1], height, width, dtype=torch.bool)
    for subject in boxes:
        for t, (x0, y0, x1, y1) in enumerate(subject):
            mask[t, y0:y1, x0:x1] = True
    return mask


def masked_psnr(video: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR in dB of [C, T, H, W] videos in [-1, 1] (peak 1 on [0, 1]), over the pixels of mask [T, H, W]."""
    error = (video - truth).pow(2).mean(0) / 4  # [T, H, W], on the [0, 1] scale
    mse = error[mask].mean() if mask is not None else error.mean()
    return float(-10 * torch.log10(mse.clamp(min=1e-10)))


def blur3(video: torch.Tensor) -> torch.Tensor:
    """A 3x3 box blur within each frame of [B, C, T, H, W] (edges replicated)."""
    padded = torch.nn.functional.pad(
        video.flatten(1, 2), (1, 1, 1, 1), mode="replicate"
    )  # [B, C*T, H+2, W+2]
    blurred = torch.nn.functional.avg_pool2d(padded, 3, stride=1)
    return blurred.unflatten(1, video.shape[1:3])


@torch.no_grad()
def score_clips(pipe: VimiPipeline, world: GroundedWorld, n: int, seed: int = 0) -> dict[str, float]:
    """Rungs 1-2: each of the first `n` training clips generated from its caption and predicted from its first
    frame, PSNR inside the subjects' boxes and over the frame; and the one-step denoising error inside the
    boxes against returning the noisy input and against a 3x3 blur of it (ratio < 1: the denoiser is better)."""
    records = list(world.videos("train"))[:n]
    frames, height, width = pipe.cfg.sample.num_frames, pipe.cfg.sample.height, pipe.cfg.sample.width
    if (frames, height, width) != (world.config.num_frames, world.config.height, world.config.width):
        raise ValueError(
            f"the model samples {frames}x{height}x{width} videos, the world's are {world.config}"
        )
    truths = torch.stack([read_video(record.video, frames) for record in records])  # [N, C, T, H, W]
    masks = torch.stack([box_mask(record.boxes[:, :frames], height, width) for record in records])
    captions = [apply_template("t2v", record.caption) for record in records]
    seeds = [seed + i for i in range(len(records))]
    common = {"num_frames": frames, "height": height, "width": width, "seed": seeds, "progress": False}
    generated = pipe(captions, **common).frames.cpu()
    predicted = pipe(captions, first_frame=list(truths[:, :, 0]), **common).frames.cpu()
    scores: dict[str, list[float]] = {"box_psnr": [], "psnr": [], "predict_box_psnr": [], "predict_psnr": []}
    for truth, mask, video, prediction in zip(truths, masks, generated, predicted):
        later = mask.clone()
        later[0] = False  # prediction: the generated frames only (the given one comes back as given)
        scores["box_psnr"].append(masked_psnr(video, truth, mask))
        scores["psnr"].append(masked_psnr(video, truth))
        scores["predict_box_psnr"].append(masked_psnr(prediction[:, 1:], truth[:, 1:], later[1:]))
        scores["predict_psnr"].append(masked_psnr(prediction[:, 1:], truth[:, 1:]))
    result = {name: float(np.mean(values)) for name, values in scores.items()}
    # One denoising step at each noise level, on the clips themselves, given their captions.
    model = pipe.model
    cond = model.condition(captions)
    x0 = model.autoencoder.encode(truths.to(pipe.device))
    inside = masks[:, None].expand_as(truths).to(x0.device)  # [N, C, T, H, W]
    for sigma in DENOISE_SIGMAS:
        noisy = x0 + sigma * randn_per_sample(x0.shape, [s + 7919 for s in seeds], device=x0.device)
        denoised = model.denoiser(noisy, torch.full((len(records),), sigma, device=x0.device), cond)
        errors = {
            name: (estimate - x0)[inside].pow(2).mean().item()
            for name, estimate in (("model", denoised), ("noisy", noisy), ("blur", blur3(noisy)))
        }
        result[f"denoise_vs_best_baseline@{sigma:g}"] = errors["model"] / min(errors["noisy"], errors["blur"])
    return result


@torch.no_grad()
def score_grounding(
    pipe: VimiPipeline, world: GroundedWorld, tasks: Sequence[str], n: int, folder: Path
) -> dict:
    """Rungs 4-5: the grounding metrics on `n` held-out prompts of each task (mean per task and metric)."""
    from vimi.eval.bench import pipeline_generate_fn, run_benchmark

    cfg = EvalConfig(n=n, split="heldout", bootstrap_samples=100)
    size = (world.config.num_frames, world.config.height, world.config.width)
    index = folder / "index" if (folder / "index").is_dir() else None
    result = run_benchmark(world, pipeline_generate_fn(pipe, *size), tasks, cfg, index=index)
    return {
        f"{task}/{metric}": values["mean"]
        for task, metrics in result.summary["tasks"].items()
        for metric, values in metrics.items()
    }


# --------------------------------------------------------------------------------------------------
# Training and the curves
# --------------------------------------------------------------------------------------------------


def arm_config(arm: Arm, rung: Rung, world_dir: Path, folder: Path, out: Path, steps: int) -> VimiConfig:
    """The arm's config on this rung, trained up to `steps` (resuming its own run)."""
    overrides = [
        f"data.world_dir={world_dir}",
        f"data.train_manifest={folder / 'prompts' if rung.needs_prompts else ''}",
        "train.stage=instruct",
        "train.init_from=scratch",
        f"train.out_dir={out / arm.name / 'run'}",
        f"train.steps={steps}",
        "train.schedule=constant",
        "train.resume=true",
        "train.sample_every=0",
        "train.progress=false",
        f"train.ckpt_every={steps}",
        "train.keep_last=2",  # the point before too: a run killed while training to the next resumes from it
    ]
    for key, value in rung.train.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        overrides += [f"train.{key}.{k}={v}" if k else f"train.{key}={v}" for k, v in items]
    return load_config(arm.config, [*overrides, *arm.overrides])


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict]) -> None:
    """All rows, every column any row has (a metric may appear only once it can be computed), atomically."""
    from vimi.utils.atomic import atomic_open

    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(rows: list[dict], path: Path) -> None:
    """Each metric against samples seen (left) and CPU seconds (right), one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fixed = {"arm", "rung", "step", "samples", "cpu_s", "loss"}
    metrics = [key for key in dict.fromkeys(k for row in rows for k in row) if key not in fixed]
    metrics = ["loss", *metrics]
    figure, axes = plt.subplots(len(metrics), 2, figsize=(10, 2.6 * len(metrics)), squeeze=False)
    for arm in dict.fromkeys(row["arm"] for row in rows):
        mine = [row for row in rows if row["arm"] == arm]
        for m, metric in enumerate(metrics):
            points = [
                (float(r["samples"]), float(r["cpu_s"]), float(r[metric])) for r in mine if r.get(metric)
            ]
            for column, x_index in enumerate((0, 1)):
                axes[m][column].plot(
                    [p[x_index] for p in points], [p[2] for p in points], marker="o", label=arm
                )
    for m, metric in enumerate(metrics):
        axes[m][0].set_ylabel(metric, fontsize=8)
        for column, label in enumerate(("samples seen", "CPU seconds")):
            axes[m][column].set_xlabel(label, fontsize=8)
            axes[m][column].grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def run_arm(
    arm: Arm, rung_id: int, rung: Rung, args: argparse.Namespace, world_dir: Path, rows: list[dict]
) -> None:
    """Train `arm` point by point up to the budget, scoring at each point; rows already in the CSV are kept."""
    out, folder = Path(args.out), Path(args.worlds) / f"rung-{rung_id}"
    done = [row for row in rows if row["arm"] == arm.name]
    cpu_s = float(done[-1]["cpu_s"]) if done else 0.0
    world = load_world(world_dir)
    for steps in range(args.score_every, args.max_steps + 1, args.score_every):
        if any(int(row["step"]) == steps for row in done):
            continue
        if cpu_s >= args.cpu_minutes * 60:
            break
        cfg = arm_config(arm, rung, world_dir, folder, out, steps)
        started = time.process_time()
        train(cfg)
        cpu_s += time.process_time() - started
        checkpoint = latest_checkpoint(Path(cfg.train.out_dir) / "checkpoints")
        pipe = VimiPipeline.from_pretrained(checkpoint, device="cpu", weights="raw")
        if rung.score == "clips":
            metrics = score_clips(pipe, world, args.clips)
        else:
            metrics = score_grounding(pipe, world, rung.tasks, args.prompts, folder)
        losses = [m["loss"] for m in read_metrics(cfg.train.out_dir) if m["step"] > steps - args.score_every]
        row = {
            "arm": arm.name,
            "rung": rung_id,
            "step": steps,
            "samples": steps * cfg.train.batch_size,
            "cpu_s": round(cpu_s, 1),
            "loss": float(np.mean(losses)) if losses else math.nan,
            **{key: round(value, 5) for key, value in metrics.items()},
        }
        rows.append(row)
        write_rows(out / "curves.csv", rows)
        plot_curves(rows, out / "curves.png")
        print(json.dumps(row), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rung", type=int, choices=sorted(RUNGS), default=1)
    parser.add_argument("--arms", nargs="+", type=Path, default=[DEFAULT_ARM], help="one config file per arm")
    parser.add_argument("--text-only", action="store_true", help="also train each arm's text-only control")
    parser.add_argument("--out", required=True, help="folder of the curves and the arms' runs")
    parser.add_argument("--worlds", default="outputs/ladder", help="where each rung's world is built (once)")
    parser.add_argument("--seed", type=int, default=3, help="the world's seed")
    parser.add_argument("--cpu-minutes", type=float, default=60.0, help="CPU budget of each arm")
    parser.add_argument("--score-every", type=int, default=250, help="training steps between scoring points")
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--clips", type=int, default=16, help="clips scored on rungs 1-2")
    parser.add_argument("--prompts", type=int, default=32, help="held-out prompts per task on rungs 4-5")
    parser.add_argument("--quick", action="store_true", help="a tiny arm on a tiny world, 2 points (seconds)")
    parser.add_argument("--plot", nargs="+", type=Path, help="only merge these runs' curves.csv into --out")
    args = parser.parse_args(argv)
    if args.plot:
        rows = [row for folder in args.plot for row in read_rows(folder / "curves.csv")]
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_rows(Path(args.out) / "curves.csv", rows)
        plot_curves(rows, Path(args.out) / "curves.png")
        return
    torch.set_num_threads(1)  # one core per arm: CPU seconds are comparable, and two runs can share a machine
    rung = RUNGS[args.rung]
    arms = [Arm(path.stem, path) for path in args.arms]
    extra_world = None
    if args.quick:
        arms = [Arm("tiny", DEFAULT_ARM, QUICK_MODEL)]
        args.score_every, args.max_steps, args.clips, args.prompts = 15, 30, 2, 2
        args.worlds, extra_world = str(Path(args.out) / "worlds"), QUICK_WORLD
    if args.text_only:
        arms += [
            Arm(f"{arm.name}-text-only", arm.config, [*arm.overrides, "model.text_only=true"]) for arm in arms
        ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world_dir = prepare_world(rung, Path(args.worlds) / f"rung-{args.rung}", args.seed, extra_world)
    rows = read_rows(out / "curves.csv")
    for arm in arms:
        run_arm(arm, args.rung, rung, args, world_dir, rows)


if __name__ == "__main__":
    main()

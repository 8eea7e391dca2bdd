"""`vimi demo`: the main job end to end on the embedded data and the shipped checkpoint.

1. build the small GroundedWorld (memory, videos, ground truth)
2. index the image-text memory (BM25) and build the multimodal-prompt dataset (the method's step 1)
3. (with --train) train stage 1 then stage 2 from scratch with the CPU recipes
4. generate videos for held-out multimodal prompts of every task with the checkpoint
5. score them exactly against the world's ground truth and write report.html, mp4 and GIF files

Each step reuses its output when it is already there, so a second run only regenerates and rescores.
"""

import argparse
import dataclasses
import itertools
import logging
import time
from pathlib import Path

from vimi.cli import add_config_arguments
from vimi.config import load_config, save_config
from vimi.errors import ConfigError

log = logging.getLogger(__name__)

# The checkpoint shipped in the repository (fp16 safetensors + config.json; see MODEL_CARD.md).
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[3] / "checkpoints" / "groundedworld-s"
CONFIGS = Path(__file__).resolve().parents[3] / "configs"
DEMO_TASKS = ["subject", "two_subject", "predict", "t2v"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", default="outputs/demo", help="output folder (world, index, report, videos)")
    parser.add_argument(
        "--checkpoint", default=None, help=f"checkpoint folder (default: {SHIPPED_CHECKPOINT})"
    )
    parser.add_argument("--n", type=int, default=2, help="held-out prompts per task (default: 2)")
    parser.add_argument(
        "--num-inference-steps", type=int, default=None, help="sampler steps (default: the checkpoint's)"
    )
    parser.add_argument(
        "--train", action="store_true", help="train both stages from scratch with the CPU recipes first"
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.n < 1:
        raise ConfigError(f"--n {args.n}: give at least 1 prompt per task")
    checkpoint = Path(args.checkpoint) if args.checkpoint else SHIPPED_CHECKPOINT
    if not args.train and not checkpoint.is_dir():
        raise ConfigError(f"--checkpoint {checkpoint}: no such folder; pass a checkpoint or use --train")
    out = Path(args.out)
    save_config(cfg, out / "config.yaml")  # the resolved config, beside the run's outputs
    timings: dict[str, float] = {}

    def step(name: str):
        timings[name] = time.perf_counter()
        print(f"[demo] {name} ...", flush=True)

    step("world")
    world = _world(cfg, out / "world")
    step("index")
    index = _index(cfg, world.memory_dir, out / "index")
    step("build-prompts")
    prompts = _prompts(cfg, world.video_dir("train"), index, out / "prompts")
    if args.train:
        step("train")
        checkpoint = _train(out, world.root, prompts)
    step("generate + evaluate")
    summary = _evaluate(cfg, args, world, index, checkpoint, out / "report")
    timings["end"] = time.perf_counter()
    _print_summary(summary, timings, out)
    return 0


def _world(cfg, folder: Path):
    from vimi.data.world import build_world, load_world

    if not (folder / "world.json").is_file():
        build_world(cfg.world, folder, overwrite=True)
    return load_world(folder)


def _index(cfg, memory: Path, folder: Path) -> Path:
    from vimi.retrieval.index_build import build_index

    if not (folder / "index.json").is_file():
        build_index(memory, folder, cfg.retrieval)
    return folder


def _prompts(cfg, videos: Path, index: Path, folder: Path) -> Path:
    from vimi.retrieval.build_prompts import build_prompts

    # Resumes (or returns at once) when an earlier run wrote some or all shards.
    return build_prompts(videos, index, folder, cfg.retrieval, progress=True)


def _train(out: Path, world: Path, prompts: Path) -> Path:
    """Stage 1 then stage 2 with the CPU recipes, on this demo's world and prompts."""
    from vimi.train.trainer import train

    data = [f"data.world_dir={world}", f"data.train_manifest={prompts}"]
    runs = out / "runs"
    pretrain = load_config(
        CONFIGS / "groundedworld-cpu-pretrain.yaml", [*data, f"train.out_dir={runs / 'pretrain'}"]
    )
    train(pretrain)
    instruct = load_config(
        CONFIGS / "groundedworld-cpu-instruct.yaml",
        [*data, f"train.out_dir={runs / 'instruct'}", f"train.init_from={runs / 'pretrain'}"],
    )
    return train(instruct)


def _evaluate(cfg, args, world, index: Path, checkpoint: Path, folder: Path) -> dict:
    from vimi.eval.bench import sampling_overrides
    from vimi.eval.run import evaluate_checkpoints

    eval_cfg = dataclasses.replace(cfg.eval, split="heldout", n=args.n)
    sampling = sampling_overrides(args.overrides, cfg.sample, args.num_inference_steps)
    return evaluate_checkpoints(
        {"vimi": checkpoint}, world, DEMO_TASKS, eval_cfg, folder,
        index=index, sampling=sampling, device=args.device, save_videos=True,
    )  # fmt: skip


def _print_summary(summary: dict, timings: dict[str, float], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"vimi demo: held-out prompts, {summary['n']} per task (chance in brackets)")
    table.add_column("task")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("95% interval", justify="right")
    chance = summary["vimi"].get("chance", {})
    for task, values in summary["vimi"]["tasks"].items():
        for metric, v in values.items():
            floor = f" [{chance[metric]:.2f}]" if metric in chance else ""
            table.add_row(task, metric, f"{v['mean']:.3f}{floor}", f"{v['ci_low']:.3f} - {v['ci_high']:.3f}")
    console = Console()
    console.print(table)
    names = list(timings)
    spans = ", ".join(f"{a} {timings[b] - timings[a]:.0f}s" for a, b in itertools.pairwise(names))
    console.print(f"time: {spans}")
    console.print(f"report: {Path(summary['report']).resolve()}")
    console.print(f"videos (mp4 + gif): {(out / 'report' / 'videos' / 'vimi').resolve()}")

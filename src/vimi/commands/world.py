"""`vimi world --out DIR --preset small|large|gpu|tiny --seed S`: build a GroundedWorld folder."""

import argparse
import dataclasses

from rich.console import Console
from rich.table import Table

from vimi.cli import add_config_arguments
from vimi.config import load_config
from vimi.data.world.presets import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write the world into (created)")
    parser.add_argument(
        "--preset", choices=list(PRESETS), default=None, help="world size (default: config's world.preset)"
    )
    parser.add_argument("--seed", type=int, default=None, help="world seed (default: config's world.seed)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing world folder")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from vimi.data.world.build import build_world

    cfg = load_config(args.config, args.overrides).world
    if args.preset is not None:
        cfg = dataclasses.replace(cfg, preset=args.preset)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    console = Console(stderr=True)
    with console.status(f"building the {cfg.preset} world in {args.out} ..."):
        summary = build_world(cfg, args.out, overwrite=args.overwrite)
    Console().print(_summary_table(summary))
    return 0


def _summary_table(summary) -> Table:
    cfg, counts = summary.config, summary.counts
    table = Table(title=f"GroundedWorld '{cfg.preset}' (seed {cfg.seed}) -> {summary.out_dir}")
    table.add_column("part")
    table.add_column("count", justify="right")
    table.add_column("notes")
    table.add_row("subjects (train)", f"{counts['subjects_train']:,}", "names occur in training videos")
    table.add_row(
        "subjects (held-out)", f"{counts['subjects_heldout']:,}", "only in memory and held-out videos"
    )
    table.add_row("distractor subjects", f"{counts['distractor_subjects']:,}", "only in distractor pairs")
    table.add_row("scenes / motions", f"{counts['scenes']} / {counts['motions']}", "x 2 speeds")
    memory = sum(v for k, v in counts.items() if k.startswith("memory_"))
    kinds = ", ".join(
        f"{k.removeprefix('memory_')} {v:,}" for k, v in counts.items() if k.startswith("memory_")
    )
    table.add_row("memory pairs", f"{memory:,}", kinds)
    clip = f"{cfg.num_frames} x {cfg.height} x {cfg.width} @ {cfg.fps} fps, lossless mp4"
    table.add_row("videos (train)", f"{counts['videos_train']:,}", clip)
    table.add_row("videos (held-out)", f"{counts['videos_heldout']:,}", "held-out subjects only")
    seconds = summary.seconds
    table.add_row(
        "time", f"{sum(seconds.values()):.1f} s", ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items())
    )
    return table

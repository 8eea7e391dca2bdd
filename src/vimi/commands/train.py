"""`vimi train --config configs/X.yaml [--set key=value ...] [--resume]`: run one training stage."""

import argparse
import logging
import os

from vimi.cli import add_config_arguments
from vimi.config import load_config

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest complete checkpoint in train.out_dir"
    )


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + (["train.resume=true"] if args.resume else [])
    cfg = load_config(args.config, overrides)
    # Imported after the config is known good: torch is slow to import.
    from vimi.checkpoint import checkpoint_name
    from vimi.train.trainer import train

    last = train(cfg)
    if last is not None and os.environ.get("RANK", "0") == "0":
        done = last.name == checkpoint_name(cfg.train.steps)
        state = "done" if done else "stopped at train.max_time_s (continue with --resume)"
        log.info("stage %s %s: %s", cfg.train.stage, state, last)
    return 0

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
    from vimi.train.trainer import train  # imported after the config is known good: torch is slow to import

    last = train(cfg)
    if last is not None and os.environ.get("RANK", "0") == "0":
        log.info("stage %s done: %s", cfg.train.stage, last)
    return 0

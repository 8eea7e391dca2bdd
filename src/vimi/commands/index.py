"""`vimi index`: index an image-text corpus (id, text, image) for retrieval."""

import argparse

from vimi.cli import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--corpus", required=True, help="image-text manifest folder (columns id, text, image)"
    )
    parser.add_argument("--out", required=True, help="index folder to write")
    parser.add_argument(
        "--backend", choices=["bm25", "dense"], default=None, help="default: retrieval.backend"
    )
    parser.add_argument(
        "--shards", type=int, default=None, help="index shards (default: retrieval.num_shards)"
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from vimi.config import load_config
    from vimi.retrieval.sharded import build_index

    cfg = load_config(args.config, args.overrides).retrieval
    if args.backend:
        cfg.backend = args.backend
    if args.shards:
        cfg.num_shards = args.shards
    path = build_index(args.corpus, args.out, cfg)
    print(f"index written: {path.parent}")
    return 0

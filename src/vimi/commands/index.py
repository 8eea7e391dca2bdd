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
    parser.add_argument(
        "--executor",
        choices=["local", "ray"],
        default=None,
        help="where the per-shard tasks run (default: retrieval.executor)",
    )
    parser.add_argument("--ray-address", default=None, help="Ray cluster (default: retrieval.ray_address)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from vimi.config import load_config
    from vimi.retrieval.index_build import build_index

    cfg = load_config(args.config, args.overrides).retrieval
    if args.backend:
        cfg.backend = args.backend
    if args.shards:
        cfg.num_shards = args.shards
    if args.executor:
        cfg.executor = args.executor
    if args.ray_address is not None:
        cfg.ray_address = args.ray_address
    path = build_index(args.corpus, args.out, cfg)
    print(f"index written: {path.parent}")
    return 0

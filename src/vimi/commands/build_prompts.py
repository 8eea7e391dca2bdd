"""`vimi build-prompts`: a video-text dataset + a retrieval index -> a multimodal-prompt dataset."""

import argparse

from vimi.cli import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--videos", required=True, help="video-text manifest folder (columns id, caption, video)"
    )
    parser.add_argument("--index", required=True, help="index folder written by `vimi index`")
    parser.add_argument(
        "--out", required=True, help="output manifest folder; re-running resumes an interrupted job"
    )
    parser.add_argument("--k", type=int, default=None, help="examples per caption (default: retrieval.k)")
    parser.add_argument(
        "--executor", choices=["local", "ray"], default=None, help="default: retrieval.executor"
    )
    parser.add_argument(
        "--ray-address", default=None, help="Ray cluster address (default: a local ray.init())"
    )
    parser.add_argument(
        "--copy-media", action="store_true", help="copy the video and hit images into OUT/media"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from vimi.config import load_config
    from vimi.retrieval.build_prompts import build_prompts

    cfg = load_config(args.config, args.overrides).retrieval
    if args.k is not None:
        cfg.k = args.k
    if args.executor:
        cfg.executor = args.executor
    if args.ray_address:
        cfg.ray_address = args.ray_address
    out = build_prompts(
        args.videos, args.index, args.out, cfg, copy_media=args.copy_media, progress=not args.no_progress
    )
    print(f"multimodal-prompt dataset written: {out}")
    return 0

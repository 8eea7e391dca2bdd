"""The `vimi` command. Each subcommand lives in `vimi/commands/<name>.py` and is imported only when run,
so `vimi world` does not pay for importing transformers or gradio."""

import argparse
import importlib
import logging
import sys

from vimi.errors import VimiError

# name -> one-line help; the module vimi.commands.<name> provides add_arguments(parser) and run(args) -> int.
COMMANDS = {
    "world": "build the GroundedWorld synthetic dataset (memory, videos, ground truth)",
    "data": "import a dataset you have as a vimi manifest (import-videos, import-memory)",
    "index": "index an image-text corpus for retrieval (bm25 or dense)",
    "build-prompts": "turn a video-text dataset into a multimodal-prompt dataset by retrieval",
    "train": "train the generator (stage pretrain or instruct)",
    "export": "write a checkpoint as a pipeline folder (e.g. float16, with new sampling defaults)",
    "generate": "generate a video from a multimodal prompt",
    "eval": "evaluate a checkpoint (grounding, fvd, ucf101)",
    "serve": "serve the web UI",
    "demo": "run the end-to-end demo: world, retrieval, generation, evaluation, report",
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The shared --config/--set pair of every command that reads a VimiConfig."""
    parser.add_argument("--config", default=None, help="YAML config file (may name a `base:` file)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value; repeatable",
    )


def _load_command(name: str):
    return importlib.import_module(f"vimi.commands.{name.replace('-', '_')}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vimi", description="Grounded video generation from multimodal instructions."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            _load_command(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(_load_command(args.command).run(args) or 0)
    except VimiError as err:
        print(f"vimi {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vimi {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

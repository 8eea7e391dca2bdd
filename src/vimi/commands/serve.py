"""`vimi serve`: the web UI over a checkpoint (Gradio, localhost by default)."""

import argparse
import os
import tempfile
from pathlib import Path

from vimi.errors import ConfigError
from vimi.utils.device import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, help="pipeline/checkpoint folder, or a run folder (newest)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind; 0.0.0.0 exposes the UI to the network"
    )
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--index", default=None, metavar="DIR", help="retrieval index for the text-with-retrieval task"
    )
    parser.add_argument(
        "--world", default=None, metavar="DIR", help="GroundedWorld folder for the examples gallery"
    )
    parser.add_argument(
        "--device", default=None, help="auto, cpu, cuda or cuda:N (default: auto, cuda when available)"
    )


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: use 0..65535")
    if args.index is not None and not Path(args.index).exists():
        raise ConfigError(f"--index {args.index}: no such index folder; build one with `vimi index`")
    resolve_device(args.device)  # a bad --device fails here, before gradio and the weights load
    if args.world is not None and not Path(args.world).is_dir():
        raise ConfigError(f"--world {args.world}: no such folder; build one with `vimi world --out DIR`")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the web UI needs gradio: .venv/bin/pip install -c .venv/torch-constraint.txt 'gradio>=4.40'"
        ) from None
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from an offline server

    from vimi.pipeline import VimiPipeline
    from vimi.serve.app import build_app, launch_app
    from vimi.serve.examples import find_world_dir, world_examples

    pipe = VimiPipeline.from_pretrained(args.checkpoint, device=args.device)
    # Generated videos and example first frames live only as long as the server: removed on any exit.
    with tempfile.TemporaryDirectory(prefix="vimi-serve-") as tmp:
        out_dir = Path(tmp)
        world_dir = find_world_dir(args.world)
        examples = world_examples(world_dir, frames_dir=out_dir) if world_dir is not None else []
        app = build_app(pipe, index=args.index, examples=examples, out_dir=out_dir)
        print(
            f"vimi serve: http://{args.host}:{args.port} (device {pipe.device}, {len(examples)} examples)",
            flush=True,
        )
        allowed = [str(world_dir)] if world_dir else None
        try:
            launch_app(app, host=args.host, port=args.port, allowed_paths=allowed)
        except OSError as err:  # the port is taken, or the host is not an address of this machine
            raise ConfigError(f"cannot serve on {args.host}:{args.port}: {err}") from None
    return 0

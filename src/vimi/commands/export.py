"""`vimi export SRC DST [--dtype float16] [--set sample.KEY=VALUE ...]`: a checkpoint as a pipeline folder.

SRC is a checkpoint folder or a run folder (its newest complete checkpoint); DST gets config.json,
model.safetensors (SRC's EMA weights) and COMPLETE, written atomically. float16 halves the file, which is
how checkpoints/groundedworld-s is stored; `--set sample.*` changes the sampling defaults it ships with
(e.g. those chosen on a validation split).
"""

import argparse
import dataclasses

from vimi.errors import ConfigError

DTYPES = ("float32", "float16", "bfloat16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="checkpoint folder, or a run folder (its newest checkpoint)")
    parser.add_argument("target", help="pipeline folder to write")
    parser.add_argument(
        "--dtype", choices=DTYPES, default="float32", help="weights' dtype (default: float32)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="sample.KEY=VALUE",
        help="change a sampling default in the exported config; repeatable",
    )


def run(args: argparse.Namespace) -> int:
    from vimi.checkpoint import load_pipeline_config
    from vimi.config import SampleConfig, to_dict
    from vimi.utils.typed_config import from_dict, parse_override, set_dotted

    _, cfg = load_pipeline_config(args.source)  # CheckpointError before the weights load
    sample = to_dict(cfg.sample)
    for item in args.overrides:
        key, value = parse_override(item)
        if not key.startswith("sample."):
            raise ConfigError(f"--set {item}: export changes only sampling defaults (sample.*)")
        set_dotted(sample, key.removeprefix("sample."), value)
    sample_cfg = from_dict(SampleConfig, sample, source="--set", prefix="sample")

    import torch

    from vimi.pipeline import VimiPipeline

    pipe = VimiPipeline.from_pretrained(args.source, device="cpu")
    pipe.cfg = dataclasses.replace(pipe.cfg, sample=sample_cfg)
    path = pipe.save_pretrained(args.target, dtype=getattr(torch, args.dtype))
    print(f"wrote {path}")
    return 0

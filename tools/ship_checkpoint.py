"""Write a training checkpoint as the shipped fp16 pipeline folder (checkpoints/groundedworld-s).

    python tools/ship_checkpoint.py runs/gw-cpu-instruct checkpoints/groundedworld-s \
        --set sample.sampler=euler_ancestral --set sample.guidance_text=1.0

The source may be a checkpoint folder or a run folder (its newest complete checkpoint); the EMA
weights it holds for inference are cast to float16, which halves the file; generated videos stay
within 0.05 (max abs, values in [-1, 1]) of the float32 ones
(tests/test_pipeline.py::test_fp16_save_halves_the_file_and_stays_close). `--set section.key=value`
changes the shipped config.json, e.g. the sampling defaults chosen on a validation split.
"""

import argparse

import torch

from vimi.config import VimiConfig
from vimi.pipeline import VimiPipeline
from vimi.utils.typed_config import from_dict, parse_override, set_dotted, to_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="checkpoint or run folder")
    parser.add_argument("target", help="pipeline folder to write")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    pipe = VimiPipeline.from_pretrained(args.source, device="cpu")
    raw = to_dict(pipe.cfg)
    for item in args.overrides:
        set_dotted(raw, *parse_override(item))
    pipe.cfg = from_dict(VimiConfig, raw, source=f"{args.source} + --set")  # type-checked
    path = pipe.save_pretrained(args.target, dtype=torch.float16)
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    print(f"wrote {path} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()

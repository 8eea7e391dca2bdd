"""`vimi generate`: one multimodal prompt in, one mp4 (and optionally a GIF) out."""

import argparse
import logging
from pathlib import Path

from vimi.errors import ConfigError, MediaError
from vimi.utils.device import resolve_device

log = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".mp4", ".gif")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "prompt",
        help="the prompt: text with inline images, e.g. 'A <image:dog.png> spins in <image:yard.jpg>'",
    )
    parser.add_argument(
        "--checkpoint", required=True, help="pipeline/checkpoint folder, or a run folder (newest)"
    )
    parser.add_argument("--out", default="outputs/generate.mp4", help="output file (.mp4, or .gif)")
    parser.add_argument("--gif", action="store_true", help="also write a GIF beside the mp4")
    parser.add_argument(
        "--image",
        dest="images",
        action="append",
        default=[],
        metavar="PATH",
        help="an image for the next bare <image> slot of the prompt; repeat in slot order",
    )
    parser.add_argument(
        "--first-frame", default=None, metavar="PATH", help="video prediction from this frame"
    )
    parser.add_argument(
        "--index", default=None, metavar="DIR", help="retrieval index: ground a text-only prompt"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--num-inference-steps", type=int, default=None, help="sampler steps (default: the checkpoint's)"
    )
    parser.add_argument(
        "--sampler", default=None, help="euler, euler_ancestral, heun or dpmpp_2m (default: the checkpoint's)"
    )
    parser.add_argument("--guidance-text", type=float, default=None, help="text guidance scale (1 disables)")
    parser.add_argument(
        "--guidance-image", type=float, default=None, help="image guidance scale (1 disables)"
    )
    parser.add_argument("--frames", type=int, default=None, help="number of frames")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--fps", type=int, default=None, help="frame rate of the written file")
    parser.add_argument(
        "--device", default=None, help="auto, cpu, cuda or cuda:N (default: auto, cuda when available)"
    )


def run(args: argparse.Namespace) -> int:
    from vimi.checkpoint import load_pipeline_config
    from vimi.data.image_io import read_image
    from vimi.pipeline import VimiPipeline, check_sample_size, to_prompt

    # Everything a user can get wrong is checked before the weights are loaded.
    out = Path(args.out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--out {out}: use a .mp4 or .gif file name")
    _, cfg = load_pipeline_config(args.checkpoint)
    sample = cfg.sample
    frames = sample.num_frames if args.frames is None else args.frames
    height = sample.height if args.height is None else args.height
    width = sample.width if args.width is None else args.width
    resolve_device(args.device)  # a bad --device fails here, before the weights load
    check_sample_size(frames, height, width, _size_multiple(cfg))
    prompt = to_prompt(args.prompt, images=args.images, base_dir=Path.cwd())
    if args.first_frame is not None:
        try:
            read_image(args.first_frame)
        except MediaError as err:
            raise MediaError(f"--first-frame: {err}") from None
    if args.index is not None and not Path(args.index).exists():
        raise ConfigError(f"--index {args.index}: no such index folder; build one with `vimi index`")
    if args.fps is not None and not 1 <= args.fps <= 240:
        raise ConfigError(f"--fps {args.fps}: use 1..240")

    pipe = VimiPipeline.from_pretrained(args.checkpoint, device=args.device)
    video = pipe(
        prompt,
        first_frame=args.first_frame,
        num_frames=frames,
        height=height,
        width=width,
        num_inference_steps=args.num_inference_steps,
        sampler=args.sampler,
        guidance_text=args.guidance_text,
        guidance_image=args.guidance_image,
        seed=args.seed,
        index=args.index,
        progress=True,
    ).frames[0]  # [C, T, H, W]
    written = write_video(video, out, fps=args.fps or sample.fps, gif=args.gif)
    for path in written:
        print(f"wrote {path}")
    return 0


def _size_multiple(cfg) -> tuple[int, int, int]:
    """(frames, height, width) multiples, as VimiPipeline.size_multiple, from the configs alone (no weights)."""
    from vimi.models.autoencoders import compression_from_config

    backbone = cfg.model.backbone
    # A video VAE whose config.json does not state its ratios is checked by the pipeline once it is loaded.
    temporal, spatial, causal = compression_from_config(cfg.model.autoencoder) or (1, 1, False)
    frames = 1 if causal else backbone.patch_t * temporal
    return frames, backbone.patch_h * spatial, backbone.patch_w * spatial


def write_video(video, out: Path, fps: int, gif: bool) -> list[Path]:
    """Write [C, T, H, W] to `out` (.mp4 or .gif) and, with `gif`, a GIF beside the mp4."""
    from vimi.utils.export import export_to_video

    written = [export_to_video(video, out, fps=fps)]
    if gif and out.suffix.lower() != ".gif":
        written.append(export_to_video(video, out.with_suffix(".gif"), fps=fps))
    return written

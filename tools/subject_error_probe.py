"""Denoising error inside the subjects' boxes vs outside, by noise level, on a world's subject prompts.

    python tools/subject_error_probe.py CHECKPOINT --world outputs/world-train --split train --n 64 [--weights raw] \
        [--swap-images] [--against OTHER_CHECKPOINT]

The same first-N subject prompts `vimi eval grounding --task subject` scores, their exact ground-truth videos,
one noise draw per level. Beside each level it prints the error of the clip's temporal-median frame inside the
boxes (a denoiser that knows the scene but not the subject scores about that): a model that draws the subject
scores well under it. With --swap-images it also prints the error in the boxes when every prompt keeps its
text but gets another prompt's images (same noise), and its relative rise with a paired bootstrap interval
over prompts: the rise is what the images tell the model about its subject. With --against it also prints
the other checkpoint's error in the boxes on the same noisy videos and how much higher it is, paired over
prompts (positive: CHECKPOINT draws the subjects better). The memorisation trials of
docs/training-log.md (sessions 8 and 9) and MODEL_CARD.md's image-reliance table were measured with this.
"""

import argparse

import numpy as np
import torch

from vimi.data.world.loader import load_world
from vimi.errors import VimiError
from vimi.eval.bench import build_items, truth_videos
from vimi.eval.sensitivity import gain_interval, relative_gain, swap_images
from vimi.pipeline import VimiPipeline

SIGMAS = (40.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.2)


def box_mask(boxes: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """[K, T, 4] integer boxes (x0, y0, x1, y1; x1/y1 exclusive, zeros when invisible) -> bool [T, H, W]."""
    mask = np.zeros(shape, bool)
    for k, t in np.ndindex(*boxes.shape[:2]):
        x0, y0, x1, y1 = boxes[k, t]
        mask[t, y0:y1, x0:x1] = True
    return mask


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--world", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--weights", choices=["ema", "raw"], default="ema")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--swap-images", action="store_true", help="also score with other prompts' images")
    parser.add_argument("--against", default="", help="another checkpoint, scored on the same noisy videos")
    args = parser.parse_args()
    world = load_world(args.world)
    items = build_items(world, "subject", args.split, args.n)
    x0 = truth_videos(world, items)  # [B, C, T, H, W]
    masks = [
        torch.from_numpy(box_mask(item.record.boxes, tuple(x0.shape[2:]))) for item in items
    ]  # [T, H, W]
    inside = torch.stack(masks)[:, None].expand_as(x0)
    median = x0.median(dim=2, keepdim=True).values.expand_as(x0)  # the still scene, subject mostly gone
    floor = float(((median - x0) ** 2)[inside].mean())
    model, other = (
        VimiPipeline.from_pretrained(path, device="cpu", weights=args.weights).model.eval() if path else None
        for path in (args.checkpoint, args.against)
    )
    prompts, size = [item.prompt for item in items], tuple(x0.shape[-2:])
    cond = model.condition(prompts, size=size)
    other_cond = other.condition(prompts, size=size) if other is not None else None
    swapped = model.condition(swap_images(prompts), size=size) if args.swap_images else None
    generator = torch.Generator().manual_seed(args.seed)
    print(f"{args.checkpoint} ({args.weights}): {len(items)} subject prompts of {args.world} ({args.split})")
    swap_header = (
        f"  {'in boxes, swapped images':>24}  {'rise [95% interval]':>24}" if swapped is not None else ""
    )
    against_header = (
        f"  {'in boxes, --against':>19}  {'its excess [95% interval]':>28}" if other is not None else ""
    )
    print(
        f"{'sigma':>7}  {'in boxes':>9}  {'outside':>8}  {'median frame in boxes':>22}{swap_header}{against_header}"
    )
    for sigma in SIGMAS:
        noisy = x0 + sigma * torch.randn(x0.shape, generator=generator)
        sigmas = torch.full((len(items),), sigma)
        error = (model.denoiser(noisy, sigmas, cond) - x0) ** 2
        line = f"{sigma:>7g}  {error[inside].mean():>9.4f}  {error[~inside].mean():>8.4f}  {floor:>22.4f}"
        if swapped is not None:
            wrong = (model.denoiser(noisy, sigmas, swapped) - x0) ** 2
            line += f"  {wrong[inside].mean():>24.4f}  {paired_rise(error, wrong, inside):>24}"
        if other is not None:
            theirs = (other.denoiser(noisy, sigmas, other_cond) - x0) ** 2
            line += f"  {theirs[inside].mean():>19.4f}  {paired_rise(error, theirs, inside):>28}"
        print(line)


def paired_rise(error: torch.Tensor, other: torch.Tensor, inside: torch.Tensor) -> str:
    """How much higher `other`'s pooled error in the boxes is than `error`'s, with a 95% interval over prompts.

    Per-sample sums in the boxes (the same boxes either way), so the ratio of their means is the ratio of the
    pooled errors, and the bootstrap resamples prompts."""
    sums, other_sums = (e.where(inside, 0).flatten(1).sum(1).numpy() for e in (error, other))
    low, high = gain_interval(sums, other_sums)
    return f"{relative_gain(sums.mean(), other_sums.mean()):+.2%} [{low:+.2%}, {high:+.2%}]"


if __name__ == "__main__":
    try:
        main()
    except VimiError as err:  # a wrong checkpoint, world or split: the message names it
        raise SystemExit(f"error: {err}") from None

"""Which noise level loses the subject: ground-truth subject videos noised to a start level, sampled back, scored.

    python tools/subject_sdedit_probe.py CHECKPOINT --world outputs/world-val --n 64 --starts 0.5,1,2,5,80 \
        [--grid grid.png]

SDEdit (Meng et al. 2022) as a probe: the same first-N subject prompts `vimi eval grounding --task subject`
scores, their exact ground-truth videos, noised to each start level (in the checkpoint's diffusion space:
encoded by its autoencoder, decoded after) and sampled down to zero with the checkpoint's own sampler and
schedule (the steps of the schedule below the start; the full prompt's denoiser, i.e. guidance 1, the shipped
checkpoint's setting). It prints, per start, how many subjects the scorer reads at all and how many it reads
right; the truth itself is read in about all. A model whose denoiser keeps a sprite it can still see reads most
of them back from a low start; where the count falls is where its sampling loses subjects. The sigma_skip
trial of docs/training-log.md (session 17) and session 18's memorisation trials were measured with this.
--grid writes frames 0, 4 and 7 of the first eight videos, the truth and then each start.
"""

import argparse

import numpy as np
import torch

from vimi.config import EvalConfig
from vimi.data.world.loader import load_world
from vimi.diffusion.edm import sampling_sigmas
from vimi.diffusion.samplers import SAMPLERS, ModelFn
from vimi.eval.bench import build_items, split_scorer, truth_videos
from vimi.models.autoencoders import Autoencoder
from vimi.pipeline import VimiPipeline


def sdedit(
    denoise: ModelFn,
    autoencoder: Autoencoder,
    videos: torch.Tensor,
    start: float,
    schedule: torch.Tensor,
    noise: torch.Tensor,
    sampler: str,
) -> torch.Tensor:
    """Pixel videos [B, C, T, H, W] moved to the diffusion space (`denoise`'s), noised there to `start` with
    `noise` [B, C', T', H', W'], sampled down `schedule`'s levels below it to zero, and decoded to pixels."""
    below = schedule[schedule < start]
    sigmas = torch.cat([below.new_tensor([start]), below])
    latents = autoencoder.encode(videos)  # [B, C', T', H', W'] (the pixels for the identity autoencoder)
    return autoencoder.decode(SAMPLERS[sampler](denoise, latents + start * noise, sigmas)).clamp(-1, 1)


def grid_image(videos: list[torch.Tensor], frames=(0, 4, 7), rows: int = 8) -> np.ndarray:
    """uint8 [rows*H, W', 3]: for each of the first `rows` videos, the given frames of every [B, C, T, H, W] set."""
    lines = []
    for row in range(min(rows, len(videos[0]))):
        cells = []
        for video in videos:
            for t in frames:
                cells.append(((video[row, :, t].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy())
                cells.append(np.full((video.shape[-2], 1, 3), 255, np.uint8))
            cells.append(np.zeros((video.shape[-2], 4, 3), np.uint8))
        lines.append(np.concatenate(cells, axis=1))
    return np.concatenate(lines, axis=0)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--world", required=True)
    parser.add_argument("--split", default="heldout")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--starts", default="0.5,1,2,5,80", help="comma-separated start noise levels")
    parser.add_argument("--weights", choices=["ema", "raw"], default="ema")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--grid", default="", help="PNG of the first eight videos: truth, then each start")
    args = parser.parse_args()
    world = load_world(args.world)
    items = build_items(world, "subject", args.split, args.n)
    x0 = truth_videos(world, items)  # [B, C, T, H, W]
    pipeline = VimiPipeline.from_pretrained(args.checkpoint, device="cpu", weights=args.weights)
    model, sample = pipeline.model.eval(), pipeline.cfg.sample
    latent_shape = (len(items), *model.autoencoder.latent_shape(*x0.shape[2:]))  # [B, C', T', H', W']
    schedule = sampling_sigmas(sample.steps, pipeline.cfg.diffusion, latent_shape)
    cond = model.condition([item.prompt for item in items], size=tuple(x0.shape[-2:]))
    noise = torch.randn(latent_shape, generator=torch.Generator().manual_seed(args.seed))
    scorer = split_scorer(world, EvalConfig(split=args.split))

    def read(videos: torch.Tensor) -> tuple[int, int]:
        scores = [scorer.score(video, item.truth, item.id) for video, item in zip(videos, items)]
        return sum(bool(s.predicted_subjects) for s in scores), int(sum(s.subject for s in scores))

    print(
        f"{args.checkpoint} ({args.weights}, {sample.sampler}, {sample.steps} steps): {len(items)} subject prompts"
    )
    print(f"{'start sigma':>11}  {'steps':>5}  {'read':>5}  {'right':>5}")
    count, right = read(x0)
    print(f"{'truth':>11}  {0:>5}  {count:>5}  {right:>5}")
    shown = [x0]
    for start in [float(s) for s in args.starts.split(",")]:
        torch.manual_seed(args.seed + 1)  # the ancestral steps' noise
        out = []
        for b in range(0, len(items), args.batch):
            part = {k: v[b : b + args.batch] if isinstance(v, torch.Tensor) else v for k, v in cond.items()}

            def denoise(x, sigma, part=part):
                return model.denoiser(x, sigma, part)

            out.append(
                sdedit(
                    denoise,
                    model.autoencoder,
                    x0[b : b + args.batch],
                    start,
                    schedule,
                    noise[b : b + args.batch],
                    sample.sampler,
                )
            )
        videos = torch.cat(out)
        shown.append(videos)
        count, right = read(videos)
        print(f"{start:>11g}  {int((schedule < start).sum()):>5}  {count:>5}  {right:>5}", flush=True)
    if args.grid:
        from PIL import Image

        image = grid_image(shown)
        Image.fromarray(image).resize((image.shape[1] * 3, image.shape[0] * 3), Image.NEAREST).save(args.grid)
        print(f"grid: {args.grid}")


if __name__ == "__main__":
    main()

"""What train.optimizer=muon costs a step: optimizer steps of the shipped GroundedWorld-S, Muon against AdamW.

Both optimizers step the same model with the same random gradients, alternating Muon, AdamW, Muon, ... after
warmup so that machine load hits both alike; prints the median ms of each and the ratio Muon / AdamW. Beside
them, one forward + backward pass of a CPU-recipe batch shape (16 videos of 8x32x32), to say what share of a
training step the optimizer is.

    .venv/bin/python benchmarks/optimizer.py --threads 1
"""

import argparse
import statistics
import time
from pathlib import Path

import torch

from backbone import time_train_steps  # benchmarks/ is on sys.path when a benchmark runs as a script
from vimi.config import TrainConfig
from vimi.pipeline import VimiPipeline, to_prompt
from vimi.train.optim import build_optimizer

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "groundedworld-s"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pipe = VimiPipeline.from_pretrained(CHECKPOINT)
    model = pipe.model.train()
    for param in model.parameters():
        param.grad = torch.randn_like(param) * 1e-3
    # A tiny rate: the weights barely move, so every step does the same work.
    optimizers = {
        name: build_optimizer(model, TrainConfig(optimizer=name, lr=1e-7)) for name in ("muon", "adamw")
    }
    for optimizer in optimizers.values():  # warmup: the state is created on the first step
        optimizer.step()
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(args.steps):
        for name, optimizer in optimizers.items():
            start = time.perf_counter()
            optimizer.step()
            times[name].append(time.perf_counter() - start)
    muon, adamw = (statistics.median(times[name]) for name in ("muon", "adamw"))

    cfg = pipe.cfg
    videos = torch.rand(16, 3, cfg.sample.num_frames, cfg.sample.height, cfg.sample.width) * 2 - 1
    prompts = [to_prompt("A video of a blicket that moves left quickly over the ocean.")] * 16

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        model.loss(videos, prompts, generator=torch.Generator().manual_seed(0)).backward()

    step = time_train_steps(forward_backward, warmup=1, steps=max(3, args.steps // 4), sync=lambda: None)
    print(f"threads {args.threads}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    print(
        f"optimizer step  Muon {1e3 * muon:7.1f} ms   AdamW {1e3 * adamw:7.1f} ms   ratio {muon / adamw:.2f}"
    )
    print(
        f"forward + backward, batch 16: {1e3 * step:.0f} ms; Muon adds {100 * (muon - adamw) / (step + adamw):.0f}%"
    )


if __name__ == "__main__":
    main()

"""Per-sample seeded noise, so that a sample does not depend on the batch (or world) size it is drawn in."""

from collections.abc import Callable

import torch


def randn_per_sample(
    shape: tuple[int, ...] | torch.Size,
    seeds: list[int],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise of `shape` [B, ...] where sample i is drawn from its own generator seeded seeds[i].

    Drawn on the CPU in float32 and then moved, so the same seed gives the same noise on any device
    (as NVlabs/edm's StackedRandomGenerator, but device-independent).
    """
    shape = tuple(shape)
    if not shape or shape[0] != len(seeds):
        raise ValueError(
            f"randn_per_sample: shape {shape} must start with the batch size len(seeds)={len(seeds)}"
        )
    samples = [torch.randn(shape[1:], generator=torch.Generator().manual_seed(int(seed))) for seed in seeds]
    return torch.stack(samples).to(device=device, dtype=dtype)


def seeded_noise_sampler(
    shape: tuple[int, ...] | torch.Size, seeds: list[int], device: torch.device | str = "cpu"
) -> Callable[[int], torch.Tensor]:
    """A stochastic sampler's `noise_sampler(step)`: step i's fresh noise for sample b comes from seeds[b] and i
    alone (an offset stream per step), so a sampled video does not depend on its batch either."""
    return lambda step: randn_per_sample(
        shape, [(seed * 1_000_003 + step + 1) % 2**63 for seed in seeds], device=device
    )

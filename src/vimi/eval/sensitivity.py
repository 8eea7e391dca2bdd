"""Does the model use its prompt? Denoising error with each sample's own condition vs a swapped one.

For a batch of training samples and a few noise levels, the denoiser sees the same noisy videos twice:
with each sample's own prompt, and with a swapped prompt (`swap_images`: every prompt keeps its text
but gets another sample's images; `swap_prompts`: another sample's whole prompt; `swap_motions`: the
text's GroundedWorld motions reversed, left for right, grow for shrink). If the error does not
rise when the condition is swapped, the model ignores that part of its prompt at that noise level, and
sampling (which decides what a video shows at high noise) cannot follow it. A generated video only says
*that* something is wrong; this says which input the model ignores, and at which noise levels.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vimi.data.world.motions import MOTION_IDS, SPEEDS, motion_phrase
from vimi.eval.bootstrap import bootstrap_interval
from vimi.prompt import Image, MultimodalPrompt, Text

DEFAULT_SIGMAS = (40.0, 20.0, 10.0, 3.0, 1.0, 0.3)


@dataclass(frozen=True)
class SensitivityRow:
    """Mean squared denoising error at one noise level with the right and with the swapped condition, and a
    95% bootstrap interval (over samples, paired) of the gain: a gain whose interval holds 0 is noise."""

    sigma: float
    error_right: float
    error_swapped: float
    gain_low: float = 0.0
    gain_high: float = 0.0

    @property
    def gain(self) -> float:
        """How much worse the swapped condition is, relative to the right one (0: the condition is ignored)."""
        return relative_gain(self.error_right, self.error_swapped)


def relative_gain(error_right, error_swapped):
    """error_swapped / error_right - 1 (floats or arrays)."""
    return error_swapped / np.maximum(error_right, 1e-12) - 1


def gain_interval(
    right: np.ndarray, swapped: np.ndarray, samples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the gain of mean errors, resampling samples in pairs: [N] each."""

    def gains(picks: np.ndarray) -> np.ndarray:  # [S, N] -> [S]
        return relative_gain(right[picks].mean(axis=1), swapped[picks].mean(axis=1))

    return bootstrap_interval(len(right), gains, samples, seed, level)


def swap_images(prompts: Sequence[MultimodalPrompt]) -> list[MultimodalPrompt]:
    """Each prompt with its text and its images taken from the next prompt (cyclically) with as many images.

    A prompt without images, or with a number of images no other prompt has, is kept as it is.
    """
    swapped = []
    for i, prompt in enumerate(prompts):
        count = len(prompt.images)
        donors = [prompts[(i + k) % len(prompts)] for k in range(1, len(prompts))]
        donor = next((p for p in donors if len(p.images) == count), None) if count else None
        if donor is None:
            swapped.append(prompt)
            continue
        images = iter(donor.images)
        segments = [next(images) if isinstance(s, Image) else s for s in prompt.segments]
        swapped.append(MultimodalPrompt(segments, prompt.task))
    return swapped


def swap_prompts(prompts: Sequence[MultimodalPrompt]) -> list[MultimodalPrompt]:
    """Each sample gets the next sample's whole prompt (cyclically)."""
    return [prompts[(i + 1) % len(prompts)] for i in range(len(prompts))]


# Each GroundedWorld motion's opposite: the one a video that read its motion words would least resemble.
OPPOSITE_MOTIONS = {
    "left": "right",
    "right": "left",
    "up": "down",
    "down": "up",
    "up_left": "down_right",
    "down_right": "up_left",
    "up_right": "down_left",
    "down_left": "up_right",
    "grow": "shrink",
    "shrink": "grow",
    "bounce": "still",
    "spin": "still",
    "still": "spin",
}
# "stays still" has no speed; it becomes the fast spin (the later speed's entry wins).
_REVERSED_PHRASES = {
    motion_phrase(motion, speed): motion_phrase(OPPOSITE_MOTIONS[motion], speed)
    for motion in MOTION_IDS
    for speed in SPEEDS
}
# Longest first, so "moves up and to the left quickly" is not read as "moves up ...".
_MOTION_PATTERN = re.compile(
    r"\b(" + "|".join(re.escape(p) for p in sorted(_REVERSED_PHRASES, key=len, reverse=True)) + r")\b"
)


def swap_motions(prompts: Sequence[MultimodalPrompt]) -> list[MultimodalPrompt]:
    """Each prompt with every GroundedWorld motion phrase in its text reversed ("moves left slowly" ->
    "moves right slowly"); images, scene and names stay. A prompt that names no motion is kept as it is.

    Whether the denoising error rises tells whether the model reads the motion words at all, apart from
    whether it can draw the motion they ask for.
    """
    swapped = []
    for prompt in prompts:
        segments = [_reverse_motions(s) if isinstance(s, Text) else s for s in prompt.segments]
        changed = any(a is not b for a, b in zip(prompt.segments, segments))
        swapped.append(MultimodalPrompt(segments, prompt.task) if changed else prompt)
    return swapped


def _reverse_motions(segment: Text) -> Text:
    """The text with its motion phrases reversed; the same object when it names none."""
    text = _MOTION_PATTERN.sub(lambda match: _REVERSED_PHRASES[match.group(1)], segment.text)
    return segment if text == segment.text else Text(text)


SWAPS: dict[str, Callable[[Sequence[MultimodalPrompt]], list[MultimodalPrompt]]] = {
    "images": swap_images,
    "prompts": swap_prompts,
    "motions": swap_motions,
}


@torch.no_grad()
def condition_sensitivity(
    model,
    videos: torch.Tensor,
    prompts: Sequence[MultimodalPrompt],
    swapped: Sequence[MultimodalPrompt],
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    context: torch.Tensor | None = None,
    context_mask: torch.Tensor | None = None,
    seed: int = 0,
) -> list[SensitivityRow]:
    """Denoising error per noise level of `model` (a VimiModel: .autoencoder, .condition, .denoiser).

    videos [B, C, T, H, W] in [-1, 1]; both conditions see the same noise, so the difference between the
    errors is the effect of the swap alone.
    """
    if len(prompts) != len(swapped) or len(prompts) != videos.shape[0]:
        raise ValueError(
            f"{videos.shape[0]} videos, {len(prompts)} prompts and {len(swapped)} swapped prompts"
        )
    x0 = model.autoencoder.encode(videos)  # [B, C', T', H', W']
    cond_right = model.condition(list(prompts), context, context_mask)
    cond_swapped = model.condition(list(swapped), context, context_mask)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    rows = []
    for sigma in sigmas:
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        sigma_batch = torch.full((x0.shape[0],), float(sigma), device=x0.device)
        noisy = x0 + sigma * noise
        right, swapped = (
            (model.denoiser(noisy, sigma_batch, cond) - x0).pow(2).flatten(1).mean(1).double().cpu().numpy()
            for cond in (cond_right, cond_swapped)
        )  # per-sample errors, [B] each
        low, high = gain_interval(right, swapped, seed=seed)
        rows.append(SensitivityRow(float(sigma), float(right.mean()), float(swapped.mean()), low, high))
    return rows


def format_sensitivity(rows: Sequence[SensitivityRow], swap: str) -> list[str]:
    """A table: noise level, error with the right and the swapped condition, the relative gain and its 95% CI."""
    lines = [f"{'sigma':>8}  {'right':>9}  {'swapped ' + swap:>16}  {'gain':>8}  {'95% CI':>18}"]
    lines += [
        f"{r.sigma:>8.3g}  {r.error_right:>9.5f}  {r.error_swapped:>16.5f}  {100 * r.gain:>7.2f}%"
        f"  [{100 * r.gain_low:>6.2f}, {100 * r.gain_high:>6.2f}]%"
        for r in rows
    ]
    return lines

"""Condition sensitivity: swaps keep what they should, and the probe separates a model that reads its prompt
images from one that ignores them (the `vimi eval sensitivity` command: tests/eval/test_eval_cli.py)."""

import numpy as np
import pytest
import torch

from vimi.condition import Condition
from vimi.data.world.captions import video_caption
from vimi.data.world.motions import MOTION_IDS, motion_phrase
from vimi.data.world.scenes import SCENES
from vimi.eval.sensitivity import (
    OPPOSITE_MOTIONS,
    condition_sensitivity,
    gain_interval,
    swap_images,
    swap_motions,
    swap_prompts,
)
from vimi.prompt import Image, MultimodalPrompt, Text


def _colour_image(value: float) -> Image:
    return Image(torch.full((3, 8, 8), value))


def _prompt(text: str, *values: float) -> MultimodalPrompt:
    return MultimodalPrompt([Text(text), *(_colour_image(v) for v in values)], task="subject")


def test_swap_images_keeps_text_and_takes_images_from_a_prompt_with_as_many():
    prompts = [_prompt("a", 0.1), _prompt("b", 0.2, 0.3), _prompt("c", 0.4), _prompt("d")]
    swapped = swap_images(prompts)
    assert [p.text for p in swapped] == ["a", "b", "c", "d"]
    assert swapped[0].images[0] is prompts[2].images[0]  # the next prompt with one image
    assert swapped[2].images[0] is prompts[0].images[0]  # cyclically
    assert swapped[1] is prompts[1]  # no other prompt has two images: kept
    assert swapped[3] is prompts[3]  # no images: kept
    assert [p.text for p in swap_prompts(prompts)] == ["b", "c", "d", "a"]


def test_swap_motions_reverses_every_motion_phrase_and_keeps_the_rest():
    frame = _colour_image(0.5)
    two = video_caption(
        ["blicket", "dax"], ["moves up and to the left quickly", "grows slowly"], SCENES[0], 0
    )
    prompts = [
        MultimodalPrompt([Text("Continue: "), frame, Text(two)], task="predict"),
        MultimodalPrompt([Text(video_caption(["wug"], ["stays still"], SCENES[1], 2))], task="t2v"),
        MultimodalPrompt([Text("A wug in the meadow.")], task="t2v"),  # no motion words: kept
    ]
    swapped = swap_motions(prompts)
    assert "moves down and to the right quickly" in swapped[0].text and "shrinks slowly" in swapped[0].text
    assert (
        "moves up" not in swapped[0].text and "grows" not in swapped[0].text and "blicket" in swapped[0].text
    )
    assert swapped[0].images[0] is frame and swapped[0].task == "predict"
    assert "wug that spins" in swapped[1].text and "still" not in swapped[1].text
    assert swapped[2] is prompts[2]
    # Every motion maps to another one, and reversing twice gives translations and sizes back.
    assert all(OPPOSITE_MOTIONS[m] != m for m in MOTION_IDS)
    for motion in ("left", "up_right", "grow"):
        phrase = motion_phrase(motion, "fast")
        prompt = [MultimodalPrompt([Text(f"A wug {phrase} in the desert.")], task="t2v")]
        assert swap_motions(swap_motions(prompt))[0].text == prompt[0].text


class ColourModel:
    """A stand-in VimiModel whose denoiser paints the mean colour of the prompt's image (or ignores it)."""

    def __init__(self, reads_images: bool):
        self.reads_images = reads_images
        self.autoencoder = torch.nn.Identity()
        self.autoencoder.encode = lambda x: x

    def condition(self, prompts, context=None, context_mask=None):
        colour = torch.stack([p.images[0].load().mean() for p in prompts])  # [B]
        return Condition(colour[:, None, None], torch.ones(len(prompts), 1, dtype=torch.bool))

    def denoiser(self, x, sigma, cond):
        if not self.reads_images:
            return torch.zeros_like(x)
        return 0.9 * cond.tokens.view(-1, 1, 1, 1, 1).expand_as(x)


@pytest.mark.parametrize("reads_images", [True, False])
def test_sensitivity_is_positive_only_for_a_model_that_reads_its_images(reads_images):
    values = [-0.8, -0.2, 0.3, 0.9]
    prompts = [_prompt(f"p{i}", v) for i, v in enumerate(values)]
    videos = torch.stack([torch.full((3, 2, 4, 4), v) for v in values])  # each video is its image's colour
    rows = condition_sensitivity(
        ColourModel(reads_images), videos, prompts, swap_images(prompts), [10.0, 1.0]
    )
    assert [r.sigma for r in rows] == [10.0, 1.0]
    for row in rows:
        if reads_images:
            assert row.error_right < row.error_swapped and row.gain > 10
            assert 0 < row.gain_low <= row.gain <= row.gain_high
        else:
            assert row.error_right == row.error_swapped and row.gain == 0
            assert row.gain_low == row.gain_high == 0


def test_gain_interval_holds_zero_for_noise_and_not_for_a_real_effect():
    rng = np.random.default_rng(0)
    right = rng.uniform(0.5, 1.5, 128)
    low, high = gain_interval(right, right + rng.normal(0, 0.05, 128))  # differences of both signs
    assert low < 0 < high
    low, high = gain_interval(right, 1.5 * right)  # every sample 50% worse
    assert low == pytest.approx(0.5) and high == pytest.approx(0.5)


def test_sensitivity_rejects_mismatched_lengths():
    prompts = [_prompt("a", 0.1), _prompt("b", 0.2)]
    with pytest.raises(ValueError, match="2 videos, 2 prompts and 1 swapped"):
        condition_sensitivity(ColourModel(True), torch.zeros(2, 3, 1, 2, 2), prompts, prompts[:1])

"""VimiModel's condition: given frames are held over the frames that follow them (context_hold)."""

import torch

from vimi.config import load_config
from vimi.models.vimi_model import build_model, hold_last_given
from vimi.prompt import MultimodalPrompt


def test_hold_last_given_fills_each_frame_with_the_latest_given_one() -> None:
    context = torch.zeros(2, 3, 6, 4, 4)
    mask = torch.zeros(2, 1, 6, 4, 4)
    for row, frame in ((0, 0), (1, 2), (1, 4)):
        context[row, :, frame] = frame + 1.0
        mask[row, :, frame] = 1.0
    held = hold_last_given(context, mask)
    per_frame = held[:, 0, :, 0, 0]  # [2, 6]
    assert per_frame.tolist() == [[1, 1, 1, 1, 1, 1], [0, 0, 3, 3, 5, 5]]
    assert torch.equal(held * mask, context * mask)  # given frames are unchanged


def test_condition_holds_the_given_frame_unless_disabled() -> None:
    overrides = ["model.backbone.hidden=32", "model.backbone.depth=1", "model.backbone.heads=2"]
    frames = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    mask = torch.zeros(1, 1, 4, 16, 16)
    mask[:, :, 0] = 1.0
    prompts = [MultimodalPrompt(["a cat"], "predict")]
    for hold in (True, False):
        model = build_model(load_config(None, [*overrides, f"model.backbone.context_hold={hold}"]))
        cond = model.condition(prompts, frames * mask, mask)
        later = cond["context"][:, :, 1:]
        expected = frames[:, :, :1].expand_as(later) if hold else torch.zeros_like(later)
        torch.testing.assert_close(later, expected)
        assert torch.equal(cond["context_mask"], mask)

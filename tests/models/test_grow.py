"""Growing a trained VideoDiT wider (vimi.models.grow, tools/grow_checkpoint.py): the grown network computes what
the narrow one did, training makes it wider than a copy, and shapes it cannot keep are refused by name."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vimi.config import BackboneConfig, load_config
from vimi.errors import ConfigError
from vimi.models.grow import widen_backbone, widened_backbone, widened_config
from vimi.models.video_dit import VideoDiT, count_parameters
from vimi.pipeline import VimiPipeline

COND_DIM = 16
TOOL = Path(__file__).parents[2] / "tools" / "grow_checkpoint.py"


def trained_looking(cfg: BackboneConfig, seed: int = 0) -> VideoDiT:
    """A VideoDiT whose every weight is perturbed, so that no zero-initialised layer hides a mistake."""
    torch.manual_seed(seed)
    net = VideoDiT(cfg, in_channels=3, cond_dim=COND_DIM)
    with torch.no_grad():
        for param in net.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return net


def grown(narrow: VideoDiT, factor: int) -> VideoDiT:
    wide = VideoDiT(widened_backbone(narrow.cfg, factor), in_channels=3, cond_dim=COND_DIM)
    widen_backbone(narrow, wide)
    return wide


def inputs(references: bool, seed: int = 1) -> tuple[tuple, dict]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 4, 8, 8, generator=gen)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False  # a padded prompt: the masks must mean the same in the grown network
    context_mask = torch.zeros(2, 1, 4, 8, 8)
    context_mask[:, :, 0] = 1
    kwargs = {
        "context": torch.randn(x.shape, generator=gen),
        "context_mask": context_mask,
        "thumbnails": torch.randn(2, 3 * 4**2 + 1, generator=gen),
    }
    if references:
        kwargs["references"] = torch.randn(2, 2, 3, 1, 8, 8, generator=gen)
        kwargs["reference_mask"] = torch.tensor([[True, True], [True, False]])
    args = (x, torch.randn(2, generator=gen), torch.randn(2, 5, COND_DIM, generator=gen), mask)
    return args, kwargs


SETTINGS = {
    "joint": {},
    "cross": {"condition": "cross"},
    "joint+cross, skips, detail head": {"condition": "joint+cross", "long_skips": True, "detail_head": 4},
    "learned positions, references, frame-local blocks": {
        "positions": "learned",
        "reference_images": 2,
        "full_attention_every": 2,
        "patch_t": 1,
    },
}


@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_grown_network_computes_what_the_narrow_one_did(setting, factor):
    cfg = BackboneConfig(
        size="debug", context_frames=True, image_thumbnail=4, patch_h=2, patch_w=2, **SETTINGS[setting]
    )
    narrow = trained_looking(cfg)
    wide = grown(narrow, factor)
    args, kwargs = inputs(references=bool(cfg.reference_images))
    with torch.no_grad():
        expected, out = narrow(*args, **kwargs), wide(*args, **kwargs)
    assert expected.abs().mean() > 0.1  # the comparison is not between two zeros
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # The blocks' weights grow with the square of the width: about factor^2 times the parameters.
    assert count_parameters(wide) > 0.8 * factor**2 * count_parameters(narrow)


def test_training_pulls_the_copies_apart_and_uses_the_fresh_units():
    """Duplicated units alone would stay copies under any training; the fresh units break the tie."""
    narrow = trained_looking(BackboneConfig(size="debug", context_frames=True, patch_h=2, patch_w=2))
    wide = grown(narrow, 2)
    hidden = narrow.size.hidden
    first_mlp = wide.blocks[0].mlp[2].weight  # [D', 4D']: the fresh units' columns are the last half
    assert torch.equal(first_mlp[:, 4 * hidden :], torch.zeros_like(first_mlp[:, 4 * hidden :]))
    args, kwargs = inputs(references=False)
    target = torch.randn(args[0].shape, generator=torch.Generator().manual_seed(5))
    optimizer = torch.optim.Adam(wide.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = (wide(*args, **kwargs) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert first_mlp[:, 4 * hidden :].abs().max() > 1e-4  # the fresh units now write to the stream
    embed = wide.patch_embed.weight  # rows [copy 0; copy 1] of the residual stream
    assert (embed[:hidden] - embed[hidden:]).abs().max() > 1e-4


def test_grow_refuses_what_it_cannot_keep_and_names_it():
    narrow = VideoDiT(BackboneConfig(size="debug"), in_channels=3, cond_dim=COND_DIM)
    same_heads = VideoDiT(BackboneConfig(size="debug", hidden=128), in_channels=3, cond_dim=COND_DIM)
    with pytest.raises(ConfigError, match="not hidden=128, heads=4"):
        widen_backbone(narrow, same_heads)
    with pytest.raises(ConfigError, match="factor=1"):
        widened_config(load_config(None, []), 1)


def test_grow_tool_writes_a_pipeline_that_generates_the_same_video(tiny_checkpoint, tmp_path):
    target = tmp_path / "grown"
    result = subprocess.run(
        [sys.executable, str(TOOL), str(tiny_checkpoint), str(target), "--factor", "2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "hidden 64, heads 4" in result.stdout
    narrow, wide = (VimiPipeline.from_pretrained(path, device="cpu") for path in (tiny_checkpoint, target))
    assert wide.cfg.model.backbone.hidden == 2 * narrow.cfg.model.backbone.hidden
    prompt = "a red ball bounces in a green field"
    video, grown_video = (pipe(prompt, seed=3, steps=3, progress=False) for pipe in (narrow, wide))
    assert video.std() > 0.05
    torch.testing.assert_close(grown_video, video, atol=1e-4, rtol=0)


def test_grow_tool_names_a_bad_factor_and_writes_nothing(tiny_checkpoint, tmp_path):
    target = tmp_path / "grown"
    command = [sys.executable, str(TOOL), str(tiny_checkpoint), str(target), "--factor", "1"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "factor=1" in result.stderr and "Traceback" not in result.stderr
    assert not target.exists()

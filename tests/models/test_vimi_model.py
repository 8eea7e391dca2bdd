"""VimiModel: its `Condition` (given frames held over the frames that follow them, the pooled thumbnail, text-only
prompts), its loss, and a backbone plugged in by name alone."""

import torch
from torch import nn

from vimi.condition import Condition
from vimi.config import load_config
from vimi.models.registry import BACKBONES
from vimi.models.vimi_model import VimiModel, hold_last_given, prepare_prompts
from vimi.prompt import MultimodalPrompt

SMALL = ["model.backbone.hidden=32", "model.backbone.depth=1", "model.backbone.heads=2"]


def build_model(cfg) -> VimiModel:
    return VimiModel(cfg.model, cfg.diffusion)


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
    overrides = SMALL
    frames = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    mask = torch.zeros(1, 1, 4, 16, 16)
    mask[:, :, 0] = 1.0
    prompts = [MultimodalPrompt(["a cat"], "predict")]
    for hold in (True, False):
        model = build_model(load_config(None, [*overrides, f"model.backbone.context_hold={hold}"]))
        cond = model.condition(prompts, frames * mask, mask)
        later = cond.context[:, :, 1:]
        expected = frames[:, :, :1].expand_as(later) if hold else torch.zeros_like(later)
        torch.testing.assert_close(later, expected)
        assert torch.equal(cond.context_mask, mask)


def test_context_residual_predicts_the_held_frame_at_high_noise_before_training() -> None:
    overrides = SMALL
    frames = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    mask = torch.zeros(2, 1, 4, 16, 16)
    mask[:, :, 0] = 1.0
    prompts = [MultimodalPrompt(["a cat moves left"], "predict")] * 2
    noisy = frames + 80.0 * torch.randn_like(frames)
    sigma = torch.full((2,), 80.0)
    for residual in (True, False):
        model = build_model(load_config(None, [*overrides, f"diffusion.context_residual={residual}"]))
        cond = model.condition(prompts, frames * mask, mask)
        denoised = model.denoiser(noisy, sigma, cond)  # the output layer starts at zero: F = 0
        # The residual model's guess, knowing nothing yet, is the given frame held still (the copy floor)...
        error_to_held = (denoised - frames[:, :, :1]).abs().mean().item()
        if residual:
            assert error_to_held < 0.01
        else:  # ...the plain one's is nothing at all (c_skip x, about zero).
            assert denoised.abs().mean() < 0.01 and error_to_held > 0.3


def test_image_thumbnail_pathway_averages_the_prompt_images_and_modulates_the_video() -> None:
    from vimi.prompt import Image

    overrides = [*SMALL, "model.backbone.image_thumbnail=4"]
    model = build_model(load_config(None, overrides))
    red, blue = torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)
    red[0], blue[2] = 1.0, 1.0
    prompts = [MultimodalPrompt(["a ", Image(red), " and a ", Image(blue)]), MultimodalPrompt(["a cat"])]
    thumbnails = model.condition(prompts).pooled  # [B, 3*4*4 + 1]
    assert thumbnails.shape == (2, 49)
    pixels = thumbnails[0, :-1].reshape(3, 4, 4)
    torch.testing.assert_close(pixels.mean(dim=(1, 2)), torch.tensor([0.5, 0.0, 0.5]))  # the mean image
    assert thumbnails[:, -1].tolist() == [1.0, 0.0] and thumbnails[1].abs().sum() == 0  # no image: zeros
    # Zero-initialised (a checkpoint grows into it unchanged), yet it learns: the loss reaches it, and once
    # trained the output depends on the image's colours.
    videos = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if "adaLN" in name or "final_layer" in name:
                param.normal_(0, 0.05)
    model.loss(videos, prompts).backward()
    assert model.backbone.thumbnail_embed[-1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.backbone.thumbnail_embed[-1].weight.normal_(0, 0.5)
        noisy, sigma = videos + torch.randn_like(videos), torch.ones(2)
        green = torch.zeros(3, 8, 8)
        green[1] = 1.0
        recoloured = [MultimodalPrompt(["a ", Image(green), " and a ", Image(blue)]), prompts[1]]
        first = model.denoiser(noisy, sigma, model.condition(prompts))
        second = model.denoiser(noisy, sigma, model.condition(recoloured))
    assert not torch.allclose(first[0], second[0], atol=1e-4) and torch.equal(first[1], second[1])


def test_guided_sampling_of_a_thumbnail_model_follows_the_guidance_formula() -> None:
    # Image guidance compares the prompt with and without its images, which for this model differ in their
    # thumbnails too: the batched guided call must carry them for all three conditions.
    from vimi.diffusion import multimodal_guidance
    from vimi.pipeline import VimiPipeline
    from vimi.prompt import Image

    overrides = [*SMALL, "model.backbone.image_thumbnail=4"]
    cfg = load_config(None, overrides)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if "adaLN" in name or "final_layer" in name or "thumbnail_embed" in name:
                param.normal_(0, 0.1)
    red = torch.zeros(3, 8, 8)
    red[0] = 1.0
    prompts = [MultimodalPrompt(["a ", Image(red), " in a field"])]
    variants = [prompts, [p.drop_text() for p in prompts], [p.drop_text().drop_images() for p in prompts]]
    conds = [model.condition(v) for v in variants]
    x, sigma = torch.randn(1, 3, 4, 16, 16), torch.full((1,), 2.0)
    with torch.no_grad():
        full, image_only, uncond = (model.denoiser(x, sigma, c) for c in conds)
        guided = multimodal_guidance(lambda x, s, cond: model.denoiser(x, s, cond), 2.0, 3.0)
        out = guided(x, sigma, cond=conds[0], cond_image=conds[1], cond_uncond=conds[2])
    torch.testing.assert_close(out, uncond + 3.0 * (image_only - uncond) + 2.0 * (full - image_only))
    assert not torch.allclose(image_only, uncond, atol=1e-4)  # the thumbnail is what tells them apart
    pipe = VimiPipeline(model, cfg.pipeline_config(), device="cpu")
    videos = pipe(prompts, num_frames=4, height=16, width=16, num_inference_steps=2, sampler="euler",
                  guidance_text=2.0, guidance_image=3.0, progress=False).frames  # fmt: skip
    assert videos.shape == (1, 3, 4, 16, 16) and videos.isfinite().all()


def test_a_text_only_model_never_sees_prompt_images() -> None:
    from vimi.prompt import Image

    red = torch.zeros(3, 8, 8)
    red[0] = 1.0
    prompts = [MultimodalPrompt(["a ", Image(red), " in a field"])]
    for text_only in (False, True):
        cfg = load_config(None, [*SMALL, "model.backbone.image_thumbnail=2", f"model.text_only={text_only}"])
        prepared = prepare_prompts(cfg.model, prompts)
        assert len(prepared.prompts[0].images) == (0 if text_only else 1)
        assert prepared.pooled[0, -1].item() == (0.0 if text_only else 1.0)  # the has-image flag
        cond = build_model(cfg).condition(prompts)
        without_images = build_model(cfg).condition([prompts[0].drop_images()])
        assert (cond.tokens.shape == without_images.tokens.shape) == text_only


def test_the_loss_falls_on_a_fixed_batch_and_given_noise_makes_it_repeatable() -> None:
    torch.manual_seed(0)
    model = build_model(load_config(None, SMALL))
    videos = torch.rand(4, 3, 4, 16, 16) * 2 - 1
    prompts = [MultimodalPrompt([f"a cat number {i}"], "t2v") for i in range(4)]
    sigma, noise = torch.full((4,), 0.5), torch.randn(4, 3, 4, 16, 16)
    assert torch.equal(
        model(videos, prompts, sigma=sigma, noise=noise), model(videos, prompts, sigma=sigma, noise=noise)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model.loss(videos, prompts, sigma=sigma, noise=noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


class MeanShiftBackbone(nn.Module):
    """A backbone that only this test knows: it reads the condition's tokens and context through the contract."""

    def __init__(self, cfg, in_channels: int, cond_dim: int):
        super().__init__()
        self.read_tokens = nn.Linear(cond_dim, in_channels)
        self.seen: list[Condition] = []

    def forward(self, x, c_noise, cond: Condition):
        self.seen.append(cond)
        shift = self.read_tokens(cond.tokens.mean(dim=1))  # [B, C]
        return x * 0 + shift[:, :, None, None, None] + c_noise[:, None, None, None, None]


def test_a_new_backbone_plugs_in_by_name_and_gets_the_condition_untouched() -> None:
    from vimi.pipeline import VimiPipeline

    BACKBONES.register("test_mean_shift")(MeanShiftBackbone)
    try:
        cfg = load_config(None, ["model.backbone.kind=test_mean_shift", "sample.num_inference_steps=2"])
        model = build_model(cfg)
        assert isinstance(model.backbone, MeanShiftBackbone)
        frame = torch.zeros(3, 16, 16)
        pipe = VimiPipeline(model, cfg.pipeline_config(), device="cpu")
        out = pipe(["a cat", "a dog"], first_frame=frame, num_frames=4, height=16, width=16, progress=False)
        assert out.frames.shape == (2, 3, 4, 16, 16)
        # Guidance batched the three conditions into one Condition, given frames included, and the
        # denoiser passed it on as it was.
        assert all(isinstance(cond, Condition) and cond.context is not None for cond in model.backbone.seen)
        videos = torch.rand(2, 3, 4, 16, 16) * 2 - 1
        model.loss(videos, [MultimodalPrompt(["a cat"], "t2v")] * 2).backward()
        assert model.backbone.read_tokens.weight.grad.abs().sum() > 0
    finally:
        BACKBONES._entries.pop("test_mean_shift")

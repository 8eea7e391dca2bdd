"""VimiModel's condition: given frames held over the frames that follow them (context_hold), reference clips."""

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


def test_condition_fits_the_first_prompt_images_to_the_video_as_reference_clips() -> None:
    from vimi.prompt import Image

    overrides = ["model.backbone.hidden=32", "model.backbone.depth=1", "model.backbone.heads=2",
                 "model.backbone.reference_images=2", "model.backbone.patch_t=2"]  # fmt: skip
    model = build_model(load_config(None, overrides))
    wide = torch.zeros(3, 8, 16)
    wide[:, :, 4:12] = 0.5  # the centre 8x8 square; the sides are cropped away for a square video
    images = [Image(wide), Image(torch.full((3, 8, 8), -0.5)), Image(torch.ones(3, 8, 8))]
    prompts = [
        MultimodalPrompt(["a ", images[0], " in ", images[1], " and ", images[2]]),
        MultimodalPrompt(["a cat"]),
    ]
    cond = model.condition(prompts, size=(16, 16))
    # [B, N, C, patch_t, H, W]: only the first two images, each a still clip over one temporal patch.
    assert cond["references"].shape == (2, 2, 3, 2, 16, 16)
    assert cond["reference_mask"].tolist() == [[True, True], [False, False]]
    torch.testing.assert_close(cond["references"][0, 0], torch.full((3, 2, 16, 16), 0.5))
    torch.testing.assert_close(cond["references"][0, 1], torch.full((3, 2, 16, 16), -0.5))
    assert cond["references"][1].abs().sum() == 0
    try:
        model.condition(prompts)
    except ValueError as err:
        assert "size" in str(err)
    else:
        raise AssertionError("references without a video size must be refused")
    # The loss reaches the references (once the zero-initialised gates and output layer are not zero).
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if "adaLN" in name or "final_layer" in name:
                param.normal_(0, 0.05)
    videos = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    model.loss(videos, prompts).backward()
    assert model.backbone.reference_embed.grad.abs().sum() > 0


def test_context_residual_predicts_the_held_frame_at_high_noise_before_training() -> None:
    overrides = ["model.backbone.hidden=32", "model.backbone.depth=1", "model.backbone.heads=2"]
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

    overrides = ["model.backbone.hidden=32", "model.backbone.depth=1", "model.backbone.heads=2",
                 "model.backbone.image_thumbnail=4"]  # fmt: skip
    model = build_model(load_config(None, overrides))
    red, blue = torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)
    red[0], blue[2] = 1.0, 1.0
    prompts = [MultimodalPrompt(["a ", Image(red), " and a ", Image(blue)]), MultimodalPrompt(["a cat"])]
    thumbnails = model.condition(prompts)["thumbnails"]  # [B, 3*4*4 + 1]
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
    from vimi.diffusion.sampling import sample_videos
    from vimi.prompt import Image

    overrides = ["model.backbone.hidden=32", "model.backbone.depth=1", "model.backbone.heads=2",
                 "model.backbone.image_thumbnail=4"]  # fmt: skip
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
    conds = [model.condition(v, size=(16, 16)) for v in variants]
    x, sigma = torch.randn(1, 3, 4, 16, 16), torch.full((1,), 2.0)
    with torch.no_grad():
        full, image_only, uncond = (model.denoiser(x, sigma, c) for c in conds)
        guided = multimodal_guidance(lambda x, s, cond: model.denoiser(x, s, cond), 2.0, 3.0)
        out = guided(x, sigma, cond=conds[0], cond_image=conds[1], cond_uncond=conds[2])
    torch.testing.assert_close(out, uncond + 3.0 * (image_only - uncond) + 2.0 * (full - image_only))
    assert not torch.allclose(image_only, uncond, atol=1e-4)  # the thumbnail is what tells them apart
    videos = sample_videos(model, prompts, (1, 3, 4, 16, 16), [0], cfg.diffusion, steps=2, sampler="euler",
                           guidance_text=2.0, guidance_image=3.0)  # fmt: skip
    assert videos.shape == (1, 3, 4, 16, 16) and videos.isfinite().all()


def test_sigma_skip_from_the_config_sets_what_an_untrained_model_keeps_of_its_input() -> None:
    overrides = ["model.backbone.hidden=32", "model.backbone.depth=1", "model.backbone.heads=2"]
    video = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    noisy = video + 0.5 * torch.randn_like(video)
    sigma = torch.full((2,), 0.5)
    prompts = [MultimodalPrompt(["a cat moves left"], "t2v")] * 2
    kept = {}
    for skip in ("null", "0.05"):
        model = build_model(load_config(None, [*overrides, f"diffusion.sigma_skip={skip}"]))
        denoised = model.denoiser(noisy, sigma, model.condition(prompts))  # the output layer starts at zero
        kept[skip] = (denoised * noisy).sum().item() / noisy.pow(2).sum().item()  # D = c_skip x
    assert abs(kept["null"] - 0.5) < 1e-4  # EDM: sigma_data^2 / (sigma^2 + sigma_data^2)
    assert abs(kept["0.05"] - 0.05**2 / (0.5**2 + 0.05**2)) < 1e-4  # x0-prediction: almost nothing of it

"""Multimodal classifier-free guidance and per-sample noise."""

import pytest
import torch

from vimi.condition import Condition
from vimi.diffusion import multimodal_guidance, randn_per_sample


def cond(batch, length, value, dim=4):
    tokens = torch.full((batch, length, dim), float(value))
    return Condition(tokens, torch.ones(batch, length, dtype=torch.bool))


def model_fn(x, sigma, cond):
    """A toy conditional model: depends on the valid tokens' mean, so padding must not matter."""
    mask = cond.mask.float()
    pooled = (cond.tokens.mean(-1) * mask).sum(1) / mask.sum(1)  # [B]
    return x * 0.5 + pooled.view(-1, 1, 1) + sigma.view(-1, 1, 1) ** 2


def test_scale_one_is_exactly_the_conditional_model():
    x, sigma = torch.randn(2, 3, 5), torch.tensor([0.7, 1.3])
    conds = {"cond": cond(2, 4, 1.0), "cond_image": cond(2, 2, 2.0), "cond_uncond": cond(2, 1, -3.0)}
    guided = multimodal_guidance(model_fn, scale_text=1.0, scale_image=1.0)
    assert torch.equal(guided(x, sigma, **conds), model_fn(x, sigma, cond=conds["cond"]))


def test_scale_zero_is_the_unconditional_model():
    x, sigma = torch.randn(2, 3, 5), torch.tensor([0.7, 1.3])
    conds = {"cond": cond(2, 4, 1.0), "cond_image": cond(2, 2, 2.0), "cond_uncond": cond(2, 1, -3.0)}
    guided = multimodal_guidance(model_fn, scale_text=0.0, scale_image=0.0)
    torch.testing.assert_close(guided(x, sigma, **conds), model_fn(x, sigma, cond=conds["cond_uncond"]))


def test_separate_scales_follow_instructpix2pix_formula_in_one_batched_call():
    x, sigma = torch.randn(2, 3, 5), torch.tensor([0.7, 1.3])
    conds = {"cond": cond(2, 4, 1.0), "cond_image": cond(2, 2, 2.0), "cond_uncond": cond(2, 1, -3.0)}
    calls = []

    def counting_model(x, sigma, cond):
        calls.append(x.shape[0])
        return model_fn(x, sigma, cond)

    out = multimodal_guidance(counting_model, scale_text=7.5, scale_image=1.5)(x, sigma, **conds)
    full, image, uncond = (model_fn(x, sigma, cond=conds[k]) for k in ("cond", "cond_image", "cond_uncond"))
    torch.testing.assert_close(out, uncond + 1.5 * (image - uncond) + 7.5 * (full - image))
    assert calls == [6]  # three conditions, one call


def test_conditions_concatenate_padding_tokens_and_filling_absent_context():
    first = cond(1, 3, 1.0)
    first.context, first.context_mask = torch.ones(1, 3, 2, 4, 4), torch.ones(1, 1, 2, 4, 4)
    batched = Condition.cat([first, cond(2, 1, 2.0)])
    assert batched.tokens.shape == (3, 3, 4)
    assert batched.mask.tolist() == [[True, True, True], [True, False, False], [True, False, False]]
    assert batched.context.shape == (3, 3, 2, 4, 4)
    assert batched.context[1:].abs().sum() == 0 and batched.context_mask[0].min() == 1
    assert batched.context_mask[1:].abs().sum() == 0 and batched.pooled is None


def test_conditions_concatenate_pooled_vectors_in_order_and_refuse_a_mix():
    first, second = cond(1, 2, 1.0), cond(2, 3, 2.0)
    first.pooled, second.pooled = torch.zeros(1, 5), torch.ones(2, 5)
    assert Condition.cat([first, second]).pooled.tolist() == [[0.0] * 5, [1.0] * 5, [1.0] * 5]
    with pytest.raises(ValueError, match="pooled"):
        Condition.cat([first, cond(1, 1, 0.0)])
    with pytest.raises(ValueError, match="both or neither"):
        Condition(first.tokens, first.mask, context=torch.zeros(1, 3, 2, 4, 4))


def test_randn_per_sample_is_batch_independent():
    alone = randn_per_sample((1, 3, 2, 4, 4), seeds=[7], device="cpu", dtype=torch.float32)
    batch = randn_per_sample((4, 3, 2, 4, 4), seeds=[1, 2, 7, 9], device="cpu", dtype=torch.float32)
    assert torch.equal(alone[0], batch[2])
    assert not torch.equal(batch[0], batch[1])

"""Classifier-free guidance with separate text and image scales, as a wrapper around a model function.

InstructPix2Pix (Brooks et al. 2023, Eq. 3) guidance for two conditions:
    x0 = u + s_image * (i - u) + s_text * (f - i)
with u = unconditional, i = image-only (text dropped), f = full condition. The conditions are evaluated
in one batched call. Guidance is applied to the denoiser's output and never lives inside an nn.Module.
"""

import torch

from vimi.condition import Condition
from vimi.diffusion.samplers import ModelFn


def multimodal_guidance(model_fn: ModelFn, scale_text: float, scale_image: float) -> ModelFn:
    """Wrap model_fn(x, sigma, cond=...) into one taking extra_args {cond, cond_image, cond_uncond}: the
    full condition, its image-only variant (text dropped) and the unconditional one (`Condition`s)."""

    def guided(
        x: torch.Tensor,
        sigma: torch.Tensor,
        cond: Condition,
        cond_image: Condition,
        cond_uncond: Condition,
        **rest,
    ):
        if scale_text == 1 and scale_image == 1:  # exactly the conditional model, one evaluation
            return model_fn(x, sigma, cond=cond, **rest)
        if scale_text == 0 and scale_image == 0:  # exactly the unconditional model
            return model_fn(x, sigma, cond=cond_uncond, **rest)
        if scale_text == scale_image:  # the image-only term cancels: u + s (f - u), two evaluations
            conds = [cond, cond_uncond]
        else:
            conds = [cond, cond_image, cond_uncond]
        n = len(conds)
        x_all = x.repeat(n, *([1] * (x.ndim - 1)))  # [B, ...] -> [n*B, ...]
        out = model_fn(x_all, sigma.repeat(n), cond=Condition.cat(conds), **rest).chunk(n)
        if n == 2:
            full, uncond = out
            return uncond + scale_text * (full - uncond)
        full, image_only, uncond = out
        return uncond + scale_image * (image_only - uncond) + scale_text * (full - image_only)

    return guided

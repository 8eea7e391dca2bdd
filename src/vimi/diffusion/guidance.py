"""Classifier-free guidance with separate text and image scales, as a wrapper around a model function.

InstructPix2Pix (Brooks et al. 2023, Eq. 3) guidance for two conditions:
    x0 = u + s_image * (i - u) + s_text * (f - i)
with u = unconditional, i = image-only (text dropped), f = full condition. The conditions are evaluated
in one batched call. Guidance is applied to the denoiser's output and never lives inside an nn.Module.
"""

import torch

from vimi.diffusion.samplers import ModelFn


def pad_tokens(tokens: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad tokens [B, L, ...] and mask [B, L] to `length` with zero tokens whose mask is False."""
    extra = length - tokens.shape[1]
    if extra <= 0:
        return tokens, mask.bool()
    tokens = torch.cat(
        [tokens, tokens.new_zeros(tokens.shape[0], extra, *tokens.shape[2:])], dim=1
    )  # [B, length, ...]
    mask = torch.cat(
        [mask.bool(), mask.new_zeros(mask.shape[0], extra, dtype=torch.bool)], dim=1
    )  # [B, length]
    return tokens, mask


def concat_conditions(conds: list[dict]) -> dict:
    """Stack condition dicts along the batch: tokens (and reference clips) padded to one length, absent context
    given as zeros, any other tensor (fixed-size, e.g. thumbnails [B, F]) concatenated as it is."""
    out = {}
    for key, mask_key in (("tokens", "mask"), ("references", "reference_mask")):
        if key in conds[0]:
            length = max(c[key].shape[1] for c in conds)
            padded = [pad_tokens(c[key], c[mask_key], length) for c in conds]
            out[key], out[mask_key] = torch.cat([t for t, _ in padded]), torch.cat([m for _, m in padded])
    for key, value in conds[0].items():
        if key not in out and key not in ("context", "context_mask") and isinstance(value, torch.Tensor):
            out[key] = torch.cat([c[key] for c in conds])
    with_context = [c for c in conds if c.get("context") is not None]
    if with_context:
        ref = with_context[0]
        contexts, context_masks = [], []
        for c in conds:
            batch = c["tokens"].shape[0]
            if c.get("context") is None:
                contexts.append(ref["context"].new_zeros(batch, *ref["context"].shape[1:]))
                context_masks.append(ref["context_mask"].new_zeros(batch, *ref["context_mask"].shape[1:]))
            else:
                contexts.append(c["context"])
                context_masks.append(c["context_mask"])
        out["context"], out["context_mask"] = torch.cat(contexts), torch.cat(context_masks)
    return out


def multimodal_guidance(model_fn: ModelFn, scale_text: float, scale_image: float) -> ModelFn:
    """Wrap model_fn(x, sigma, cond=...) into one taking extra_args {cond, cond_image, cond_uncond}."""

    def guided(x: torch.Tensor, sigma: torch.Tensor, cond: dict, cond_image: dict, cond_uncond: dict, **rest):
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
        out = model_fn(x_all, sigma.repeat(n), cond=concat_conditions(conds), **rest).chunk(n)
        if n == 2:
            full, uncond = out
            return uncond + scale_text * (full - uncond)
        full, image_only, uncond = out
        return uncond + scale_image * (image_only - uncond) + scale_text * (full - image_only)

    return guided

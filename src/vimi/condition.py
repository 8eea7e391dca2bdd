"""`Condition`: the one object that travels from the model's conditioning to the denoiser, the backbone and
guidance. The encoder's tokens, the given frames (video prediction) and an optional pooled vector; a
backbone reads what it needs, the EDM denoiser and guidance pass it on without looking inside."""

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


@dataclass
class Condition:
    """What a video is generated from, batched along dimension 0."""

    tokens: Tensor
    """[B, L, D] the multimodal encoder's tokens of the prompt."""
    mask: Tensor
    """[B, L] bool: True for real tokens (padding at the end of each row is False)."""
    context: Tensor | None = None
    """[B, C, T, H, W] given frames in the diffusion space (zeros where no frame is given), or None."""
    context_mask: Tensor | None = None
    """[B, 1, T, H, W] 1 where `context` holds a given frame."""
    pooled: Tensor | None = None
    """[B, P] a global vector of the prompt (the mean prompt image's thumbnail), or None."""

    def __post_init__(self):
        if (self.context is None) != (self.context_mask is None):
            raise ValueError("Condition: `context` and `context_mask` come together (both or neither)")

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str) -> "Condition":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v.to(device) for k, v in moved.items() if v is not None})

    @staticmethod
    def cat(conditions: "list[Condition]") -> "Condition":
        """Conditions stacked along the batch: tokens padded to the longest row (masked False), absent
        context given as zero frames with a zero mask, pooled vectors concatenated (all or none)."""
        length = max(c.tokens.shape[1] for c in conditions)
        padded = [pad_tokens(c.tokens, c.mask, length) for c in conditions]
        tokens, mask = torch.cat([t for t, _ in padded]), torch.cat([m for _, m in padded])
        context = context_mask = None
        if given := [c for c in conditions if c.context is not None]:
            frames, frame_mask = given[0].context, given[0].context_mask
            context = torch.cat(
                [
                    c.context if c.context is not None else frames.new_zeros(c.batch_size, *frames.shape[1:])
                    for c in conditions
                ]
            )
            context_mask = torch.cat(
                [
                    c.context_mask
                    if c.context_mask is not None
                    else frame_mask.new_zeros(c.batch_size, *frame_mask.shape[1:])
                    for c in conditions
                ]
            )
        pooled = None
        if any(c.pooled is not None for c in conditions):
            if not all(c.pooled is not None for c in conditions):
                raise ValueError("Condition.cat: some conditions have a pooled vector and some do not")
            pooled = torch.cat([c.pooled for c in conditions])
        return Condition(tokens, mask, context, context_mask, pooled)


def pad_tokens(tokens: Tensor, mask: Tensor, length: int) -> tuple[Tensor, Tensor]:
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

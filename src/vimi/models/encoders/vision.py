"""The shared ViT patch vision tower (and the pre-norm transformer block it and the small encoder use)."""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vimi.errors import ConfigError


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + MLP block; `key_mask` [B, L] (True = real) hides padding keys."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"model.encoder.dim={dim} must be divisible by model.encoder.heads={heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        # [B, L, 3*D] -> 3 x [B, heads, L, D/heads]
        q, k, v = rearrange(
            self.qkv(self.norm1(x)), "b l (three h d) -> three b h l d", three=3, h=self.heads
        )
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]  # [B, 1, 1, L]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.proj(rearrange(attended, "b h l d -> b l (h d)"))
        return x + self.mlp(self.norm2(x))


class PatchVisionTower(nn.Module):
    """A small ViT: square images [N, 3, S, S] in [-1, 1] -> patch tokens [N, (S/patch)^2, dim]."""

    def __init__(self, image_size: int, patch: int, dim: int, depth: int, heads: int):
        super().__init__()
        if image_size % patch:
            raise ConfigError(
                f"model.encoder.image_size={image_size} must be a multiple of model.encoder.image_patch={patch}"
            )
        self.image_size = image_size
        self.num_tokens = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.position = nn.Parameter(torch.randn(self.num_tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: Tensor) -> Tensor:
        x = self.patch_embed(images)
        x = rearrange(x, "n d h w -> n (h w) d") + self.position  # [N, D, h, w] -> [N, h*w, D]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def fit_image(image: Tensor, height: int, width: int) -> Tensor:
    """Centre-crop a [3, H, W] image to the aspect ratio of height x width and resize it: -> [3, height, width]."""
    _, in_height, in_width = image.shape
    scale = min(in_height / height, in_width / width)
    crop_height, crop_width = round(height * scale), round(width * scale)
    top, left = (in_height - crop_height) // 2, (in_width - crop_width) // 2
    crop = image[:, top : top + crop_height, left : left + crop_width].float()
    if (crop_height, crop_width) != (height, width):
        crop = F.interpolate(
            crop[None], size=(height, width), mode="bilinear", antialias=scale > 1, align_corners=False
        )[0]
    return crop.clamp(-1, 1)


def prepare_images(images: list[Tensor], size: int) -> Tensor:
    """Centre-crop each [3, H, W] image to a square and resize it: -> [N, 3, size, size]."""
    prepared = [fit_image(image, size, size) for image in images]
    return torch.stack(prepared) if prepared else torch.zeros(0, 3, size, size)

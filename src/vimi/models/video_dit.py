"""VideoDiT: a spatiotemporal diffusion transformer over 3D patches (DiT, Peebles & Xie 2023, for video).

Each block: adaLN-zero attention of the video's (t, h, w) patches, with 3D RoPE, over the video and the
multimodal condition tokens (joined as extra keys and values), then an adaLN-zero MLP. The noise level
(and the prompt's pooled vector, when there is one) conditions through adaLN (shift, scale, gate) with
zero-initialised gates and output layer, so the network outputs exactly zero at initialisation. For video
prediction the given frames and their mask are concatenated to the input channels. The layers (block,
noise embedder, output layer) are in `dit_blocks.py`.
"""

from dataclasses import dataclass, replace

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from vimi.condition import Condition
from vimi.config import BackboneConfig
from vimi.errors import ConfigError
from vimi.models.dit_blocks import FinalLayer, TimestepEmbedder, VideoDiTBlock
from vimi.models.registry import BACKBONES
from vimi.models.rope import rope_3d_tables, split_head_dim


@dataclass(frozen=True)
class BackboneSize:
    hidden: int
    depth: int
    heads: int


# Named sizes (DiT's S/B/L/XL plus a tiny one for tests and the CPU demo).
BACKBONE_SIZES: dict[str, BackboneSize] = {
    "debug": BackboneSize(hidden=64, depth=2, heads=4),
    "S": BackboneSize(hidden=384, depth=12, heads=6),
    "B": BackboneSize(hidden=768, depth=12, heads=12),
    "L": BackboneSize(hidden=1024, depth=24, heads=16),
    "XL": BackboneSize(hidden=1152, depth=28, heads=16),
}


def resolve_backbone_size(cfg: BackboneConfig) -> BackboneSize:
    """The named size with every explicit (> 0) field of `cfg` overriding it."""
    if cfg.size not in BACKBONE_SIZES:
        names = ", ".join(BACKBONE_SIZES)
        raise ConfigError(f"model.backbone.size: unknown size {cfg.size!r}; choose one of {names}")
    size = BACKBONE_SIZES[cfg.size]
    overrides = {
        k: v for k, v in (("hidden", cfg.hidden), ("depth", cfg.depth), ("heads", cfg.heads)) if v > 0
    }
    size = replace(size, **overrides)
    if cfg.full_attention_every < 1:
        raise ConfigError(
            f"model.backbone.full_attention_every={cfg.full_attention_every} must be >= 1 (1: full 3D attention)"
        )
    if size.hidden % size.heads:
        raise ConfigError(f"model.backbone: hidden={size.hidden} is not divisible by heads={size.heads}")
    if cfg.image_thumbnail < 0:
        raise ConfigError(f"model.backbone.image_thumbnail={cfg.image_thumbnail} must be >= 0 (0: none)")
    return size


@BACKBONES.register("video_dit")
class VideoDiT(nn.Module):
    """Spatiotemporal DiT: noisy video [B, C, T, H, W] + noise level + `Condition` -> [B, C, T, H, W]."""

    def __init__(self, cfg: BackboneConfig, in_channels: int, cond_dim: int):
        super().__init__()
        size = resolve_backbone_size(cfg)
        self.cfg, self.size = cfg, size
        self.in_channels = in_channels
        self.patch = (cfg.patch_t, cfg.patch_h, cfg.patch_w)
        patch_volume = cfg.patch_t * cfg.patch_h * cfg.patch_w
        # Video prediction: given frames (C channels) and their mask (1 channel) join the input channels.
        input_channels = 2 * in_channels + 1 if cfg.context_frames else in_channels
        self.head_dim = size.hidden // size.heads
        split_head_dim(self.head_dim)  # fail early on a head size RoPE cannot split
        self.patch_embed = nn.Linear(input_channels * patch_volume, size.hidden)
        self.time_embed = TimestepEmbedder(size.hidden)
        if cfg.image_thumbnail:
            # The pooled vector (mean prompt image's pixels and a has-image flag) -> an adaLN offset.
            self.thumbnail_embed = nn.Sequential(
                nn.Linear(pooled_dim(cfg), size.hidden),
                nn.SiLU(),
                nn.Linear(size.hidden, size.hidden),
            )
        self.cond_embed = nn.Sequential(
            nn.LayerNorm(cond_dim),  # condition tokens (e.g. LLM hidden states) can have large magnitudes
            nn.Linear(cond_dim, size.hidden),
            nn.GELU(approximate="tanh"),
            nn.Linear(size.hidden, size.hidden),
        )
        self.blocks = nn.ModuleList(
            VideoDiTBlock(size.hidden, size.heads, cfg.mlp_ratio, index % cfg.full_attention_every == 0)
            for index in range(size.depth)
        )
        self.final_layer = FinalLayer(size.hidden, in_channels * patch_volume)
        self.activation_checkpointing = cfg.activation_checkpointing
        self._rope_cache: dict[tuple, torch.Tensor] = {}
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT initialisation: Xavier linears, small embeddings, zero adaLN gates and zero output layer."""

        def basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(basic_init)
        for layer in (self.time_embed.mlp[0], self.time_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        zero = [block.adaLN_modulation[-1] for block in self.blocks]
        zero += [self.final_layer.adaLN_modulation[-1], self.final_layer.linear]
        if self.cfg.image_thumbnail:
            zero.append(self.thumbnail_embed[-1])
        for layer in zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _grid(self, x: torch.Tensor) -> tuple[int, int, int]:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"VideoDiT expects x [B, {self.in_channels}, T, H, W], got {tuple(x.shape)}")
        if any(n % p for n, p in zip(x.shape[2:], self.patch)):
            raise ConfigError(
                f"video of size (T, H, W)={tuple(x.shape[2:])} is not divisible by the backbone patch "
                f"(patch_t, patch_h, patch_w)={self.patch}; change data.num_frames/height/width or the patch"
            )
        return tuple(n // p for n, p in zip(x.shape[2:], self.patch))

    def _rope(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        key = (grid, device)
        if key not in self._rope_cache:
            self._rope_cache[key] = rope_3d_tables(grid, self.head_dim, device)
        return self._rope_cache[key]

    def _with_context(self, x: torch.Tensor, cond: Condition) -> torch.Tensor:
        """x [B, C, T, H, W] with the given frames and their mask as extra channels -> [B, 2C+1, T, H, W]."""
        if not self.cfg.context_frames:
            if cond.context is not None:
                raise ValueError("VideoDiT was built with context_frames=False but received `context` frames")
            return x
        if cond.context is None:  # nothing given: zero frames with an all-zero mask
            return torch.cat([x, torch.zeros_like(x), x.new_zeros(x.shape[0], 1, *x.shape[2:])], dim=1)
        return torch.cat([x, cond.context.to(x.dtype), cond.context_mask.to(x.dtype)], dim=1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: Condition) -> torch.Tensor:
        """x [B, C, T, H, W], c_noise [B], cond: tokens [B, Lc, cond_dim] (+ context, pooled) -> [B, C, T, H, W]."""
        t, h, w = self._grid(x)
        pt, ph, pw = self.patch
        x = self._with_context(x, cond)
        # [B, Cin, T, H, W] -> [B, L, Cin*pt*ph*pw] with L = t*h*w patches in (t, h, w) order
        patches = rearrange(x, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)
        hidden = self.patch_embed(patches)  # [B, L, D]
        rope = self._rope((t, h, w), x.device)

        c = self.time_embed(c_noise)  # [B, D]
        if self.cfg.image_thumbnail:
            if cond.pooled is None:
                raise ValueError(
                    "VideoDiT was built with image_thumbnail > 0 but the condition has no `pooled`"
                )
            c = c + self.thumbnail_embed(cond.pooled.to(c.dtype))
        tokens = self.cond_embed(cond.tokens.to(hidden.dtype))  # [B, Lc, cond_dim] -> [B, Lc, D]
        mask = None if bool(cond.mask.all()) else cond.mask.bool()  # None: the faster unmasked kernel

        for block in self.blocks:
            if self.activation_checkpointing and torch.is_grad_enabled():
                hidden = checkpoint(block, hidden, c, tokens, mask, rope, t, use_reentrant=False)
            else:
                hidden = block(hidden, c, tokens, mask, rope, t)

        out = self.final_layer(hidden, c)  # [B, L, C*pt*ph*pw]
        # [B, L, C*pt*ph*pw] -> [B, C, T, H, W]
        return rearrange(
            out, "b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)", t=t, h=h, w=w, pt=pt, ph=ph, pw=pw
        )


def pooled_dim(cfg: BackboneConfig) -> int:
    """Width of the pooled vector VideoDiT reads: the N x N RGB thumbnail and a has-image flag."""
    return 3 * cfg.image_thumbnail**2 + 1


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

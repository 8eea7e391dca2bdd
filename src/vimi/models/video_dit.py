"""VideoDiT: a spatiotemporal diffusion transformer over 3D patches (DiT, Peebles & Xie 2023, for video).

Each block: adaLN-zero self-attention over all (t, h, w) patches with 3D RoPE, cross-attention to the
multimodal condition tokens, adaLN-zero MLP. Timestep conditioning is adaLN (shift, scale, gate) with
zero-initialised gates and output layer, so the network outputs exactly zero at initialisation.
For video prediction the given frames and their mask are concatenated to the input channels. Reference
images (backbone.reference_images) join the token sequence after the video as clean still frames. The
layers (block, noise embedder, output heads) are in `dit_blocks.py`.
"""

from dataclasses import dataclass, replace

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from vimi.config import BackboneConfig
from vimi.errors import ConfigError
from vimi.models.dit_blocks import ConditionMasks, DetailHead, FinalLayer, TimestepEmbedder, VideoDiTBlock
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
    if cfg.reference_images < 0:
        raise ConfigError(f"model.backbone.reference_images={cfg.reference_images} must be >= 0 (0: none)")
    if cfg.image_thumbnail < 0:
        raise ConfigError(f"model.backbone.image_thumbnail={cfg.image_thumbnail} must be >= 0 (0: none)")
    if cfg.detail_head < 0:
        raise ConfigError(f"model.backbone.detail_head={cfg.detail_head} must be >= 0 (channels; 0: none)")
    if cfg.reference_images and not cfg.context_frames:
        raise ConfigError(
            "model.backbone.reference_images needs context_frames=true: references enter as given frames"
        )
    return size


class VideoDiT(nn.Module):
    """Spatiotemporal DiT: [B, C, T, H, W] noisy input + noise level + condition tokens -> [B, C, T, H, W]."""

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
        if cfg.positions == "rope3d":
            split_head_dim(self.head_dim)  # fail early on a head size RoPE cannot split
        self.patch_embed = nn.Linear(input_channels * patch_volume, size.hidden)
        if cfg.reference_images:
            # Tells reference frames from given video frames (both arrive in the context channels).
            self.reference_embed = nn.Parameter(torch.zeros(size.hidden))
        self.time_embed = TimestepEmbedder(size.hidden)
        if cfg.image_thumbnail:
            # The mean prompt image's pixels and whether the prompt has any image -> an adaLN offset.
            self.thumbnail_embed = nn.Sequential(
                nn.Linear(3 * cfg.image_thumbnail**2 + 1, size.hidden),
                nn.SiLU(),
                nn.Linear(size.hidden, size.hidden),
            )
        self.cond_embed = nn.Sequential(
            nn.LayerNorm(cond_dim),  # condition tokens (e.g. LLM hidden states) can have large magnitudes
            nn.Linear(cond_dim, size.hidden),
            nn.GELU(approximate="tanh"),
            nn.Linear(size.hidden, size.hidden),
        )
        if cfg.positions == "learned":
            # Factorised: a table per axis, summed, so T, H and W can vary independently up to the limit.
            self.pos_t = nn.Parameter(torch.zeros(cfg.max_positions, size.hidden))
            self.pos_h = nn.Parameter(torch.zeros(cfg.max_positions, size.hidden))
            self.pos_w = nn.Parameter(torch.zeros(cfg.max_positions, size.hidden))
        self.blocks = nn.ModuleList(
            [
                VideoDiTBlock(
                    size.hidden,
                    size.heads,
                    cfg.mlp_ratio,
                    cfg.condition,
                    index % cfg.full_attention_every == 0,
                )
                for index in range(size.depth)
            ]
        )
        # U-ViT long skips: block depth-1-i reads block i's input (for i < depth // 2).
        self.skips = (
            nn.ModuleList(nn.Linear(size.hidden, size.hidden) for _ in range(size.depth // 2))
            if cfg.long_skips
            else None
        )
        self.final_layer = FinalLayer(size.hidden, in_channels * patch_volume)
        if cfg.detail_head:
            self.detail_head = DetailHead(size.hidden, input_channels, in_channels, cfg.detail_head)
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
        if self.cfg.positions == "learned":
            for table in (self.pos_t, self.pos_h, self.pos_w):
                nn.init.normal_(table, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
            # joint+cross: the added cross-attention starts as a no-op (see added_module_prefixes).
            if block.joint and block.cross:
                nn.init.zeros_(block.cross_attn.proj.weight)
                nn.init.zeros_(block.cross_attn.proj.bias)
        if self.cfg.image_thumbnail:
            nn.init.zeros_(self.thumbnail_embed[-1].weight)
            nn.init.zeros_(self.thumbnail_embed[-1].bias)
        for skip in self.skips or ():
            nn.init.zeros_(skip.weight)
            nn.init.zeros_(skip.bias)
        if self.cfg.detail_head:
            # FiLM starts as the identity and the correction at zero: the model is the one without the head.
            for layer in (self.detail_head.film[-1], self.detail_head.conv_out):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def added_module_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes (under the backbone) of what a checkpoint without them may leave at its
        initial value: the cross-attention of joint+cross, the long skips, the thumbnail embedding and the
        detail head (all compute nothing at initialisation, so the model is the checkpoint's exactly) and the
        reference-frame embedding (zero: references then enter as given frames do, which a checkpoint trained
        on video prediction already reads)."""
        cross = tuple(
            f"blocks.{i}.{name}."
            for i, block in enumerate(self.blocks)
            if block.joint and block.cross
            for name in ("norm2", "cross_attn")
        )
        return (
            cross
            + (("reference_embed",) if self.cfg.reference_images else ())
            + (("skips.",) if self.cfg.long_skips else ())
            + (("thumbnail_embed.",) if self.cfg.image_thumbnail else ())
            + (("detail_head.",) if self.cfg.detail_head else ())
        )

    def _check_input(self, x: torch.Tensor) -> tuple[int, int, int]:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"VideoDiT expects x [B, {self.in_channels}, T, H, W], got {tuple(x.shape)}")
        grid = tuple(n // p for n, p in zip(x.shape[2:], self.patch))
        if any(n % p for n, p in zip(x.shape[2:], self.patch)):
            raise ConfigError(
                f"video of size (T, H, W)={tuple(x.shape[2:])} is not divisible by the backbone patch "
                f"(patch_t, patch_h, patch_w)={self.patch}; change data.num_frames/height/width or the patch"
            )
        if self.cfg.positions == "learned" and max(grid) > self.cfg.max_positions:
            raise ConfigError(
                f"patch grid {grid} exceeds model.backbone.max_positions={self.cfg.max_positions}; "
                "raise it or use positions=rope3d"
            )
        return grid

    def _rope(self, grid: tuple[int, int, int], device: torch.device):
        key = (grid, device)
        if key not in self._rope_cache:
            self._rope_cache[key] = rope_3d_tables(grid, self.head_dim, device)
        return self._rope_cache[key]

    def _learned_positions(self, grid: tuple[int, int, int]) -> torch.Tensor:
        t, h, w = grid
        pos = (
            self.pos_t[:t, None, None] + self.pos_h[None, :h, None] + self.pos_w[None, None, :w]
        )  # [t, h, w, D]
        return pos.reshape(1, t * h * w, -1)  # [t, h, w, D] -> [1, L, D]

    def _reference_tokens(self, references: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Still latent clips [B, N, C, pt, h*ph, w*pw] -> tokens [B, N*h*w, D], as given frames of a video."""
        batch, count = references.shape[:2]
        _, h, w = grid
        pt, ph, pw = self.patch
        expected = (self.in_channels, pt, h * ph, w * pw)
        if tuple(references.shape[2:]) != expected:
            wanted = ", ".join(map(str, expected))
            raise ValueError(f"VideoDiT: references must be [B, N, {wanted}], got {tuple(references.shape)}")
        clips = references.flatten(0, 1)  # [B, N, C, pt, H, W] -> [B*N, C, pt, H, W]
        # Nothing noisy, the image in the given-frame channels, mask 1: a fully given frame.
        clips = torch.cat([torch.zeros_like(clips), clips, torch.ones_like(clips[:, :1])], dim=1)
        patches = rearrange(clips, "n c pt (h ph) (w pw) -> n (h w) (c pt ph pw)", ph=ph, pw=pw)
        tokens = self.patch_embed(patches.to(self.patch_embed.weight.dtype))  # [B*N, h*w, D]
        tokens = tokens + self.reference_embed
        return tokens.reshape(batch, count * h * w, -1)  # [B*N, h*w, D] -> [B, N*h*w, D]

    def _condition_masks(self, mask: torch.Tensor, hidden: torch.Tensor) -> ConditionMasks:
        """The blocks' attention masks (None when every token is valid: faster kernels) and cross_gate."""
        if bool(mask.all()):
            return ConditionMasks(None, None, None)
        has_token = mask.any(dim=-1)  # [B]
        cross = (mask | ~has_token[:, None])[:, None, None, :]  # [B, Lc] -> [B, 1, 1, Lc]
        # A row with no valid token (never expected: encoders emit a null token) gets no cross-attention
        # instead of the NaN that a fully masked softmax would give.
        cross_gate = None if bool(has_token.all()) else has_token.to(hidden.dtype)[:, None, None]
        return ConditionMasks(mask, cross, cross_gate)  # joint: [B, Lc], its video keys are always valid

    def forward(
        self,
        x: torch.Tensor,
        c_noise: torch.Tensor,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        references: torch.Tensor | None = None,
        reference_mask: torch.Tensor | None = None,
        thumbnails: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, C, T, H, W], c_noise [B], tokens [B, Lc, cond_dim], mask [B, Lc] -> [B, C, T, H, W].

        references [B, N, C, patch_t, H, W]: clean still clips (reference_images > 0), reference_mask [B, N]
        which of them are real (None: all). thumbnails [B, 3*N*N + 1]: the mean prompt image at N x N and a
        has-image flag (image_thumbnail = N > 0).
        """
        t, h, w = self._check_input(x)
        video_tokens = t * h * w
        if references is not None and not self.cfg.reference_images:
            raise ValueError("VideoDiT was built with reference_images=0 but received `references`")
        pt, ph, pw = self.patch
        if self.cfg.context_frames:
            if context is None:  # nothing given: zero frames with an all-zero mask
                context = torch.zeros_like(x)
                context_mask = x.new_zeros(x.shape[0], 1, *x.shape[2:])
            elif context_mask is None:
                raise ValueError("VideoDiT: `context` was given without `context_mask` [B, 1, T, H, W]")
            x = torch.cat([x, context.to(x.dtype), context_mask.to(x.dtype)], dim=1)  # [B, 2C+1, T, H, W]
        elif context is not None:
            raise ValueError("VideoDiT was built with context_frames=False but received `context` frames")

        # [B, Cin, T, H, W] -> [B, L, Cin*pt*ph*pw] with L = t*h*w patches in (t, h, w) order
        patches = rearrange(x, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)
        hidden = self.patch_embed(patches)  # [B, L, D]
        frames, sequence_mask = t, None
        if references is not None and references.shape[1] > 0:
            # After the video, so a reference's RoPE offset from the video does not depend on the batch's N.
            reference_tokens = self._reference_tokens(references, (t, h, w))  # [B, N*h*w, D]
            hidden = torch.cat([hidden, reference_tokens], dim=1)  # [B, L + N*h*w, D]
            frames = t + references.shape[1]  # still frame-major: t video frames, then N reference frames
            if self.cfg.positions == "learned" and frames > self.cfg.max_positions:
                raise ConfigError(
                    f"{t} latent frame groups + {references.shape[1]} references exceed "
                    f"model.backbone.max_positions={self.cfg.max_positions}; raise it or use positions=rope3d"
                )
            if reference_mask is not None and not bool(reference_mask.all()):
                video = reference_mask.new_ones(x.shape[0], video_tokens, dtype=torch.bool)
                per_token = reference_mask.bool().repeat_interleave(h * w, dim=1)  # [B, N] -> [B, N*h*w]
                sequence_mask = torch.cat([video, per_token], dim=1)
        rope = None
        if self.cfg.positions == "learned":
            hidden = hidden + self._learned_positions((frames, h, w))
        else:
            rope = self._rope((frames, h, w), x.device)

        c = self.time_embed(c_noise)  # [B, D]
        if self.cfg.image_thumbnail:
            if thumbnails is None:
                raise ValueError("VideoDiT was built with image_thumbnail > 0 but received no `thumbnails`")
            c = c + self.thumbnail_embed(thumbnails.to(c.dtype))
        cond = self.cond_embed(tokens.to(hidden.dtype))  # [B, Lc, cond_dim] -> [B, Lc, D]
        masks = self._condition_masks(mask.bool(), hidden)._replace(sequence=sequence_mask)

        depth, first_half_inputs = len(self.blocks), []  # the latter for the long skips
        for index, block in enumerate(self.blocks):
            if self.skips is not None:
                if index < len(self.skips):
                    first_half_inputs.append(hidden)
                elif (source := depth - 1 - index) < len(self.skips):  # block depth-1-i reads block i's input
                    hidden = hidden + self.skips[source](first_half_inputs[source])
            if self.activation_checkpointing and torch.is_grad_enabled():
                hidden = checkpoint(block, hidden, c, cond, masks, rope, frames, use_reentrant=False)
            else:
                hidden = block(hidden, c, cond, masks, rope, frames)

        out = self.final_layer(hidden[:, :video_tokens], c)  # [B, L, C*pt*ph*pw]
        # [B, L, C*pt*ph*pw] -> [B, C, T, H, W]
        out = rearrange(
            out, "b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)", t=t, h=h, w=w, pt=pt, ph=ph, pw=pw
        )
        return self.detail_head(out, x, c) if self.cfg.detail_head else out


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

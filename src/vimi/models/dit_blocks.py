"""VideoDiT's building blocks: adaLN modulation, the noise-level embedder, the transformer block and the
output heads (DiT's layers, Peebles & Xie 2023, with joint/cross condition attention and a pixel head)."""

import math
from typing import NamedTuple

import torch
from torch import nn

from vimi.models.attention import CrossAttention, SelfAttention

# EDM's c_noise = ln(sigma)/4 lies in about [-2, 2]; scaling it to DiT's 0..1000 timestep range lets
# the sinusoidal embedding's high frequencies resolve nearby noise levels.
NOISE_EMBED_SCALE = 250.0


def modulate(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, channel_dim: int = -1
) -> torch.Tensor:
    """adaLN / FiLM: x * (1 + scale) + shift, with scale and shift [B, D] along x's channel_dim (tokens
    [B, L, D]: -1; feature maps [B, D, T, H, W]: 1) and broadcast over its other dimensions."""
    shape = [x.shape[0]] + [1] * (x.ndim - 1)
    shape[channel_dim] = -1
    return torch.addcmul(shift.view(shape), x, 1 + scale.view(shape))  # one fused kernel


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of the noise level followed by an MLP (as in DiT)."""

    def __init__(self, hidden: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.frequency_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=c_noise.device) / half)  # [half]
        args = (c_noise.float() * NOISE_EMBED_SCALE)[:, None] * freqs[None]  # [B, half]
        features = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # [B, frequency_dim]
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class ConditionMasks(NamedTuple):
    """What the blocks mask (each optional): joint [B, Lc] and cross [B, 1, 1, Lc] condition-key masks,
    cross_gate [B, 1, 1], and sequence [B, L]: which video + reference tokens are real (padded references not)."""

    joint: torch.Tensor | None
    cross: torch.Tensor | None
    cross_gate: torch.Tensor | None
    sequence: torch.Tensor | None = None


class VideoDiTBlock(nn.Module):
    """adaLN-zero attention to the video (joint: and the condition), [cross-attention,] adaLN-zero MLP."""

    def __init__(
        self, hidden: int, heads: int, mlp_ratio: float, condition: str = "cross", full_attention: bool = True
    ):
        super().__init__()
        self.joint = condition in ("joint", "joint+cross")
        self.cross = condition in ("cross", "joint+cross")
        self.full_attention = full_attention  # False: attention within each frame only
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden, heads, condition_keys=self.joint)
        if self.joint:
            self.norm_cond = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        if self.cross:
            self.norm2 = nn.LayerNorm(hidden, eps=1e-6)
            self.cross_attn = CrossAttention(hidden, heads)
        self.norm3 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        mlp_hidden = int(hidden * mlp_ratio)
        # Exact (erf) GELU: one fused kernel on GPU either way, ~3x cheaper than the tanh form on CPU.
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, hidden))
        # shift, scale, gate of attention and MLP (joint: + shift, scale of the condition tokens)
        self.num_mods = 8 if self.joint else 6
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, self.num_mods * hidden))

    def forward(self, x, c, tokens, masks, rope, frames):
        """x [B, L, D], c [B, D], tokens [B, Lc, D], masks: `ConditionMasks`, frames: T of the frame-major tokens."""
        frames = 1 if self.full_attention else frames
        # Within-frame blocks need no sequence mask: a padded reference frame only attends to itself.
        key_mask = masks.sequence if frames == 1 else None
        mods = self.adaLN_modulation(c).chunk(self.num_mods, dim=-1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods[:6]
        attn_in = modulate(self.norm1(x), shift_msa, scale_msa)
        if self.joint:
            # The condition tokens see the noise level too (as CogVideoX's text stream), in every block.
            cond = modulate(self.norm_cond(tokens), mods[6], mods[7])
            attn_out = self.attn(attn_in, rope, cond, masks.joint, frames, key_mask)
        else:
            attn_out = self.attn(attn_in, rope, frames=frames, key_mask=key_mask)
        x = torch.addcmul(x, gate_msa[:, None], attn_out)
        if self.cross:
            cross = self.cross_attn(self.norm2(x), tokens, masks.cross)
            x = x + (cross if masks.cross_gate is None else cross * masks.cross_gate)
        x = torch.addcmul(x, gate_mlp[:, None], self.mlp(modulate(self.norm3(x), shift_mlp, scale_mlp)))
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated norm and a linear map from hidden to patch values (zero-initialised)."""

    def __init__(self, hidden: int, patch_values: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch_values)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DetailHead(nn.Module):
    """Per-frame 3x3 convolutions over [output, input] pixels -> a correction of the output (zero at init)."""

    def __init__(self, hidden: int, in_channels: int, out_channels: int, channels: int):
        super().__init__()
        # Within each frame: cheap, and time is already mixed by the transformer.
        frame_conv = {"kernel_size": (1, 3, 3), "padding": (0, 1, 1)}
        self.conv_in = nn.Conv3d(in_channels + out_channels, channels, **frame_conv)
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * channels))
        self.conv_mid = nn.Conv3d(channels, channels, **frame_conv)
        self.conv_out = nn.Conv3d(channels, out_channels, **frame_conv)

    def forward(self, out: torch.Tensor, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """out [B, C, T, H, W] (the patch output), x [B, Cin, T, H, W] (the network input), c [B, D] -> out + detail."""
        feature = self.conv_in(torch.cat([out, x.to(out.dtype)], dim=1))
        shift, scale = self.film(c).chunk(2, dim=-1)  # [B, channels] each
        feature = modulate(feature, shift, scale, channel_dim=1)
        feature = self.conv_mid(nn.functional.silu(feature))
        return out + self.conv_out(nn.functional.silu(feature))

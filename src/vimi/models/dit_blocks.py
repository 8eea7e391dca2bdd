"""VideoDiT's building blocks: adaLN modulation, the noise-level embedder, the transformer block and the
output layer (DiT's layers, Peebles & Xie 2023, with the condition tokens joined to self-attention)."""

import math

import torch
from torch import nn

from vimi.models.attention import JointAttention

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


class VideoDiTBlock(nn.Module):
    """adaLN-zero attention over the video and the condition tokens, then an adaLN-zero MLP."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, full_attention: bool = True):
        super().__init__()
        self.full_attention = full_attention  # False: attention within each frame only
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = JointAttention(hidden, heads)
        self.norm_cond = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.norm3 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        mlp_hidden = int(hidden * mlp_ratio)
        # Exact (erf) GELU: one fused kernel on GPU either way, ~3x cheaper than the tanh form on CPU.
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, hidden))
        # shift, scale, gate of attention and MLP, and shift, scale of the condition tokens
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 8 * hidden))

    def forward(self, x, c, tokens, mask, rope, frames):
        """x [B, L, D], c [B, D], tokens [B, Lc, D], mask [B, Lc] or None (all valid), rope [L, Dh/2],
        frames: T of the frame-major tokens."""
        frames = 1 if self.full_attention else frames
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp, shift_cond, scale_cond = (
            self.adaLN_modulation(c).chunk(8, dim=-1)
        )
        # The condition tokens see the noise level too (as CogVideoX's text stream), in every block.
        cond = modulate(self.norm_cond(tokens), shift_cond, scale_cond)
        attn_out = self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rope, cond, mask, frames)
        x = torch.addcmul(x, gate_msa[:, None], attn_out)
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

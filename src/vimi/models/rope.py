"""3D rotary position embeddings (RoPE, Su et al. 2021) over a (time, height, width) grid of patches.

The head dimension is split into three even parts, one per axis; each part rotates by its own axis
position. Like FLUX / CogVideoX this gives relative positions in all three axes and works for any
grid size (any number of frames) without a table to resize.
"""

import torch


def split_head_dim(head_dim: int) -> tuple[int, int, int]:
    """Split `head_dim` into even (time, height, width) parts; height and width get equal shares."""
    if head_dim % 2 or head_dim < 6:
        raise ValueError(f"3D RoPE needs an even head dimension >= 6, got {head_dim}")
    spatial = 2 * ((head_dim // 3) // 2)
    return head_dim - 2 * spatial, spatial, spatial


def _axis_angles(positions: torch.Tensor, dim: int, theta: float) -> torch.Tensor:
    """Rotation angles [N, dim/2] for integer positions [N] on one axis."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    return positions.to(torch.float64)[:, None] * inv_freq[None, :]


def rope_3d_tables(
    grid: tuple[int, int, int], head_dim: int, device: torch.device, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [L, head_dim] (L = t*h*w, token order t-major) for `rotate_half` RoPE."""
    t, h, w = grid
    dim_t, dim_h, dim_w = split_head_dim(head_dim)
    pos_t = torch.arange(t).repeat_interleave(h * w)  # [L]
    pos_h = torch.arange(h).repeat_interleave(w).repeat(t)  # [L]
    pos_w = torch.arange(w).repeat(t * h)  # [L]
    angles = torch.cat(
        [_axis_angles(pos_t, dim_t, theta), _axis_angles(pos_h, dim_h, theta), _axis_angles(pos_w, dim_w, theta)],
        dim=-1,
    )  # [L, head_dim/2]
    angles = torch.cat([angles, angles], dim=-1)  # [L, head_dim]: the two halves form rotation pairs
    return angles.cos().to(device, torch.float32), angles.sin().to(device, torch.float32)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, heads, L, head_dim] by the tables [L, head_dim]; computed in float32 for bf16 safety."""
    x32 = x.float()
    first, second = x32.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)  # rotate_half
    return (x32 * cos + rotated * sin).to(x.dtype)

"""The backbone's attention layers: self-attention over video patches (optionally joined by the condition
tokens as extra keys/values, optionally within each frame only) and cross-attention to the condition."""

import torch
import torch.nn.functional as F
from torch import nn

from vimi.models.rope import apply_rope


def all_valid_if_none(
    mask: torch.Tensor | None, rows: int, length: int, device: torch.device
) -> torch.Tensor:
    """A key mask [rows, length]: `mask` itself, or every key valid when it is None."""
    return mask if mask is not None else torch.ones(rows, length, dtype=torch.bool, device=device)


class SelfAttention(nn.Module):
    """Multi-head self-attention (fused QKV, QK-norm, optional RoPE), optionally also over condition tokens.

    With `condition_keys` the condition tokens join as extra keys/values (no queries, no RoPE): one
    attention reads both the video and the condition, which saves cross-attention's query and output
    projections on every video token.
    """

    def __init__(self, hidden: int, heads: int, condition_keys: bool = False):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.cond_kv = nn.Linear(hidden, 2 * hidden) if condition_keys else None
        # QK-norm keeps attention logits bounded, which is what makes bf16 training stable
        # (LayerNorm rather than RMSNorm: a fused kernel on CPU as well as GPU).
        self.q_norm = nn.LayerNorm(self.head_dim, eps=1e-6)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-6)
        self.proj = nn.Linear(hidden, hidden)

    def _split_heads(self, x: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        batch, length, _ = x.shape
        # [B, L, parts*D] -> [B, L, parts, H, Dh] -> parts x [B, H, L, Dh]
        return x.view(batch, length, parts, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor | None,
        cond: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
        frames: int = 1,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, L, D], rope [L, Dh/2], cond [B, Lc, D] and cond_mask [B, Lc] or None (condition_keys only).

        frames > 1: attend within each of that many frames only (x's tokens are frame-major).
        key_mask [B, L]: which of x's tokens may be attended to (None: all; with frames = 1 only).
        """
        if key_mask is not None and frames > 1:
            raise ValueError("SelfAttention: key_mask is for full attention (frames = 1)")
        batch, length, hidden = x.shape
        x = x.view(batch * frames, length // frames, hidden)  # [B, L, D] -> [B*T, S, D] (free: frame-major)
        q, k, v = self._split_heads(self.qkv(x), 3)  # each [B*T, H, S, Dh]
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            if frames > 1:  # [B*T, H, S, Dh] -> [B, T, H, S, Dh] against rotations [T, 1, S, Dh/2]
                rope = rope.view(frames, 1, length // frames, -1)
                q, k = q.unflatten(0, (batch, frames)), k.unflatten(0, (batch, frames))
            q, k = apply_rope(q, rope).flatten(0, -4), apply_rope(k, rope).flatten(0, -4)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]  # [B, 1, 1, L]
        if self.cond_kv is not None:
            cond_kv = self.cond_kv(cond)  # [B, Lc, 2D]
            if frames > 1:  # every frame reads the same condition: [B, Lc, 2D] -> [B*T, Lc, 2D]
                cond_kv = cond_kv.repeat_interleave(frames, dim=0)
                cond_mask = None if cond_mask is None else cond_mask.repeat_interleave(frames, dim=0)
            cond_k, cond_v = self._split_heads(cond_kv, 2)  # each [B*T, H, Lc, Dh]
            k = torch.cat([k, self.k_norm(cond_k)], dim=2)  # [B*T, H, S + Lc, Dh]
            v = torch.cat([v, cond_v], dim=2)
            if cond_mask is not None or key_mask is not None:  # video keys stay valid: no row is fully masked
                own = all_valid_if_none(key_mask, q.shape[0], q.shape[2], q.device)
                others = all_valid_if_none(cond_mask, q.shape[0], cond_k.shape[2], q.device)
                attn_mask = torch.cat([own, others], dim=1)[:, None, None, :]  # [B*T, 1, 1, S + Lc]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B*T, H, S, Dh]
        out = out.transpose(1, 2).reshape(batch, length, hidden)  # [B*T, H, S, Dh] -> [B, L, D]
        return self.proj(out)


class CrossAttention(nn.Module):
    """Multi-head attention from video patches to condition tokens, ignoring masked (padded) tokens."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=1e-6)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-6)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, hidden = x.shape
        q = self.q(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)  # [B, H, L, Dh]
        kv = self.kv(tokens).view(batch, tokens.shape[1], 2, self.heads, self.head_dim)  # [B, Lc, 2, H, Dh]
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, Lc, Dh]
        q, k = self.q_norm(q), self.k_norm(k)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, H, L, Dh]
        out = out.transpose(1, 2).reshape(batch, length, hidden)  # [B, H, L, Dh] -> [B, L, D]
        return self.proj(out)

"""The backbone's attention: self-attention over the video's patches joined by the condition tokens as extra
keys and values (optionally within each frame only)."""

import torch
import torch.nn.functional as F
from torch import nn

from vimi.models.rope import apply_rope


class JointAttention(nn.Module):
    """Multi-head attention of video tokens over the video and the condition tokens (fused QKV, QK-norm, RoPE).

    The condition tokens join as extra keys/values (no queries, no RoPE), as CogVideoX's text stream: one
    attention reads both the video and the prompt, which saves cross-attention's query and output
    projections on every video token.
    """

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.cond_kv = nn.Linear(hidden, 2 * hidden)
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
        rope: torch.Tensor,
        cond: torch.Tensor,
        cond_mask: torch.Tensor | None = None,
        frames: int = 1,
    ) -> torch.Tensor:
        """x [B, L, D], rope [L, Dh/2], cond [B, Lc, D], cond_mask [B, Lc] (None: every token valid) -> [B, L, D].

        frames > 1: attend within each of that many frames only (x's tokens are frame-major).
        """
        batch, length, hidden = x.shape
        x = x.view(batch * frames, length // frames, hidden)  # [B, L, D] -> [B*T, S, D] (free: frame-major)
        q, k, v = self._split_heads(self.qkv(x), 3)  # each [B*T, H, S, Dh]
        q, k = self.q_norm(q), self.k_norm(k)
        if frames > 1:  # [B*T, H, S, Dh] -> [B, T, H, S, Dh] against rotations [T, 1, S, Dh/2]
            rope = rope.view(frames, 1, length // frames, -1)
            q, k = q.unflatten(0, (batch, frames)), k.unflatten(0, (batch, frames))
        q, k = apply_rope(q, rope).flatten(0, -4), apply_rope(k, rope).flatten(0, -4)
        cond_kv = self.cond_kv(cond)  # [B, Lc, 2D]
        if frames > 1:  # every frame reads the same condition: [B, Lc, 2D] -> [B*T, Lc, 2D]
            cond_kv = cond_kv.repeat_interleave(frames, dim=0)
            cond_mask = None if cond_mask is None else cond_mask.repeat_interleave(frames, dim=0)
        cond_k, cond_v = self._split_heads(cond_kv, 2)  # each [B*T, H, Lc, Dh]
        k = torch.cat([k, self.k_norm(cond_k)], dim=2)  # [B*T, H, S + Lc, Dh]
        v = torch.cat([v, cond_v], dim=2)
        attn_mask = None
        if cond_mask is not None:  # the video keys stay valid, so no row is fully masked
            video_keys = cond_mask.new_ones(cond_mask.shape[0], k.shape[2] - cond_mask.shape[1])
            attn_mask = torch.cat([video_keys, cond_mask], dim=1)[:, None, None, :]  # [B*T, 1, 1, S + Lc]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B*T, H, S, Dh]
        out = out.transpose(1, 2).reshape(batch, length, hidden)  # [B*T, H, S, Dh] -> [B, L, D]
        return self.proj(out)

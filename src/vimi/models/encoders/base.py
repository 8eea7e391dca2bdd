"""The MultimodalEncoder interface (prompts -> condition tokens), its padding and its output cache.

The encoders are found by name in `vimi.models.registry.ENCODERS`; `vimi.models.encoders.build_encoder`
builds the one a config names. This module knows none of its subclasses.
"""

import hashlib
import json
from abc import abstractmethod
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from vimi.config import EncoderConfig
from vimi.errors import PromptError
from vimi.models.encoders.cache import EncoderCache, prompt_key
from vimi.prompt import MultimodalPrompt


class MultimodalEncoder(nn.Module):
    """Turns interleaved prompts into condition tokens [B, L, out_dim] and a mask [B, L] (True = real).

    Subclasses implement `_encode_batch`, and may override `prepare` (CPU work on the prompts that a
    DataLoader worker can do ahead) and `from_config`. Every prompt, even an empty one, yields >= 1 valid
    token; padding is at the end of each row, zero-valued and masked False. When every parameter is frozen
    and a `cache` is attached, outputs are looked up per prompt and only the misses are encoded.
    """

    out_dim: int
    external_state_prefixes: tuple[str, ...] = ()
    """State-dict prefixes (under the encoder) of frozen pretrained weights that load from their own local
    path (e.g. an LLM's): checkpoints leave them out."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.cache: EncoderCache | None = None
        self._identity: tuple[int, str] | None = None

    @classmethod
    def from_config(cls, cfg: EncoderConfig) -> "MultimodalEncoder":
        """The encoder of `cfg`; encoders that load pretrained weights from a local path override this."""
        return cls(cfg)

    @classmethod
    def prepare(cls, cfg: EncoderConfig, prompts: list[MultimodalPrompt]) -> Any:
        """CPU work on `prompts` (images already loaded) that depends on the config alone, so that a DataLoader
        worker can do it ahead; `encode(prompts, prepared)` takes what it returns. None: nothing to prepare."""
        return None

    @abstractmethod
    def _encode_batch(self, prompts: list[MultimodalPrompt], prepared: Any) -> tuple[Tensor, Tensor]:
        """Encode prompts with the model, given `prepare(cfg, prompts)`: -> tokens [B, L, D], mask [B, L]."""

    def encode(self, prompts: list[MultimodalPrompt], prepared: Any = None) -> tuple[Tensor, Tensor]:
        """Condition tokens [B, L, out_dim] and mask [B, L] bool for a batch of prompts.

        `prepared`: what `prepare(cfg, prompts)` returned ahead (e.g. in a DataLoader worker), used instead of
        reading the prompts again; the output cache is then bypassed (prepared work covers the whole batch).
        """
        prompts = list(prompts)
        if not prompts:
            return torch.zeros(0, 1, self.out_dim, device=self.device), torch.zeros(0, 1, dtype=torch.bool)
        if prepared is not None or self.cache is None or not self.is_frozen:
            if prepared is None:
                prepared = self.prepare(self.cfg, prompts)
            return self._encode_batch(prompts, prepared)
        identity = self.identity()
        keys = [prompt_key(prompt, identity) for prompt in prompts]
        rows: list[Tensor | None] = [self.cache.get(key) for key in keys]
        first_of_key = {key: i for i, key in reversed(list(enumerate(keys)))}
        missing = [i for i, row in enumerate(rows) if row is None and first_of_key[keys[i]] == i]
        if missing:  # each distinct missing prompt is encoded once
            misses = [prompts[i] for i in missing]
            tokens, mask = self._encode_batch(misses, self.prepare(self.cfg, misses))
            for j, i in enumerate(missing):
                row = tokens[j][mask[j]].detach()  # [L_i, D]: the valid tokens only
                self.cache.put(keys[i], row)
                rows[i] = row
            rows = [row if row is not None else rows[first_of_key[key]] for row, key in zip(rows, keys)]
        return pad_rows([row.to(self.device) for row in rows])

    def forward(self, prompts: list[MultimodalPrompt], prepared: Any = None) -> tuple[Tensor, Tensor]:
        return self.encode(prompts, prepared)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def is_frozen(self) -> bool:
        """True when no parameter trains, so the same prompt always gives the same tokens."""
        return not any(p.requires_grad for p in self.parameters())

    def identity(self) -> str:
        """A digest of class, config and weights: cached outputs are valid only for the same identity."""
        tensors = [*self.parameters(), *self.buffers()]
        # In-place writes (load_state_dict, optimiser steps) bump a tensor's version counter, so the
        # weights are re-hashed only when they may have changed.
        version = sum(t._version for t in tensors) + sum(id(t) for t in tensors)
        if self._identity is None or self._identity[0] != version:
            digest = hashlib.blake2b(digest_size=16)
            digest.update(type(self).__qualname__.encode())
            digest.update(json.dumps(asdict(self.cfg), sort_keys=True, default=str).encode())
            for name, tensor in [*self.named_parameters(), *self.named_buffers()]:
                digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
                digest.update(
                    tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                )
            self._identity = (version, digest.hexdigest())
        return self._identity[1]

    def check_length(self, num_tokens: int, prompt: MultimodalPrompt) -> None:
        """Raise PromptError when a prompt needs more condition tokens than cfg.max_tokens."""
        if num_tokens > self.cfg.max_tokens:
            raise_too_long(self.cfg, num_tokens, prompt)


def raise_too_long(cfg: EncoderConfig, num_tokens: int, prompt: MultimodalPrompt) -> None:
    """The PromptError of a prompt that needs `num_tokens` condition tokens, more than cfg.max_tokens."""
    raise PromptError(
        f"prompt needs {num_tokens} condition tokens ({len(prompt.images)} image(s), "
        f"{len(prompt.text)} text characters) but model.encoder.max_tokens is {cfg.max_tokens}: "
        f"shorten the text, use fewer images, or raise the limit. Prompt: {prompt.placeholder_text[:80]!r}"
    )


def pad_rows(rows: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack rows [L_i, D] into tokens [B, max L_i, D] (zeros after each row) and mask [B, max L_i]."""
    length = max(row.shape[0] for row in rows)
    tokens = rows[0].new_zeros(len(rows), length, rows[0].shape[-1])
    mask = torch.zeros(len(rows), length, dtype=torch.bool, device=rows[0].device)
    for i, row in enumerate(rows):
        tokens[i, : row.shape[0]] = row
        mask[i, : row.shape[0]] = True
    return tokens, mask

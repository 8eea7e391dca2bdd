"""The MultimodalEncoder interface (prompts -> condition tokens), its padding and caching, and build_encoder."""

import hashlib
import json
from abc import abstractmethod
from dataclasses import asdict

import torch
from torch import Tensor, nn

from vimi.config import EncoderConfig
from vimi.errors import ConfigError, PromptError
from vimi.models.encoders.cache import EncoderCache, prompt_key
from vimi.prompt import MultimodalPrompt


class MultimodalEncoder(nn.Module):
    """Turns interleaved prompts into condition tokens [B, L, out_dim] and a mask [B, L] (True = real).

    Subclasses implement `_encode_batch`. Every prompt, even an empty one, yields >= 1 valid token;
    padding is at the end of each row, zero-valued and masked False. When every parameter is frozen
    and a `cache` is attached, outputs are looked up per prompt and only the misses are encoded.
    """

    out_dim: int

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.cache: EncoderCache | None = None
        self._identity: tuple[int, str] | None = None

    @abstractmethod
    def _encode_batch(self, prompts: list[MultimodalPrompt]) -> tuple[Tensor, Tensor]:
        """Encode prompts with the model: -> tokens [B, L, D], mask [B, L]."""

    def encode(self, prompts: list[MultimodalPrompt]) -> tuple[Tensor, Tensor]:
        """Condition tokens [B, L, out_dim] and mask [B, L] bool for a batch of prompts."""
        prompts = list(prompts)
        if not prompts:
            return torch.zeros(0, 1, self.out_dim, device=self.device), torch.zeros(0, 1, dtype=torch.bool)
        if self.cache is None or not self.is_frozen:
            return self._encode_batch(prompts)
        identity = self.identity()
        keys = [prompt_key(prompt, identity) for prompt in prompts]
        rows: list[Tensor | None] = [self.cache.get(key) for key in keys]
        first_of_key = {key: i for i, key in reversed(list(enumerate(keys)))}
        missing = [i for i, row in enumerate(rows) if row is None and first_of_key[keys[i]] == i]
        if missing:  # each distinct missing prompt is encoded once
            tokens, mask = self._encode_batch([prompts[i] for i in missing])
            for j, i in enumerate(missing):
                row = tokens[j][mask[j]].detach()  # [L_i, D]: the valid tokens only
                self.cache.put(keys[i], row)
                rows[i] = row
            rows = [row if row is not None else rows[first_of_key[key]] for row, key in zip(rows, keys)]
        return pad_rows([row.to(self.device) for row in rows])

    def forward(self, prompts: list[MultimodalPrompt]) -> tuple[Tensor, Tensor]:
        return self.encode(prompts)

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


def build_encoder(cfg: EncoderConfig) -> MultimodalEncoder:
    """The encoder `cfg.kind` names, with an output cache attached when the config enables one."""
    if cfg.kind == "small":
        from vimi.models.encoders.small import SmallMultimodalEncoder

        encoder: MultimodalEncoder = SmallMultimodalEncoder(cfg)
    elif cfg.kind == "llm":
        from vimi.models.encoders.llm import LLMMultimodalEncoder

        encoder = LLMMultimodalEncoder.from_config(cfg)
    elif cfg.kind == "hf_vlm":
        from vimi.models.encoders.hf_vlm import HFVisionLanguageEncoder

        encoder = HFVisionLanguageEncoder.from_config(cfg)
    else:
        raise ConfigError(f"model.encoder.kind={cfg.kind!r} is not one of small, llm, hf_vlm")
    if cfg.cache_memory_items > 0 or cfg.cache_dir:
        encoder.cache = EncoderCache(cfg.cache_memory_items, cfg.cache_dir or None)
    return encoder

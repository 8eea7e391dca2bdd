"""Multimodal encoders: interleaved prompts -> condition tokens [B, L, D] and mask [B, L].

Every encoder registers in `vimi.models.registry.ENCODERS` under its `model.encoder.kind`: the small one
with a decorator on its class; the LLM and HF-VLM encoders, which import transformers (seconds), by
import path here, so they are imported only when a config names them.
"""

from typing import Any

from vimi.config import EncoderConfig
from vimi.models.encoders.base import MultimodalEncoder, pad_rows
from vimi.models.encoders.cache import EncoderCache, prompt_key
from vimi.models.encoders.small import SmallMultimodalEncoder
from vimi.models.registry import ENCODERS
from vimi.prompt import MultimodalPrompt

ENCODERS.register_lazy("llm", "vimi.models.encoders.llm:LLMMultimodalEncoder")
ENCODERS.register_lazy("hf_vlm", "vimi.models.encoders.hf_vlm:HFVisionLanguageEncoder")


def build_encoder(cfg: EncoderConfig) -> MultimodalEncoder:
    """The encoder `cfg.kind` names, with an output cache attached when the config enables one."""
    encoder = ENCODERS.get(cfg.kind).from_config(cfg)
    if cfg.cache_memory_items > 0 or cfg.cache_dir:
        encoder.cache = EncoderCache(cfg.cache_memory_items, cfg.cache_dir or None)
    return encoder


def prepare_encoder_input(cfg: EncoderConfig, prompts: list[MultimodalPrompt]) -> Any:
    """What the encoder `cfg.kind` names prepares of `prompts` on the CPU (`MultimodalEncoder.prepare`), for
    `encoder.encode(prompts, prepared)`; it needs the config alone, so a DataLoader worker can run it."""
    return ENCODERS.get(cfg.kind).prepare(cfg, prompts)


__all__ = [
    "EncoderCache",
    "MultimodalEncoder",
    "SmallMultimodalEncoder",
    "build_encoder",
    "pad_rows",
    "prepare_encoder_input",
    "prompt_key",
]

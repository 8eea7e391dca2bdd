"""Multimodal encoders: interleaved prompts -> condition tokens [B, L, D] and mask [B, L]."""

from vimi.models.encoders.base import MultimodalEncoder, build_encoder, pad_rows
from vimi.models.encoders.cache import EncoderCache, prompt_key
from vimi.models.encoders.small import SmallMultimodalEncoder

# The LLM and HF-VLM encoders import transformers (seconds); import them from their modules:
# vimi.models.encoders.llm.LLMMultimodalEncoder, vimi.models.encoders.hf_vlm.HFVisionLanguageEncoder.
__all__ = [
    "EncoderCache",
    "MultimodalEncoder",
    "SmallMultimodalEncoder",
    "build_encoder",
    "pad_rows",
    "prompt_key",
]

"""HFVisionLanguageEncoder: any local Hugging Face vision-language model (LLaVA and kin) as a frozen encoder.

The model's own processor expands each image placeholder into its image tokens and preprocesses the
pixels; the hidden states of layer `cfg.llm_hidden_layer` of its language model are the condition.
Without a processor (a tokenizer only), prompts must be text-only.
"""

from pathlib import Path
from typing import Any

import torch
from PIL import Image as PILImage
from torch import Tensor, nn

from vimi.config import EncoderConfig
from vimi.data.image_io import to_uint8
from vimi.errors import ConfigError, PromptError
from vimi.models.encoders.base import MultimodalEncoder
from vimi.prompt import MultimodalPrompt, Text


class HFVisionLanguageEncoder(MultimodalEncoder):
    """A frozen local HF VLM (e.g. LlavaForConditionalGeneration) + its processor -> hidden states [B, L, D]."""

    external_state_prefixes = ("model.",)  # the VLM loads from its own local path

    def __init__(self, cfg: EncoderConfig, model: nn.Module, processor: object | None = None, tokenizer=None):
        super().__init__(cfg)
        if processor is None and tokenizer is None:
            raise ConfigError("HFVisionLanguageEncoder needs the model's processor or at least a tokenizer")
        self.model = model.requires_grad_(False).eval()
        self.processor = processor
        self.tokenizer = tokenizer if tokenizer is not None else processor.tokenizer
        self.tokenizer.padding_side = "right"  # real tokens first in every row, as MultimodalEncoder promises
        self.image_token = getattr(processor, "image_token", None) or "<image>"
        self.out_dim = model.config.get_text_config().hidden_size
        # An empty prompt is encoded as this one token so that its row still has a valid token.
        self.null_text = (
            self.tokenizer.bos_token or self.tokenizer.eos_token or self.tokenizer.pad_token or " "
        )

    @classmethod
    def from_config(cls, cfg: EncoderConfig) -> "HFVisionLanguageEncoder":
        from transformers import AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

        if not cfg.llm_path:
            raise ConfigError("model.encoder.kind=hf_vlm needs model.encoder.llm_path: a local HF VLM folder")
        if not Path(cfg.llm_path).is_dir():
            raise ConfigError(f"model.encoder.llm_path={cfg.llm_path!r} is not a folder")
        # local_files_only everywhere: weights load from local paths only, never the hub.
        try:
            model = AutoModelForImageTextToText.from_pretrained(
                cfg.llm_path, dtype=torch.float32, local_files_only=True
            )
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot load a vision-language model from {cfg.llm_path!r}: {err}") from None
        try:
            return cls(
                cfg, model, processor=AutoProcessor.from_pretrained(cfg.llm_path, local_files_only=True)
            )
        except (OSError, ValueError, TypeError):
            return cls(
                cfg, model, tokenizer=AutoTokenizer.from_pretrained(cfg.llm_path, local_files_only=True)
            )

    def train(self, mode: bool = True) -> "HFVisionLanguageEncoder":
        super().train(mode)
        self.model.eval()  # frozen: no dropout, whatever the trainer asks for
        return self

    def _prompt_text(self, prompt: MultimodalPrompt) -> str:
        if prompt.is_empty:
            return self.null_text
        # A literal image token typed in the text would steal an image's slot: remove it.
        return "".join(
            s.text.replace(self.image_token, "") if isinstance(s, Text) else self.image_token
            for s in prompt.segments
        )

    def _encode_batch(self, prompts: list[MultimodalPrompt], prepared: Any) -> tuple[Tensor, Tensor]:
        texts = [self._prompt_text(prompt) for prompt in prompts]
        images = [PILImage.fromarray(to_uint8(image.load())) for prompt in prompts for image in prompt.images]
        if images and (self.processor is None or getattr(self.processor, "image_processor", None) is None):
            raise PromptError(
                f"{len(images)} prompt image(s) given, but this VLM was loaded without an image processor; "
                "save the model's processor beside its weights in model.encoder.llm_path or use text-only prompts"
            )
        if images:
            inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        else:
            inputs = self.tokenizer(texts, return_tensors="pt", padding=True)
        mask = inputs["attention_mask"].bool()
        for prompt, length in zip(prompts, mask.sum(1).tolist()):
            self.check_length(length, prompt)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        outputs = self.model(**inputs, output_hidden_states=True, use_cache=False, logits_to_keep=1)
        hidden = outputs.hidden_states[self.cfg.llm_hidden_layer]  # [B, L, D]
        mask = mask.to(hidden.device)
        return hidden * mask[..., None], mask

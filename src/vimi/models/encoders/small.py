"""SmallMultimodalEncoder: a byte- or word-level text + ViT-patch image transformer, trainable and fast on CPU."""

import re
import zlib
from dataclasses import astuple, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vimi.config import EncoderConfig
from vimi.models.encoders.base import MultimodalEncoder, raise_too_long
from vimi.models.encoders.vision import PatchVisionTower, TransformerBlock, prepare_images
from vimi.models.registry import ENCODERS
from vimi.prompt import MultimodalPrompt, Text

NULL_SEGMENT, TEXT_SEGMENT, IMAGE_SEGMENT = 0, 1, 2
PAD_SEGMENT = 3  # past a row's end: no embedding, masked


WORD_PATTERN = re.compile(r"\w+|[^\w\s]")


def byte_tokens(text: str) -> list[int]:
    """The byte-level tokenizer: UTF-8 bytes, vocabulary 256."""
    return list(text.encode("utf-8"))


def word_tokens(text: str, vocab_size: int) -> list[int]:
    """Hashed words: each word or punctuation mark, lowercased, -> crc32 mod vocab_size (stable across runs)."""
    return [zlib.crc32(word.lower().encode("utf-8")) % vocab_size for word in WORD_PATTERN.findall(text)]


@ENCODERS.register("small")
class SmallMultimodalEncoder(MultimodalEncoder):
    """[null token, text tokens and image patch tokens in prompt order] -> a small transformer -> [B, L, dim].

    Every row starts with a learned null token, so an empty prompt still yields one valid token.
    Segment-type embeddings tell text tokens, image tokens and the null token apart.
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        self.out_dim = cfg.dim
        self.vocab_size = 256 if cfg.tokenizer == "bytes" else cfg.vocab_size
        self.text_embed = nn.Embedding(self.vocab_size, cfg.dim)
        self.vision = PatchVisionTower(cfg.image_size, cfg.image_patch, cfg.dim, cfg.depth, cfg.heads)
        self.segment_embed = nn.Embedding(3, cfg.dim)
        self.null_token = nn.Parameter(torch.randn(cfg.dim) * 0.02)
        self.position = nn.Parameter(torch.randn(cfg.max_tokens, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(cfg.dim, cfg.heads) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        nn.init.normal_(self.text_embed.weight, std=0.02)
        nn.init.normal_(self.segment_embed.weight, std=0.02)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of a text segment under cfg.tokenizer."""
        return tokenize(self.cfg, text)

    @classmethod
    def prepare(cls, cfg: EncoderConfig, prompts: list[MultimodalPrompt]) -> "PromptLayout":
        """The prompts tokenized and laid out, their images fitted (`prompt_layout`): CPU work only."""
        return prompt_layout(cfg, prompts)

    def _encode_batch(self, prompts: list[MultimodalPrompt], prepared: Any) -> tuple[Tensor, Tensor]:
        return self.encode_layout(prepared)

    def encode_layout(self, layout: "PromptLayout") -> tuple[Tensor, Tensor]:
        """Tokens [B, L, D] and mask [B, L] of prompts laid out by `prompt_layout` (`prepare`, which may run in a
        DataLoader worker): a fixed handful of batched ops, where a loop over segments would launch thousands of
        kernels."""
        device = self.position.device
        layout = layout.to(device)
        segment, mask = layout.segment, layout.segment != PAD_SEGMENT  # [B, L] each
        text = self.text_embed(layout.text_ids.clamp(min=0))  # [B, L, D]
        x = torch.where((segment == TEXT_SEGMENT)[..., None], text, 0.0)
        if layout.images.shape[0]:
            image_tokens = self.vision(layout.images).flatten(0, 1)  # [N, P, D] -> [N*P, D]
            from_image = image_tokens[layout.image_slots.clamp(min=0)]  # [B, L, D]
            x = x + torch.where((segment == IMAGE_SEGMENT)[..., None], from_image, 0.0)
        x = x + torch.where((segment == NULL_SEGMENT)[..., None], self.null_token, 0.0)
        # Each real token is (its embedding + its segment type); padding stays zero until the positions.
        x = x + self.segment_embed(segment.clamp(max=IMAGE_SEGMENT)) * mask[..., None]
        x = x + self.position[: x.shape[1]]
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x) * mask[..., None], mask


@dataclass
class PromptLayout:
    """A batch of prompts as the small encoder reads them, built on the CPU (`prompt_layout`) so that the device
    only gathers: each position's segment type, text token id and image patch slot."""

    segment: Tensor
    """int64 [B, L]: NULL/TEXT/IMAGE_SEGMENT, or PAD_SEGMENT past a row's end."""
    text_ids: Tensor
    """int64 [B, L]: the token id at text positions, -1 elsewhere."""
    image_slots: Tensor
    """int64 [B, L]: at image positions, the row of the batch's patch tokens [N * P, D]; -1 elsewhere."""
    images: Tensor
    """float [N, 3, S, S]: the batch's images in prompt order, fitted to the vision tower's size."""

    def to(self, device: torch.device | str) -> "PromptLayout":
        return PromptLayout(*(tensor.to(device, non_blocking=True) for tensor in astuple(self)))


def tokenize(cfg: EncoderConfig, text: str) -> list[int]:
    """Token ids of a text segment under cfg.tokenizer."""
    return byte_tokens(text) if cfg.tokenizer == "bytes" else word_tokens(text, cfg.vocab_size)


def prompt_layout_row(
    cfg: EncoderConfig, prompt: MultimodalPrompt, first_slot: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """One prompt's (segment types, text ids, image patch slots) over its tokens; its first image's first patch
    is slot `first_slot` of the batch's patch tokens, and the rest follow in order."""
    patches = (cfg.image_size // cfg.image_patch) ** 2
    segments, ids, slots = [NULL_SEGMENT], [-1], [-1]
    for piece in prompt.segments:
        if isinstance(piece, Text):
            tokens = tokenize(cfg, piece.text)
            segments += [TEXT_SEGMENT] * len(tokens)
            ids += tokens
            slots += [-1] * len(tokens)
        else:
            segments += [IMAGE_SEGMENT] * patches
            ids += [-1] * patches
            slots += range(first_slot, first_slot + patches)
            first_slot += patches
    return segments, ids, slots


def prompt_layout(cfg: EncoderConfig, prompts: list[MultimodalPrompt]) -> PromptLayout:
    """Tokenize, read and fit the images of, and lay out a batch of prompts: CPU work only (PromptError when a
    prompt needs more than cfg.max_tokens tokens)."""
    rows, first_slot = [], 0
    for prompt in prompts:
        segments, ids, slots = prompt_layout_row(cfg, prompt, first_slot)
        if len(segments) > cfg.max_tokens:
            raise_too_long(cfg, len(segments), prompt)
        rows.append((segments, ids, slots))
        first_slot += segments.count(IMAGE_SEGMENT)
    length = max((len(segments) for segments, _, _ in rows), default=1)
    fills = (PAD_SEGMENT, -1, -1)
    segment, text_ids, image_slots = (
        torch.tensor(
            [row[k] + [fills[k]] * (length - len(row[k])) for row in rows], dtype=torch.long
        ).reshape(len(rows), length)  # [B, L], also for an empty batch
        for k in range(3)
    )
    images = prepare_images([image.load() for prompt in prompts for image in prompt.images], cfg.image_size)
    return PromptLayout(segment, text_ids, image_slots, images)

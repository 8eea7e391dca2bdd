"""SmallMultimodalEncoder: a byte- or word-level text + ViT-patch image transformer, trainable and fast on CPU."""

import re
import zlib

import torch
from torch import Tensor, nn

from vimi.config import EncoderConfig
from vimi.models.encoders.base import MultimodalEncoder, pad_rows
from vimi.models.encoders.vision import PatchVisionTower, TransformerBlock, prepare_images
from vimi.prompt import MultimodalPrompt, Text

NULL_SEGMENT, TEXT_SEGMENT, IMAGE_SEGMENT = 0, 1, 2


WORD_PATTERN = re.compile(r"\w+|[^\w\s]")


def byte_tokens(text: str) -> list[int]:
    """The byte-level tokenizer: UTF-8 bytes, vocabulary 256."""
    return list(text.encode("utf-8"))


def word_tokens(text: str, vocab_size: int) -> list[int]:
    """Hashed words: each word or punctuation mark, lowercased, -> crc32 mod vocab_size (stable across runs)."""
    return [zlib.crc32(word.lower().encode("utf-8")) % vocab_size for word in WORD_PATTERN.findall(text)]


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
        return byte_tokens(text) if self.cfg.tokenizer == "bytes" else word_tokens(text, self.vocab_size)

    def num_tokens(self, prompt: MultimodalPrompt) -> int:
        """Condition tokens this prompt becomes (null + text tokens + image patches)."""
        text_tokens = sum(len(self.tokenize(s.text)) for s in prompt.segments if isinstance(s, Text))
        return 1 + text_tokens + len(prompt.images) * self.vision.num_tokens

    def _encode_batch(self, prompts: list[MultimodalPrompt]) -> tuple[Tensor, Tensor]:
        for prompt in prompts:
            self.check_length(self.num_tokens(prompt), prompt)
        device = self.position.device
        images = [image.load() for prompt in prompts for image in prompt.images]
        if images:
            image_tokens = self.vision(prepare_images(images, self.cfg.image_size).to(device))  # [N, P, D]
        segment_type = self.segment_embed.weight  # [3, D]
        rows, next_image = [], 0
        for prompt in prompts:
            pieces = [(self.null_token + segment_type[NULL_SEGMENT])[None]]
            for segment in prompt.segments:
                if isinstance(segment, Text):
                    ids = torch.tensor(self.tokenize(segment.text), dtype=torch.long, device=device)
                    pieces.append(self.text_embed(ids) + segment_type[TEXT_SEGMENT])
                else:
                    pieces.append(image_tokens[next_image] + segment_type[IMAGE_SEGMENT])
                    next_image += 1
            rows.append(torch.cat(pieces))  # [L_i, D]
        x, mask = pad_rows(rows)  # [B, L, D], [B, L]
        x = x + self.position[: x.shape[1]]
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x) * mask[..., None], mask

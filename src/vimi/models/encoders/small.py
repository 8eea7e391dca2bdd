"""SmallMultimodalEncoder: a byte-level text + ViT-patch image transformer, trainable and fast on CPU."""

import torch
from torch import Tensor, nn

from vimi.config import EncoderConfig
from vimi.models.encoders.base import MultimodalEncoder, pad_rows
from vimi.models.encoders.vision import PatchVisionTower, TransformerBlock, prepare_images
from vimi.prompt import MultimodalPrompt, Text

NULL_SEGMENT, TEXT_SEGMENT, IMAGE_SEGMENT = 0, 1, 2


def byte_tokens(text: str) -> list[int]:
    """The byte-level tokenizer: UTF-8 bytes, vocabulary 256."""
    return list(text.encode("utf-8"))


class SmallMultimodalEncoder(MultimodalEncoder):
    """[null token, text bytes and image patch tokens in prompt order] -> a small transformer -> [B, L, dim].

    Every row starts with a learned null token, so an empty prompt still yields one valid token.
    Segment-type embeddings tell text tokens, image tokens and the null token apart.
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        self.out_dim = cfg.dim
        self.byte_embed = nn.Embedding(256, cfg.dim)
        self.vision = PatchVisionTower(cfg.image_size, cfg.image_patch, cfg.dim, cfg.depth, cfg.heads)
        self.segment_embed = nn.Embedding(3, cfg.dim)
        self.null_token = nn.Parameter(torch.randn(cfg.dim) * 0.02)
        self.position = nn.Parameter(torch.randn(cfg.max_tokens, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(cfg.dim, cfg.heads) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        nn.init.normal_(self.byte_embed.weight, std=0.02)
        nn.init.normal_(self.segment_embed.weight, std=0.02)

    def num_tokens(self, prompt: MultimodalPrompt) -> int:
        """Condition tokens this prompt becomes (null + text bytes + image patches)."""
        text_tokens = sum(len(byte_tokens(s.text)) for s in prompt.segments if isinstance(s, Text))
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
                    ids = torch.tensor(byte_tokens(segment.text), dtype=torch.long, device=device)
                    pieces.append(self.byte_embed(ids) + segment_type[TEXT_SEGMENT])
                else:
                    pieces.append(image_tokens[next_image] + segment_type[IMAGE_SEGMENT])
                    next_image += 1
            rows.append(torch.cat(pieces))  # [L_i, D]
        x, mask = pad_rows(rows)  # [B, L, D], [B, L]
        x = x + self.position[: x.shape[1]]
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x) * mask[..., None], mask

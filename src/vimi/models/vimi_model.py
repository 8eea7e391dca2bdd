"""VimiModel: the multimodal encoder, the backbone under EDM preconditioning and the autoencoder, composed.

prompts -> encoder tokens (+ the pooled prompt image) and given frames -> `Condition`;
videos -> autoencoder latents -> the EDM loss of the denoiser (diffusion.edm) over the backbone.
"""

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vimi.condition import Condition
from vimi.config import DiffusionConfig, ModelConfig
from vimi.diffusion import EDMDenoiser, edm_loss
from vimi.models.autoencoders import build_autoencoder
from vimi.models.encoders import build_encoder, prepare_encoder_input
from vimi.models.encoders.vision import fit_image
from vimi.models.registry import BACKBONES
from vimi.models.video_dit import VideoDiT  # noqa: F401  (registers the "video_dit" backbone)
from vimi.prompt import MultimodalPrompt


@dataclass
class PreparedPrompts:
    """What a batch of prompts becomes on the CPU before the model's device work (`prepare_prompts`)."""

    prompts: list[MultimodalPrompt]
    """The prompts with their images read (and dropped, for a text-only model)."""
    encoder_input: Any
    """The encoder's own preparation (`MultimodalEncoder.prepare`), e.g. the small encoder's token layout."""
    pooled: torch.Tensor | None
    """[B, 3*N*N + 1] the mean prompt image's thumbnail (backbone.image_thumbnail = N), or None."""


def prepare_prompts(cfg: ModelConfig, prompts: list[MultimodalPrompt]) -> PreparedPrompts:
    """The prompts' half of `VimiModel.condition`, a function of the config alone, so that a DataLoader
    worker can do it: images read, text tokenized, thumbnails made."""
    prompts = [prompt.drop_images() if cfg.text_only else prompt for prompt in prompts]
    prompts = [prompt.with_images_loaded() for prompt in prompts]  # read once for the encoder and thumbnails
    side = cfg.backbone.image_thumbnail
    return PreparedPrompts(
        prompts,
        prepare_encoder_input(cfg.encoder, prompts),
        prompt_thumbnails(prompts, side) if side else None,
    )


class VimiModel(nn.Module):
    """Prompts -> `Condition` (encoder) -> EDM denoiser over the backbone in the autoencoder's latent space."""

    def __init__(self, cfg: ModelConfig, diffusion: DiffusionConfig):
        super().__init__()
        self.cfg, self.diffusion = cfg, diffusion
        self.encoder = build_encoder(cfg.encoder)
        self.autoencoder = build_autoencoder(cfg.autoencoder)
        self.autoencoder.requires_grad_(False)
        backbone = BACKBONES.get(cfg.backbone.kind)
        self.backbone = backbone(cfg.backbone, self.autoencoder.latent_channels, self.encoder.out_dim)
        # Not registered as a submodule: its only weights are the backbone's, which stay under "backbone.*".
        self.__dict__["denoiser"] = EDMDenoiser(
            self.backbone, diffusion.sigma_data, diffusion.context_residual
        )

    def condition(
        self,
        prompts: list[MultimodalPrompt] | PreparedPrompts,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> Condition:
        """The condition of `prompts` (or what `prepare_prompts` made of them ahead); given frames (pixels
        [B, C, T, H, W] and their mask [B, 1, T, H, W]) move to the diffusion space."""
        prepared = prompts if isinstance(prompts, PreparedPrompts) else prepare_prompts(self.cfg, prompts)
        tokens, mask = self.encoder.encode(prepared.prompts, prepared.encoder_input)
        device = tokens.device
        pooled = prepared.pooled.to(device) if prepared.pooled is not None else None
        if context is None:
            return Condition(tokens, mask.to(device), pooled=pooled)
        if context_mask is None:
            raise ValueError("condition: `context` frames need a `context_mask` [B, 1, T, H, W]")
        with torch.no_grad():
            latent = self.autoencoder.encode(context.to(device))  # [B, C', T', H', W']
        latent_mask = F.interpolate(context_mask.float().to(device), size=latent.shape[2:], mode="nearest")
        latent = latent * latent_mask
        if self.cfg.backbone.context_hold:
            latent = hold_last_given(latent, latent_mask)
        return Condition(tokens, mask.to(device), latent, latent_mask, pooled)

    def forward(
        self,
        videos: torch.Tensor,
        prompts: list[MultimodalPrompt] | PreparedPrompts,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        *,
        sigma: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Per-sample EDM loss [B] of videos [B, C, T, H, W] in [-1, 1]; sigma [B] and noise (the latents'
        shape) are drawn from `generator` unless given."""
        with torch.no_grad():
            x0 = self.autoencoder.encode(videos)  # [B, C', T', H', W']
        cond = self.condition(prompts, context, context_mask)
        return edm_loss(self.denoiser, x0, cond, self.diffusion, generator, sigma, noise)

    def loss(
        self, videos: torch.Tensor, prompts: list[MultimodalPrompt] | PreparedPrompts, *args, **kwargs
    ) -> torch.Tensor:
        """The mean EDM loss of a batch (a scalar); arguments as `forward`."""
        return self(videos, prompts, *args, **kwargs).mean()

    def external_state_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of frozen pretrained parts that load from their own local paths (the
        autoencoder, an encoder's frozen LM or VLM), which checkpoints therefore leave out."""
        return ("autoencoder.", *(f"encoder.{prefix}" for prefix in self.encoder.external_state_prefixes))

    def shard_modules(self) -> list[nn.Module]:
        """Submodules that FSDP2 shards one by one (transformer blocks), before the root."""
        return [*getattr(self.backbone, "blocks", []), *getattr(self.encoder, "blocks", [])]


def prompt_thumbnails(prompts: list[MultimodalPrompt], side: int) -> torch.Tensor:
    """Each prompt's images fitted to side x side and averaged, flattened, with a has-image flag: [B, 3*side^2 + 1]
    (zeros and flag 0 for a prompt without images)."""
    rows = []
    for prompt in prompts:
        if prompt.images:
            pixels = torch.stack([fit_image(image.load(), side, side) for image in prompt.images]).mean(0)
            rows.append(torch.cat([pixels.flatten(), torch.ones(1)]))
        else:
            rows.append(torch.zeros(3 * side * side + 1))
    return torch.stack(rows)


def hold_last_given(context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Context [B, C, T, H, W] with every frame that is not given replaced by the last given frame before it.

    mask [B, 1, T, H, W]: 1 where a frame is given. Frames before the first given one stay as they are (zero).
    """
    given = mask.flatten(3).amax(dim=-1)[:, 0] > 0  # [B, T]
    frames = torch.arange(given.shape[1], device=given.device)
    # Index of the last given frame at or before t (-1: none yet) -> [B, T]
    last = torch.where(given, frames, torch.full_like(frames, -1)).cummax(dim=1).values
    source = last.clamp(min=0)[:, None, :, None, None].expand_as(context)
    held = context.gather(2, source)
    return torch.where((last >= 0)[:, None, :, None, None], held, context)

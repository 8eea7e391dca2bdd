"""VimiModel: the multimodal encoder, the VideoDiT backbone under EDM preconditioning, and the autoencoder."""

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vimi.config import DiffusionConfig, VimiConfig
from vimi.diffusion import (
    EDMDenoiser,
    append_dims,
    edm_loss,
    edm_loss_weight,
    randn_per_sample,
    sample_training_sigmas,
)
from vimi.errors import CheckpointError
from vimi.models.encoders import build_encoder
from vimi.models.encoders.small import PromptLayout, prompt_layout
from vimi.models.encoders.vision import fit_image
from vimi.models.video_dit import VideoDiT
from vimi.prompt import MultimodalPrompt

log = logging.getLogger(__name__)

# State-dict prefixes that inference checkpoints carry; the autoencoder (and any frozen pretrained
# model an encoder names in `external_state_prefixes`) is loaded from its own local path instead.
INFERENCE_PREFIXES = ("encoder.", "backbone.")
# Frozen pretrained submodules of each encoder kind (an encoder may also declare `external_state_prefixes`).
EXTERNAL_ENCODER_PREFIXES = {"llm": ("language_model.",), "hf_vlm": ("model.",)}


class VimiModel(nn.Module):
    """Prompts -> condition tokens (encoder) -> EDM denoiser over VideoDiT in the autoencoder's latent space."""

    def __init__(self, cfg: VimiConfig):
        super().__init__()
        from vimi.models.autoencoders import build_autoencoder

        self.cfg = cfg
        self.encoder = build_encoder(cfg.model.encoder)
        self.autoencoder = build_autoencoder(cfg.model.autoencoder)
        self.autoencoder.requires_grad_(False)
        self.backbone = VideoDiT(cfg.model.backbone, self.autoencoder.latent_channels, self.encoder.out_dim)
        # Not registered as a submodule: its only weights are the backbone's, which stay under "backbone.*".
        self.__dict__["denoiser"] = EDMDenoiser(
            self.backbone, cfg.diffusion.sigma_data, cfg.diffusion.context_residual, cfg.diffusion.sigma_skip
        )

    def condition(
        self,
        prompts: list[MultimodalPrompt],
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
        prepared: "PreparedBatch | None" = None,
    ) -> dict:
        """The diffusion condition for `prompts`; given frames (pixels [B, C, T, H, W]) move to the latent space.

        size: the video's (H, W) in pixels, which reference images (backbone.reference_images) are fitted to.
        prepared: `prepare_batch(cfg, prompts)`, done ahead (in a DataLoader worker), so that here the
        prompts cost only device work; without it the encoder reads them here.
        """
        if prepared is not None and prepared.layout is not None:
            tokens, mask = self.encoder.encode_layout(prepared.layout)
        else:
            tokens, mask = self.encoder.encode(prompts)
        cond = {"tokens": tokens, "mask": mask.to(tokens.device)}
        if self.cfg.model.backbone.reference_images:
            if size is None:
                raise ValueError("condition: reference images need the video `size` (H, W)")
            cond["references"], cond["reference_mask"] = self.reference_clips(prompts, size, tokens.device)
        if self.cfg.model.backbone.image_thumbnail:
            side = self.cfg.model.backbone.image_thumbnail
            thumbnails = prepared.thumbnails if prepared is not None else prompt_thumbnails(prompts, side)
            cond["thumbnails"] = thumbnails.to(tokens.device)
        if context is not None:
            if context_mask is None:
                raise ValueError("condition: `context` frames need a `context_mask` [B, 1, T, H, W]")
            with torch.no_grad():
                latent = self.autoencoder.encode(context.to(tokens.device))  # [B, C', T', H', W']
            latent_mask = F.interpolate(
                context_mask.float().to(latent.device), size=latent.shape[2:], mode="nearest"
            )
            context = latent * latent_mask
            if self.cfg.model.backbone.context_hold:
                context = hold_last_given(context, latent_mask)
            cond["context"] = context
            cond["context_mask"] = latent_mask  # [B, 1, T', H', W']
        return cond

    @torch.no_grad()
    def reference_clips(
        self, prompts: list[MultimodalPrompt], size: tuple[int, int], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each prompt's first `reference_images` images as still latent clips [B, N, C', patch_t, h, w] (zeros
        past a prompt's own images) and their mask [B, N]; N is the batch's largest count (may be 0)."""
        height, width = size
        batch, patch_t = len(prompts), self.cfg.model.backbone.patch_t
        chosen = [prompt.images[: self.cfg.model.backbone.reference_images] for prompt in prompts]
        count = max((len(images) for images in chosen), default=0)
        pixels = torch.zeros(batch, count, 3, height, width)
        mask = torch.zeros(batch, count, dtype=torch.bool, device=device)
        for row, images in enumerate(chosen):
            for column, image in enumerate(images):
                pixels[row, column] = fit_image(image.load(), height, width)
                mask[row, column] = True
        # A still clip that encodes to exactly one latent frame, repeated over one temporal patch.
        autoencoder = self.autoencoder
        still_frames = 1 if autoencoder.causal_time else autoencoder.temporal_compression
        if count == 0:
            channels, _, latent_h, latent_w = autoencoder.latent_shape(still_frames, height, width)
            return torch.zeros(batch, 0, channels, patch_t, latent_h, latent_w, device=device), mask
        clips = pixels.flatten(0, 1)[:, :, None].expand(-1, -1, still_frames, -1, -1)  # [B*N, 3, F, H, W]
        latents = autoencoder.encode(clips.to(device))  # [B*N, C', 1, h, w]
        latents = latents.expand(-1, -1, patch_t, -1, -1).unflatten(0, (batch, count))  # [B, N, C', pt, h, w]
        return latents * mask[:, :, None, None, None, None], mask

    def forward(
        self,
        videos: torch.Tensor,
        prompts: list[MultimodalPrompt],
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        seeds: list[int] | None = None,
        generator: torch.Generator | None = None,
        prepared: "PreparedBatch | None" = None,
    ) -> torch.Tensor:
        """Per-sample EDM loss [B] of videos [B, C, T, H, W] in [-1, 1].

        With `seeds`, sample i's noise level and noise come only from seeds[i] (`training_noise`), so a sample's
        loss does not depend on which batch, rank or accumulation step it lands in (world-size-invariant
        training). prepared: `prepare_batch`'s, made in a DataLoader worker; with its noise, the seeds' noise.
        """
        with torch.no_grad():
            x0 = self.autoencoder.encode(videos)  # [B, C', T', H', W']
        cond = self.condition(prompts, context, context_mask, videos.shape[-2:], prepared)
        if seeds is None:
            return edm_loss(self.denoiser, x0, cond, self.cfg.diffusion, generator)
        if len(seeds) != x0.shape[0]:
            raise ValueError(f"got {len(seeds)} seeds for a batch of {x0.shape[0]}")
        if prepared is not None and prepared.noise is not None:
            if prepared.noise.shape != x0.shape:
                raise ValueError(
                    f"prepared noise {tuple(prepared.noise.shape)} for latents {tuple(x0.shape)}"
                )
            sigma, noise = prepared.sigma, prepared.noise
        else:
            sigma, noise = training_noise(self.cfg.diffusion, seeds, x0.shape)
        sigma, noise = sigma.to(x0.device), noise.to(x0.device, x0.dtype)
        x_noisy = x0 + append_dims(sigma, x0.ndim).to(x0.dtype) * noise
        denoised = self.denoiser(x_noisy, sigma, cond)
        weight = edm_loss_weight(sigma, self.cfg.diffusion.sigma_data, self.cfg.diffusion.sigma_skip)
        return weight * (denoised - x0.float()).pow(2).flatten(1).mean(dim=1)

    def loss(
        self,
        videos: torch.Tensor,
        prompts: list[MultimodalPrompt],
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        seeds: list[int] | None = None,
    ) -> torch.Tensor:
        """The mean EDM loss of a batch (a scalar)."""
        return self(videos, prompts, context, context_mask, seeds=seeds, generator=generator).mean()

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a pipeline checkpoint holds: encoder.* and backbone.*, minus externally loaded parts."""
        return {k: v for k, v in self.state_dict().items() if is_inference_key(self, k)}

    def shard_modules(self) -> list[nn.Module]:
        """Submodules that FSDP2 shards one by one (transformer blocks), before the root."""
        return [*self.backbone.blocks, *getattr(self.encoder, "blocks", [])]


@dataclass
class PreparedBatch:
    """What a batch becomes on the CPU before the model sees it: images read, text tokenized, noise drawn."""

    layout: PromptLayout | None
    """The small encoder's input layout; None for the other encoders, which prepare their own prompts."""
    thumbnails: torch.Tensor | None
    """[B, 3*N*N + 1] with backbone.image_thumbnail = N (see `prompt_thumbnails`); None without it."""
    sigma: torch.Tensor | None = None
    """[B] training noise levels of the batch's seeds (`training_noise`), when the latent shape was given."""
    noise: torch.Tensor | None = None
    """[B, C', T', H', W'] their noise."""


def prepare_batch(
    cfg: VimiConfig,
    prompts: list[MultimodalPrompt],
    seeds: list[int] | None = None,
    latent_shape: tuple[int, ...] | None = None,
) -> PreparedBatch:
    """The CPU work of a training step outside the model, a function of the config alone so that a DataLoader
    worker can do it: the prompts' half of `VimiModel.condition`, and with `seeds` and the latents' shape
    [C', T', H', W'], their training noise (~30 ms of one core for 256 clips of 8x32x32)."""
    prompts = [
        prompt.with_images_loaded() for prompt in prompts
    ]  # read once, for the layout and the thumbnails
    layout = prompt_layout(cfg.model.encoder, prompts) if cfg.model.encoder.kind == "small" else None
    side = cfg.model.backbone.image_thumbnail
    prepared = PreparedBatch(layout, prompt_thumbnails(prompts, side) if side else None)
    if seeds is not None and latent_shape is not None:
        prepared.sigma, prepared.noise = training_noise(cfg.diffusion, seeds, (len(seeds), *latent_shape))
    return prepared


def training_noise(
    cfg: DiffusionConfig, seeds: list[int], shape: tuple[int, ...] | torch.Size
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise levels [B] and noise `shape` [B, ...] on the CPU, sample i's from seeds[i] alone."""
    sigma = torch.cat(
        [sample_training_sigmas(1, cfg, shape, "cpu", torch.Generator().manual_seed(seed)) for seed in seeds]
    )
    # A second stream (seed + 1 is another sample's sigma seed, so offset far instead).
    return sigma, randn_per_sample(shape, [seed ^ 0x5EED5EED for seed in seeds])


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


def is_external_key(model: VimiModel, key: str) -> bool:
    """True for frozen pretrained weights that load from their own local path (autoencoder, frozen LM/VLM)."""
    kind = model.cfg.model.encoder.kind
    prefixes = getattr(model.encoder, "external_state_prefixes", EXTERNAL_ENCODER_PREFIXES.get(kind, ()))
    return key.startswith(("autoencoder.", *(f"encoder.{p}" for p in prefixes)))


def is_inference_key(model: VimiModel, key: str) -> bool:
    """True for state-dict keys that belong in model.safetensors (encoder.*, backbone.*, not external)."""
    return key.startswith(INFERENCE_PREFIXES) and not is_external_key(model, key)


def trainable_state_dict(model: VimiModel) -> dict[str, torch.Tensor]:
    """The state a training checkpoint must hold: everything but the externally loaded frozen parts."""
    return {k: v for k, v in model.state_dict().items() if not is_external_key(model, k)}


def load_inference_weights(
    model: VimiModel, weights: dict[str, torch.Tensor], source: str, hint: str = "", allow_new: bool = False
) -> None:
    """Load a checkpoint's inference weights (model.safetensors) into `model`, or CheckpointError naming `source`.

    allow_new: weights that a checkpoint may lack (`VideoDiT.added_module_prefixes`) may be absent, and keep
    their initialisation: the model grows (stage 2 from a stage-1 checkpoint).
    """
    expected = set(model.inference_state_dict())
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if allow_new:
        added = tuple(f"backbone.{prefix}" for prefix in model.backbone.added_module_prefixes())
        if grown := [key for key in missing if key.startswith(added)]:
            log.info("%d new weights keep their initialisation (e.g. %s)", len(grown), grown[0])
        missing = [key for key in missing if not key.startswith(added)]
    if missing or unexpected:
        problem = f"{len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} unexpected key(s) {unexpected[:3]}"
    else:
        try:
            model.load_state_dict(weights, strict=False)
            return
        except RuntimeError as err:  # same names, other shapes (e.g. another width)
            problem = str(err).strip().splitlines()[-1].strip()
    raise CheckpointError(f"{source}: weights do not match this config's model ({problem}){hint}")


def build_model(cfg: VimiConfig) -> VimiModel:
    """A VimiModel for `cfg` with freshly initialised trainable weights (load a checkpoint on top)."""
    return VimiModel(cfg)

"""Autoencoders between pixel videos [B, 3, T, H, W] in [-1, 1] and the space the diffusion runs in.

Identity (pixel space), a diffusers image AutoencoderKL applied frame by frame, or a diffusers 3D video
VAE. All are frozen. The latent normalisation z = (raw - shift) * scale lives in the base class only.
"""

from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from vimi.config import AutoencoderConfig
from vimi.errors import ConfigError, DataError
from vimi.utils.files import read_json


class Autoencoder(nn.Module):
    """Frozen pixel <-> latent map; subclasses implement the raw encode/decode, this class the scaling."""

    temporal_compression: int = 1
    spatial_compression: int = 1
    causal_time: bool = False
    """Causal video VAEs keep the first frame alone: T = 1 + temporal_compression * k."""

    def __init__(self, latent_channels: int, shift: torch.Tensor | float, scale: torch.Tensor | float):
        super().__init__()
        self.latent_channels = latent_channels
        shape = (1, latent_channels, 1, 1, 1)
        shift_tensor = torch.as_tensor(shift, dtype=torch.float32).expand(latent_channels).reshape(shape)
        scale_tensor = torch.as_tensor(scale, dtype=torch.float32).expand(latent_channels).reshape(shape)
        # Not persistent: derived from the autoencoder's own config, never saved with the generator.
        self.register_buffer("latent_shift", shift_tensor.clone(), persistent=False)
        self.register_buffer("latent_scale", scale_tensor.clone(), persistent=False)

    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels [B, 3, T, H, W] -> normalised latents [B, latent_channels, t, h, w] (float32)."""
        self.latent_shape(*x.shape[2:])  # validates the size
        return (self.encode_raw(x).float() - self.latent_shift) * self.latent_scale

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, latent_channels, t, h, w] -> pixels [B, 3, T, H, W] (float32)."""
        return self.decode_raw(z.float() / self.latent_scale + self.latent_shift).float()

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, t, h, w) of the latents of a video of the given size; ConfigError if the size does not fit."""
        sc, tc = self.spatial_compression, self.temporal_compression
        frames_ok = (num_frames - 1) % tc == 0 if self.causal_time else num_frames % tc == 0
        if not frames_ok or height % sc or width % sc:
            frames_rule = f"1 + {tc}*k" if self.causal_time else f"a multiple of {tc}"
            raise ConfigError(
                f"{type(self).__name__}: a video of (T, H, W)=({num_frames}, {height}, {width}) does not fit; "
                f"T must be {frames_rule} and H, W multiples of {sc} (set data.num_frames/height/width)"
            )
        frames = 1 + (num_frames - 1) // tc if self.causal_time else num_frames // tc
        return self.latent_channels, frames, height // sc, width // sc


class IdentityAutoencoder(Autoencoder):
    """Pixel-space diffusion: the latents are the pixels (times an optional scale)."""

    def __init__(self, channels: int = 3, scaling_factor: float = 1.0):
        super().__init__(channels, shift=0.0, scale=scaling_factor)

    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return z


def _check_model_folder(path: str, kind: str) -> dict:
    folder = Path(path)
    config_file = folder / "config.json"
    if not path or not config_file.is_file():
        raise ConfigError(
            f"model.autoencoder.path={path!r}: no diffusers model folder (config.json) there; "
            f"kind={kind} needs a local folder saved with save_pretrained (weights cannot be downloaded)"
        )
    try:
        return read_json(config_file, "diffusers model config")
    except DataError as err:
        raise ConfigError(f"model.autoencoder.path={path!r}: {err}") from None


class DiffusersKLAutoencoder(Autoencoder):
    """A diffusers image AutoencoderKL applied frame by frame (time folded into the batch)."""

    def __init__(self, path: str, scaling_factor: float = 0.0, frames_per_batch: int = 32):
        from diffusers import AutoencoderKL

        _check_model_folder(path, "kl")
        vae = AutoencoderKL.from_pretrained(path, local_files_only=True).eval().requires_grad_(False)
        config = vae.config
        scale = scaling_factor if scaling_factor > 0 else config.scaling_factor
        super().__init__(config.latent_channels, shift=config.shift_factor or 0.0, scale=scale)
        self.vae = vae
        self.spatial_compression = 2 ** (len(config.block_out_channels) - 1)
        self.frames_per_batch = frames_per_batch

    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        frames = rearrange(x, "b c t h w -> (b t) c h w")  # [B, C, T, H, W] -> [B*T, C, H, W]
        dtype = next(self.vae.parameters()).dtype
        latents = torch.cat(
            [
                self.vae.encode(chunk.to(dtype)).latent_dist.mode()
                for chunk in frames.split(self.frames_per_batch)
            ]
        )  # [B*T, c, h, w]
        return rearrange(latents, "(b t) c h w -> b c t h w", b=x.shape[0])  # -> [B, c, T, h, w]

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        latents = rearrange(z, "b c t h w -> (b t) c h w")  # [B, c, T, h, w] -> [B*T, c, h, w]
        dtype = next(self.vae.parameters()).dtype
        frames = torch.cat(
            [self.vae.decode(chunk.to(dtype)).sample for chunk in latents.split(self.frames_per_batch)]
        )  # [B*T, C, H, W]
        return rearrange(frames, "(b t) c h w -> b c t h w", b=z.shape[0])  # -> [B, C, T, H, W]


def _video_vae_classes() -> dict[str, type]:
    """The diffusers 3D VAEs we support, by the `_class_name` their config.json carries (all causal in time)."""
    import diffusers

    names = [
        "AutoencoderKLWan",
        "AutoencoderKLCogVideoX",
        "AutoencoderKLLTXVideo",
        "AutoencoderKLHunyuanVideo",
        "AutoencoderKLMochi",
    ]
    return {name: getattr(diffusers, name) for name in names if hasattr(diffusers, name)}


class DiffusersVideoAutoencoder(Autoencoder):
    """A diffusers 3D video VAE (Wan, CogVideoX, LTX-Video, HunyuanVideo, Mochi) over [B, C, T, H, W]."""

    causal_time = True

    def __init__(self, path: str, scaling_factor: float = 0.0):
        config = _check_model_folder(path, "video")
        classes = _video_vae_classes()
        class_name = config.get("_class_name", "")
        if class_name not in classes:
            raise ConfigError(
                f"model.autoencoder.path={path!r} holds a {class_name or 'unnamed'} model; "
                f"kind=video supports {', '.join(classes)}"
            )
        vae = classes[class_name].from_pretrained(path, local_files_only=True).eval().requires_grad_(False)
        config = vae.config
        channels = config.get("latent_channels") or config.get("z_dim")
        # Per-channel statistics (Wan, LTX, Mochi) normalise first; the scalar factor (CogVideoX) after.
        factor = scaling_factor if scaling_factor > 0 else (config.get("scaling_factor") or 1.0)
        mean, std = config.get("latents_mean"), config.get("latents_std")
        shift = torch.tensor(mean, dtype=torch.float32) if mean is not None else 0.0
        scale = factor / torch.tensor(std, dtype=torch.float32) if std is not None else factor
        super().__init__(channels, shift=shift, scale=scale)
        self.vae = vae
        self.temporal_compression, self.spatial_compression = _video_compression(vae)

    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        dtype = next(self.vae.parameters()).dtype
        return self.vae.encode(x.to(dtype)).latent_dist.mode()  # [B, c, t, h, w]

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        dtype = next(self.vae.parameters()).dtype
        return self.vae.decode(z.to(dtype)).sample  # [B, C, T, H, W]


def _video_compression(vae: nn.Module) -> tuple[int, int]:
    """(temporal, spatial) compression of a diffusers video VAE, from its attributes or config."""
    config = vae.config
    temporal = getattr(vae, "temporal_compression_ratio", None) or config.get("temporal_compression_ratio")
    if temporal is None and config.get("temperal_downsample") is not None:  # Wan spells it this way
        temporal = 2 ** sum(config["temperal_downsample"])
    spatial = getattr(vae, "spatial_compression_ratio", None)
    if spatial is None:
        spatial = 2 ** (len(config["block_out_channels"]) - 1)
    return int(temporal or 1), int(spatial)


def compression_from_config(cfg: AutoencoderConfig) -> tuple[int, int, bool] | None:
    """(temporal, spatial compression, causal_time) from the config.json alone, no weights loaded; None if unsaid."""
    if cfg.kind == "identity":
        return 1, 1, False
    config = _check_model_folder(cfg.path, cfg.kind)
    if cfg.kind == "kl":
        blocks = config.get("block_out_channels")
        return (1, 2 ** (len(blocks) - 1), False) if isinstance(blocks, list) and blocks else None
    # Video VAEs: only explicit ratios; others derive them in code, known once the model is built.
    temporal, spatial = config.get("temporal_compression_ratio"), config.get("spatial_compression_ratio")
    if isinstance(temporal, int) and isinstance(spatial, int):
        return temporal, spatial, DiffusersVideoAutoencoder.causal_time
    return None


def build_autoencoder(cfg: AutoencoderConfig) -> Autoencoder:
    """The autoencoder named by cfg.kind, frozen and in eval mode."""
    if cfg.kind == "identity":
        return IdentityAutoencoder(
            scaling_factor=cfg.scaling_factor if cfg.scaling_factor > 0 else 1.0
        ).eval()
    if cfg.kind == "kl":
        return DiffusersKLAutoencoder(cfg.path, cfg.scaling_factor).eval()
    if cfg.kind == "video":
        return DiffusersVideoAutoencoder(cfg.path, cfg.scaling_factor).eval()
    raise ConfigError(f"model.autoencoder.kind: unknown kind {cfg.kind!r}; choose identity, kl or video")

"""EDM preconditioning, training loss and noise levels (Karras et al. 2022, "Elucidating the Design Space").

The noise level is shifted with the size of the video as in Snap Video (Menapace et al. 2024, Sec. 3.2):
a video with more values (T*H*W) has more redundancy, so the same sigma destroys less of it; shifting
log-sigma by log(sqrt(T*H*W / reference)) keeps the signal-to-noise ratio comparable across sizes.
Training (`sample_training_sigmas`) and sampling (`sampling_sigmas`) apply the same shift.
"""

import math

import torch
from torch import nn

from vimi.condition import Condition
from vimi.config import DiffusionConfig
from vimi.diffusion.samplers import karras_sigmas


def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """Append singleton dimensions to x [B] until it has `target_dims` dimensions."""
    return x.reshape(*x.shape, *([1] * (target_dims - x.ndim)))


def edm_preconditioning(
    sigma: torch.Tensor, sigma_data: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_skip, c_out, c_in, c_noise) of EDM Table 1 for noise levels sigma.

    c_out is written as the standard deviation of the network's target (x0 - c_skip x) / c_out under EDM's
    data model, sqrt((1 - c_skip)^2 sigma_data^2 + c_skip^2 sigma^2), which equals EDM's
    sigma sigma_data / sqrt(sigma^2 + sigma_data^2).
    """
    sigma_sq, data_sq = sigma**2, sigma_data**2
    c_skip = data_sq / (sigma_sq + data_sq)
    c_out = ((1 - c_skip) ** 2 * data_sq + c_skip**2 * sigma_sq).sqrt()
    c_in = 1 / (sigma_sq + data_sq).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = 1 / c_out^2 = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2, so the network's
    effective target has unit variance at every noise level (EDM Eq. 8)."""
    return edm_preconditioning(sigma, sigma_data)[1].pow(-2)


def noise_shift(shape: tuple[int, ...] | torch.Size, reference_size: int) -> float:
    """Snap Video shift of log-sigma for a [B, C, T, H, W] input: log(sqrt(T*H*W / reference)); 0 if disabled."""
    if reference_size <= 0:
        return 0.0
    values = math.prod(shape[2:])  # T*H*W of the diffusion-space video
    return 0.5 * math.log(values / reference_size)


class EDMDenoiser(nn.Module):
    """D(x; sigma) = c_skip x + c_out F(c_in x; c_noise, cond): wraps a backbone F(x, c_noise, cond).

    The condition goes to the backbone as it is. context_residual=True denoises the difference from
    cond.context (the given frames, held over the later ones): D(x) = context + D'(x - context), so that
    what the given frames already show is the default and the network learns only what changes.
    """

    def __init__(self, net: nn.Module, sigma_data: float, context_residual: bool = False):
        super().__init__()
        self.net = net
        self.sigma_data = sigma_data
        self.context_residual = context_residual

    def forward(self, x_noisy: torch.Tensor, sigma: torch.Tensor | float, cond: Condition) -> torch.Tensor:
        """x_noisy [B, C, T, H, W], sigma [B] (or a scalar) -> x0_hat [B, C, T, H, W] (float32)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x_noisy.device)
        sigma = sigma.float().expand(x_noisy.shape[0]) if sigma.ndim == 0 else sigma.float()
        c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, self.sigma_data)
        x32 = x_noisy.float()
        prior = cond.context.float() if self.context_residual and cond.context is not None else None
        if prior is not None:
            x32 = x32 - prior
        net_out = self.net((append_dims(c_in, x32.ndim) * x32).to(x_noisy.dtype), c_noise, cond)
        denoised = append_dims(c_skip, x32.ndim) * x32 + append_dims(c_out, x32.ndim) * net_out.float()
        return denoised if prior is None else denoised + prior


def sample_training_sigmas(
    batch: int,
    cfg: DiffusionConfig,
    shape: tuple[int, ...] | torch.Size,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Log-normal training noise levels [B]: exp(N(p_mean + shift, p_std^2)), shift from the video size."""
    normal = torch.randn(batch, generator=generator, device=device)
    return (normal * cfg.p_std + cfg.p_mean + noise_shift(shape, cfg.shift_reference_size)).exp()


def edm_loss(
    denoiser: nn.Module,
    x0: torch.Tensor,
    cond: Condition,
    cfg: DiffusionConfig,
    generator: torch.Generator | None = None,
    sigma: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample EDM loss [B]: lambda(sigma) * mean ||D(x0 + sigma n; sigma) - x0||^2 (EDM Eq. 2 and 8).

    sigma [B] and noise (x0's shape) are drawn here from `generator` unless given (the trainer draws each
    sample's from its own seed, so a sample's loss does not depend on its batch).
    """
    if sigma is None:
        sigma = sample_training_sigmas(x0.shape[0], cfg, x0.shape, x0.device, generator)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    if noise.shape != x0.shape or sigma.shape != x0.shape[:1]:
        raise ValueError(
            f"edm_loss: sigma {tuple(sigma.shape)} and noise {tuple(noise.shape)} for x0 {tuple(x0.shape)}"
        )
    sigma, noise = sigma.to(x0.device), noise.to(x0.device, x0.dtype)
    x_noisy = x0 + append_dims(sigma, x0.ndim).to(x0.dtype) * noise
    denoised = denoiser(x_noisy, sigma, cond)
    return edm_loss_weight(sigma, cfg.sigma_data) * (denoised - x0.float()).pow(2).flatten(1).mean(dim=1)


def sampling_sigmas(
    steps: int, cfg: DiffusionConfig, shape: tuple[int, ...] | torch.Size, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Karras schedule [steps + 1] (float64, ending in 0) with the same size shift as training."""
    scale = math.exp(noise_shift(shape, cfg.shift_reference_size))
    return karras_sigmas(steps, cfg.sigma_min * scale, cfg.sigma_max * scale, cfg.rho, device=device)

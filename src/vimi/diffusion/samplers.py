"""ODE samplers over a denoiser function (k-diffusion style free functions; Karras et al. 2022).

Each sampler takes model_fn(x, sigma [B], **extra_args) -> x0_hat, a start x = noise * sigmas[0] and a
decreasing schedule ending in 0. The state and all sigma arithmetic are float64 (as NVlabs/edm), the
model is called in the input's dtype.
"""

from collections.abc import Callable

import torch
from tqdm.auto import trange

ModelFn = Callable[..., torch.Tensor]


def karras_sigmas(
    n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The EDM noise schedule (Eq. 5): n levels from sigma_max to sigma_min, then 0; float64 [n + 1]."""
    if n < 1:
        raise ValueError(f"karras_sigmas: need at least 1 step, got n={n}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(device)


def _denoise(model_fn: ModelFn, x: torch.Tensor, sigma: torch.Tensor, dtype: torch.dtype, extra_args: dict):
    """Call the model on x (float64 state) in `dtype` with a per-sample sigma; return float64 x0_hat."""
    sigma_batch = sigma.to(torch.float32).expand(x.shape[0])
    return model_fn(x.to(dtype), sigma_batch, **extra_args).to(torch.float64)


def _prepare(x: torch.Tensor, sigmas: torch.Tensor):
    return x.to(torch.float64), sigmas.to(device=x.device, dtype=torch.float64)


def sample_euler(
    model_fn: ModelFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    disable: bool = True,
) -> torch.Tensor:
    """First-order Euler steps of the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma
    (Euler ancestral without fresh noise: eta = 0 steps all the way down to sigma_next)."""
    return sample_euler_ancestral(model_fn, x, sigmas, extra_args, callback, disable, eta=0.0)


@torch.no_grad()
def sample_heun(
    model_fn: ModelFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    disable: bool = True,
) -> torch.Tensor:
    """Heun's 2nd-order method (EDM Algorithm 2, deterministic); the last step to sigma=0 is Euler."""
    extra_args, dtype = extra_args or {}, x.dtype
    x, sigmas = _prepare(x, sigmas)
    for i in trange(len(sigmas) - 1, disable=disable, desc="heun"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(model_fn, x, sigma, dtype, extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "denoised": denoised})
        slope = (x - denoised) / sigma
        x_euler = x + slope * (sigma_next - sigma)
        if sigma_next == 0:
            x = x_euler
            continue
        slope_next = (x_euler - _denoise(model_fn, x_euler, sigma_next, dtype, extra_args)) / sigma_next
        x = x + (slope + slope_next) / 2 * (sigma_next - sigma)
    return x.to(dtype)


@torch.no_grad()
def sample_dpmpp_2m(
    model_fn: ModelFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    disable: bool = True,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), multistep 2nd order in t = -log(sigma)."""
    extra_args, dtype = extra_args or {}, x.dtype
    x, sigmas = _prepare(x, sigmas)
    old_denoised = None
    for i in trange(len(sigmas) - 1, disable=disable, desc="dpmpp_2m"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(model_fn, x, sigma, dtype, extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "denoised": denoised})
        if sigma_next == 0:
            x = denoised
        else:
            h = sigma.log() - sigma_next.log()  # t_next - t with t = -log(sigma)
            estimate = denoised
            if old_denoised is not None:
                r = (sigmas[i - 1].log() - sigma.log()) / h  # h_last / h
                estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_next / sigma) * x - torch.expm1(-h) * estimate
        old_denoised = denoised
    return x.to(dtype)


def ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float = 1.0):
    """(sigma_down, sigma_up): a step to sigma_to split into a deterministic step down and fresh noise up."""
    sigma_up = torch.minimum(
        sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2).sqrt()
    )
    return (sigma_to**2 - sigma_up**2).sqrt(), sigma_up


@torch.no_grad()
def sample_euler_ancestral(
    model_fn: ModelFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    disable: bool = True,
    noise_sampler: Callable[[int], torch.Tensor] | None = None,
    eta: float = 1.0,
) -> torch.Tensor:
    """Euler ancestral (k-diffusion): each step goes down to sigma_down, then adds fresh noise of sigma_up.

    The fresh noise re-randomises what an imperfect denoiser got wrong, so errors do not accumulate
    along the trajectory as they do in the deterministic ODE samplers. noise_sampler(i) gives step i's
    standard normal noise like x (default: torch.randn_like).
    """
    extra_args, dtype = extra_args or {}, x.dtype
    x, sigmas = _prepare(x, sigmas)
    for i in trange(len(sigmas) - 1, disable=disable, desc="euler_ancestral" if eta else "euler"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(model_fn, x, sigma, dtype, extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "denoised": denoised})
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta) if eta else (sigma_next, 0.0)
        x = x + (x - denoised) / sigma * (sigma_down - sigma)
        if sigma_up > 0:
            noise = noise_sampler(i) if noise_sampler is not None else torch.randn_like(x)
            x = x + noise.to(x) * sigma_up
    return x.to(dtype)


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "euler_ancestral": sample_euler_ancestral,
}
STOCHASTIC_SAMPLERS = frozenset({"euler_ancestral"})
"""Samplers that take a `noise_sampler` (fresh noise at every step)."""

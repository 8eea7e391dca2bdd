"""Samplers recover the data distribution when driven by the exact denoiser of Gaussian data."""

import pytest
import torch

from vimi.diffusion import karras_sigmas, sample_dpmpp_2m, sample_euler, sample_heun
from vimi.diffusion.samplers import ancestral_step, sample_euler_ancestral

DATA_STD = 0.5


def gaussian_denoiser(x, sigma):
    """E[x0 | x] for x0 ~ N(0, s^2): x s^2 / (s^2 + sigma^2)."""
    sigma = sigma.view(-1, *([1] * (x.ndim - 1)))
    return x * DATA_STD**2 / (DATA_STD**2 + sigma**2)


def test_karras_sigmas_endpoints_and_order():
    sigmas = karras_sigmas(18, 0.002, 80.0, 7.0)
    assert sigmas.shape == (19,) and sigmas.dtype == torch.float64
    assert sigmas[0].item() == pytest.approx(80.0) and sigmas[-2].item() == pytest.approx(0.002)
    assert sigmas[-1] == 0 and torch.all(torch.diff(sigmas) < 0)


@pytest.mark.parametrize(
    ("sampler", "steps"),
    [(sample_euler, 256), (sample_heun, 48), (sample_dpmpp_2m, 48), (sample_euler_ancestral, 1024)],
)
def test_sampler_recovers_data_variance(sampler, steps):
    sigmas = karras_sigmas(steps, 0.002, 80.0, 7.0)
    noise = torch.randn(8, 1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    calls = []
    samples = sampler(gaussian_denoiser, noise * sigmas[0], sigmas, callback=calls.append)
    assert samples.dtype == torch.float32 and len(calls) == steps
    variance = samples.var().item()
    assert abs(variance / DATA_STD**2 - 1) < 0.05, variance


@pytest.mark.parametrize(("sampler", "min_ratio"), [(sample_heun, 3.0), (sample_dpmpp_2m, 3.0)])
def test_second_order_samplers_converge_quadratically(sampler, min_ratio):
    # The exact ODE maps x(sigma_max) linearly to x(0) = x * s / sqrt(s^2 + sigma_max^2); compare gains.
    exact_gain = DATA_STD / (DATA_STD**2 + 80.0**2) ** 0.5
    errors = []
    for steps in (32, 64):
        sigmas = karras_sigmas(steps, 0.002, 80.0, 7.0)
        gain = sampler(gaussian_denoiser, torch.ones(1, 1, dtype=torch.float64), sigmas).item()
        errors.append(abs(gain / exact_gain - 1))
    assert errors[0] / errors[1] > min_ratio, errors  # doubling the steps cuts a 2nd-order error ~4x


def test_extra_args_reach_the_model():
    seen = {}

    def model_fn(x, sigma, cond):
        seen["cond"] = cond
        assert sigma.shape == (x.shape[0],)
        return torch.zeros_like(x)

    sample_heun(model_fn, torch.randn(3, 2), karras_sigmas(2, 0.1, 1.0), extra_args={"cond": "c"})
    assert seen["cond"] == "c"


def test_ancestral_step_keeps_the_target_variance_and_uses_the_given_noise():
    sigma_from, sigma_to = torch.tensor(2.0, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
    down, up = ancestral_step(sigma_from, sigma_to)
    assert down**2 + up**2 == pytest.approx(0.25) and 0 < down < sigma_to
    assert ancestral_step(sigma_from, sigma_to, eta=0.0) == (sigma_to, 0.0)
    # A deterministic noise sampler makes the run reproducible; a different one changes the sample.
    sigmas = karras_sigmas(8, 0.002, 80.0, 7.0)
    start = torch.randn(2, 3, generator=torch.Generator().manual_seed(0)) * 80.0

    def noise_of(seed):
        return lambda step: torch.randn(2, 3, generator=torch.Generator().manual_seed(seed * 100 + step))

    one = sample_euler_ancestral(gaussian_denoiser, start, sigmas, noise_sampler=noise_of(1))
    again = sample_euler_ancestral(gaussian_denoiser, start, sigmas, noise_sampler=noise_of(1))
    other = sample_euler_ancestral(gaussian_denoiser, start, sigmas, noise_sampler=noise_of(2))
    assert torch.equal(one, again) and not torch.allclose(one, other)

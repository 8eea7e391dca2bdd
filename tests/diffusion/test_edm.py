"""EDM preconditioning, loss and the Snap Video noise shift."""

import math

import pytest
import torch

from vimi.condition import Condition
from vimi.config import DiffusionConfig
from vimi.diffusion import (
    EDMDenoiser,
    edm_loss,
    edm_preconditioning,
    noise_shift,
    sample_training_sigmas,
    sampling_sigmas,
)


def test_c_skip_to_one_and_c_out_to_zero_as_sigma_vanishes():
    sigma = torch.tensor([1e-1, 1e-3, 1e-6], dtype=torch.float64)
    c_skip, c_out, c_in, _ = edm_preconditioning(sigma, sigma_data=0.5)
    assert torch.all(torch.diff(c_skip) > 0) and c_skip[-1] > 1 - 1e-10
    assert torch.all(torch.diff(c_out) < 0) and c_out[-1] < 1e-5
    torch.testing.assert_close(c_in[-1], torch.tensor(2.0, dtype=torch.float64))


def test_large_sigma_predicts_the_network_output():
    c_skip, c_out, _, c_noise = edm_preconditioning(torch.tensor([1e4]), sigma_data=0.5)
    assert c_skip.item() < 1e-8
    assert abs(c_out.item() - 0.5) < 1e-4
    assert abs(c_noise.item() - math.log(1e4) / 4) < 1e-5


class ZeroNet(torch.nn.Module):
    def forward(self, x, c_noise, cond):
        return torch.zeros_like(x)


def _cond(batch, context=None):
    if context is None:
        return Condition(torch.zeros(batch, 1, 1), torch.ones(batch, 1, dtype=torch.bool))
    return Condition(
        torch.zeros(batch, 1, 1),
        torch.ones(batch, 1, dtype=torch.bool),
        context,
        torch.ones_like(context[:, :1]),
    )


def test_loss_of_zero_network_matches_closed_form():
    # With F = 0, D = c_skip (x0 + sigma n); the weighted error is then data-independent in expectation.
    denoiser = EDMDenoiser(ZeroNet(), sigma_data=0.5)
    x0 = torch.randn(4096, 1, 1, 2, 2) * 0.5
    loss = edm_loss(denoiser, x0, _cond(4096), DiffusionConfig(), generator=torch.Generator().manual_seed(0))
    assert loss.shape == (4096,)
    # E[loss] = lambda * (c_skip^2 sigma^2 + (1 - c_skip)^2 sd^2) = 1 for every sigma when data var = sd^2.
    assert abs(loss.mean().item() - 1.0) < 0.05


def test_loss_with_given_sigma_and_noise_is_the_closed_form_and_checks_their_shapes():
    denoiser = EDMDenoiser(ZeroNet(), sigma_data=0.5)
    x0, noise = torch.randn(3, 1, 1, 2, 2), torch.randn(3, 1, 1, 2, 2)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    c_skip, c_out, _, _ = edm_preconditioning(sigma, 0.5)
    expected = (c_skip.view(-1, 1, 1, 1, 1) * (x0 + sigma.view(-1, 1, 1, 1, 1) * noise) - x0) / c_out.view(
        -1, 1, 1, 1, 1
    )
    loss = edm_loss(denoiser, x0, _cond(3), DiffusionConfig(), sigma=sigma, noise=noise)
    torch.testing.assert_close(loss, expected.pow(2).flatten(1).mean(1))
    with pytest.raises(ValueError, match="noise"):
        edm_loss(denoiser, x0, _cond(3), DiffusionConfig(), sigma=sigma, noise=noise[:2])


def test_preconditioning_is_edm_table_1():
    sigma = torch.tensor([1e-4, 0.05, 0.5, 2.0, 40.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, 0.5)
    torch.testing.assert_close(c_skip, 0.25 / (sigma**2 + 0.25))
    torch.testing.assert_close(c_out, sigma * 0.5 / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(c_in, 1 / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(c_noise, sigma.log() / 4)


def test_noise_shift_follows_video_size():
    assert noise_shift((1, 3, 8, 32, 32), 0) == 0.0
    assert noise_shift((1, 3, 8, 32, 32), 8 * 32 * 32) == 0.0
    assert math.isclose(noise_shift((1, 3, 16, 64, 64), 8 * 32 * 32), 0.5 * math.log(8))


def test_train_and_sampling_shift_agree():
    cfg = DiffusionConfig(shift_reference_size=4 * 16 * 16)
    shape = (2, 3, 16, 32, 32)  # 16x the reference -> sigmas x4
    sigmas = sampling_sigmas(10, cfg, shape)
    assert sigmas.dtype == torch.float64 and sigmas[-1] == 0
    assert math.isclose(sigmas[0].item(), cfg.sigma_max * 4, rel_tol=1e-9)
    assert math.isclose(sigmas[-2].item(), cfg.sigma_min * 4, rel_tol=1e-9)
    train = sample_training_sigmas(20000, cfg, shape, generator=torch.Generator().manual_seed(0))
    assert abs(train.log().mean().item() - (cfg.p_mean + math.log(4))) < 0.05
    assert abs(train.log().std().item() - cfg.p_std) < 0.05


def test_context_residual_denoises_the_difference_from_the_held_frames():
    context = torch.randn(2, 3, 4, 4, 4)
    x0 = context.clone()
    x0[:, :, 1:, :2] += 0.7  # what changes after the given frame
    noisy = x0 + 0.3 * torch.randn_like(x0)
    sigma = torch.full((2,), 0.3)
    residual = EDMDenoiser(ZeroNet(), sigma_data=0.5, context_residual=True)
    plain = EDMDenoiser(ZeroNet(), sigma_data=0.5)
    c_skip = edm_preconditioning(sigma, 0.5)[0][0]
    # F = 0: D = context + c_skip (x - context) instead of c_skip x.
    torch.testing.assert_close(
        residual(noisy, sigma, _cond(2, context)), context + c_skip * (noisy - context)
    )
    torch.testing.assert_close(plain(noisy, sigma, _cond(2, context)), c_skip * noisy)
    # So at high noise a network that knows nothing already predicts "nothing moves"...
    far = EDMDenoiser(ZeroNet(), sigma_data=0.5, context_residual=True)(
        x0 + 80 * torch.randn_like(x0), torch.full((2,), 80.0), _cond(2, context)
    )
    assert (far - context).abs().max() < 0.05
    # ...and without given frames the option changes nothing.
    torch.testing.assert_close(residual(noisy, sigma, _cond(2)), plain(noisy, sigma, _cond(2)))

"""EDM preconditioning, loss and the Snap Video noise shift."""

import math

import pytest
import torch

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
    def forward(self, x, c_noise, tokens, mask, context=None, context_mask=None):
        return torch.zeros_like(x)


@pytest.mark.parametrize("sigma_skip", [None, 0.05])
def test_loss_of_zero_network_matches_closed_form(sigma_skip):
    # With F = 0, D = c_skip (x0 + sigma n); the weighted error is then data-independent in expectation.
    denoiser = EDMDenoiser(ZeroNet(), sigma_data=0.5, sigma_skip=sigma_skip)
    x0 = torch.randn(4096, 1, 1, 2, 2) * 0.5
    cond = {"tokens": torch.zeros(4096, 1, 1), "mask": torch.ones(4096, 1, dtype=torch.bool)}
    cfg = DiffusionConfig(sigma_skip=sigma_skip)
    loss = edm_loss(denoiser, x0, cond, cfg, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (4096,)
    # E[loss] = lambda * (c_skip^2 sigma^2 + (1 - c_skip)^2 sd^2) = 1 for every sigma when data var = sd^2.
    assert abs(loss.mean().item() - 1.0) < 0.05


def test_sigma_skip_predicts_x0_above_it_and_passes_the_input_below():
    sigma = torch.tensor([1e-4, 0.05, 0.5, 2.0, 40.0], dtype=torch.float64)
    edm = edm_preconditioning(sigma, 0.5)
    closed_form = (0.25 / (sigma**2 + 0.25), sigma * 0.5 / (sigma**2 + 0.25).sqrt())  # EDM Table 1
    torch.testing.assert_close(edm[:2], closed_form)
    torch.testing.assert_close(edm_preconditioning(sigma, 0.5, sigma_skip=0.5), edm)
    c_skip, c_out, c_in, _ = edm_preconditioning(sigma, 0.5, sigma_skip=0.05)
    torch.testing.assert_close(c_in, edm[2])  # the network's input is scaled as before
    assert c_skip[0] > 0.99 and c_skip[1] == 0.5 and torch.all(c_skip[2:] <= (0.05 / sigma[2:]) ** 2)
    # The share of noise in the network's target (x0 - c_skip (x0 + sigma n)) / c_out at sigma = 0.5: EDM
    # asks the network to reproduce 0.71 of it, pixel for pixel; sigma_skip = 0.05 a hundredth.
    noise_share = lambda c_skip, c_out: (c_skip * sigma / c_out)[2].item()  # noqa: E731
    assert noise_share(*edm[:2]) > 0.7 and noise_share(c_skip, c_out) < 0.011


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


def _cond(batch, context=None):
    cond = {"tokens": torch.zeros(batch, 1, 1), "mask": torch.ones(batch, 1, dtype=torch.bool)}
    if context is not None:
        cond["context"], cond["context_mask"] = context, torch.ones_like(context[:, :1])
    return cond


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

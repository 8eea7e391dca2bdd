"""GPU correctness (run on a CUDA machine; skipped elsewhere): bf16 autocast, flash attention, sampling."""

import pytest
import torch
import torch.nn.functional as F

from vimi.condition import Condition
from vimi.config import BackboneConfig
from vimi.models.video_dit import VideoDiT

pytestmark = pytest.mark.gpu


def make_inputs(batch=2, device="cuda"):
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, 3, 4, 32, 32, generator=generator).to(device)
    tokens = torch.randn(batch, 7, 48, generator=generator).to(device)
    mask = torch.ones(batch, 7, dtype=torch.bool, device=device)
    mask[1, 4:] = False
    return x, torch.full((batch,), 0.3, device=device), Condition(tokens, mask)


def perturbed_model(cfg: BackboneConfig) -> VideoDiT:
    torch.manual_seed(0)
    model = VideoDiT(cfg, in_channels=3, cond_dim=48)
    with torch.no_grad():  # leave adaLN-zero's exact-zero init so the output depends on every weight
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def test_bf16_autocast_matches_fp32():
    model = perturbed_model(BackboneConfig(size="debug")).cuda()
    x, c_noise, cond = make_inputs()
    reference = model(x, c_noise, cond)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = model(x, c_noise, cond)
    assert torch.isfinite(low).all()
    relative = (low.float() - reference).norm() / reference.norm()
    assert relative < 0.05, relative


def test_cuda_matches_cpu_and_backward_is_finite():
    model = perturbed_model(BackboneConfig(size="debug"))
    x, c_noise, cond = make_inputs(device="cpu")
    cpu_out = model(x, c_noise, cond)
    model = model.cuda()
    gpu_out = model(x.cuda(), c_noise.cuda(), cond.to("cuda"))
    torch.testing.assert_close(gpu_out.cpu(), cpu_out, atol=2e-3, rtol=2e-3)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(x.cuda(), c_noise.cuda(), cond.to("cuda")).float().pow(2).mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_flash_attention_kernel_runs_for_bf16():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(2, 4, 256, 64, device="cuda", dtype=torch.bfloat16)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # raises if flash cannot serve these inputs
        out = F.scaled_dot_product_attention(q, q, q)
    reference = F.scaled_dot_product_attention(q.float(), q.float(), q.float())
    torch.testing.assert_close(out.float(), reference, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_fused_adamw_and_foreach_ema_on_cuda_match_the_cpu(name):
    """On a GPU the optimizer is AdamW's fused kernel and the EMA one multi-tensor lerp (a few launches a step);
    after a few steps the weights and their average match the CPU's one-tensor-at-a-time updates (with Muon
    too, whose Newton-Schulz iterations run in bf16 on both)."""
    from vimi.config import TrainConfig
    from vimi.train.ema import EMA
    from vimi.train.optim import build_optimizer

    cfg = TrainConfig(optimizer=name)
    models = [
        perturbed_model(BackboneConfig(size="debug")),
        perturbed_model(BackboneConfig(size="debug")).cuda(),
    ]
    optimizers = [build_optimizer(model, cfg) for model in models]
    averages = [EMA(model, halflife_steps=2.0) for model in models]
    adamws = [getattr(optimizer, "adamw", optimizer) for optimizer in optimizers]
    assert adamws[1].defaults["fused"] and not adamws[0].defaults["foreach"]
    x, c_noise, cond = make_inputs(device="cpu")
    for _ in range(3):
        for model, optimizer, average in zip(models, optimizers, averages):
            device = next(model.parameters()).device
            loss = model(x.to(device), c_noise.to(device), cond.to(device)).pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            average.update(model)
    for (name, cpu), gpu in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(gpu.detach().cpu(), cpu.detach(), atol=1e-4, rtol=1e-3, msg=name)
    for name, cpu in averages[0].state_dict().items():
        torch.testing.assert_close(averages[1].state_dict()[name].cpu(), cpu, atol=1e-4, rtol=1e-3, msg=name)

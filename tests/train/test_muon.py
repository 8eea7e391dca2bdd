"""train.optimizer=muon: which parameters Muon takes, what its update is, and that runs with it resume exactly."""

import pytest
import torch

from vimi.config import TrainConfig
from vimi.errors import CheckpointError, ConfigError
from vimi.models.vimi_model import VimiModel
from vimi.train.logging import read_metrics
from vimi.train.optim import MuonWithAdamW, build_optimizer, build_scheduler
from vimi.train.trainer import train

from .conftest import debug_config
from .test_resume import assert_bitwise_equal, final_state


@pytest.fixture
def model(tiny_world, tmp_path):
    torch.manual_seed(0)
    cfg = debug_config(tiny_world, tmp_path)
    return VimiModel(cfg.model, cfg.diffusion)


def muon_config(**overrides) -> TrainConfig:
    return TrainConfig(
        **{"optimizer": "muon", "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 0, **overrides}
    )


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest(model):
    optimizer = build_optimizer(model, muon_config())
    assert isinstance(optimizer, MuonWithAdamW)
    names = {id(p): name for name, p in model.named_parameters()}
    muon = {names[id(p)] for group in optimizer.muon.param_groups for p in group["params"]}
    adamw = {names[id(p)] for group in optimizer.adamw.param_groups for p in group["params"]}
    assert muon.isdisjoint(adamw) and muon | adamw == set(names.values())  # each parameter exactly once
    assert "backbone.blocks.0.attn.qkv.weight" in muon and "backbone.blocks.1.mlp.2.weight" in muon
    assert "encoder.blocks.0.qkv.weight" in muon
    # The input and output projections, embeddings, biases and norms stay with AdamW.
    for name in (
        "backbone.patch_embed.weight",
        "backbone.final_layer.linear.weight",
        "encoder.text_embed.weight",
    ):
        assert name in adamw
    assert all(model.get_parameter(name).ndim == 2 for name in muon)
    assert not any(name.endswith(".bias") for name in muon)


def test_muon_update_is_orthogonalised_and_scaled_like_adamw(model):
    """One step from rest: a hidden matrix moves by lr * 0.2 * sqrt(max(A, B)) times a matrix whose singular
    values are all near 1 (Newton-Schulz), whatever the gradient's spread of singular values."""
    cfg = muon_config()
    optimizer = build_optimizer(model, cfg)
    weight = model.backbone.blocks[0].mlp[0].weight  # [4 * hidden, hidden]
    u, _, vh = torch.linalg.svd(torch.randn(weight.shape), full_matrices=False)
    spread = torch.logspace(0, -1.5, u.shape[1])  # singular values from 1 down to 0.03
    gradient = u @ torch.diag(spread) @ vh
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    weight.grad = gradient
    before = weight.detach().clone()
    optimizer.step()
    update = (before - weight.detach()) / (cfg.lr * 0.2 * max(weight.shape) ** 0.5)
    singular = torch.linalg.svdvals(update)
    assert singular.min() > 0.5 and singular.max() < 1.3  # the gradient's spread 30 times


def test_the_scheduler_drives_both_optimizers(model):
    cfg = muon_config(warmup_steps=4)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    for inner in (optimizer.muon, optimizer.adamw):
        assert [group["lr"] for group in inner.param_groups] == pytest.approx(
            [cfg.lr / 4] * len(inner.param_groups)
        )
    optimizer.step()
    scheduler.step()
    for inner in (optimizer.muon, optimizer.adamw):
        assert all(group["lr"] == pytest.approx(cfg.lr / 2) for group in inner.param_groups)


def test_training_with_muon_fits_a_fixed_batch(tiny_world, tmp_path):
    cfg = debug_config(
        tiny_world, tmp_path, "train.optimizer=muon", "train.overfit_batches=1", "train.batch_size=1",
        "train.steps=60", "train.lr=0.005", "train.warmup_steps=0", "train.grad_clip=0", "train.log_every=1",
        "train.ckpt_every=1000", "model.backbone.hidden=64", "model.backbone.heads=4",
    )  # fmt: skip
    train(cfg)
    losses = [m["loss"] for m in read_metrics(tmp_path)]
    assert min(losses[-5:]) < 0.75 * losses[0], losses[::6]  # 1.02 -> 0.67 (AdamW at this rate: 0.26)


def test_a_muon_run_resumes_bit_exactly_and_refuses_the_other_optimizer(tiny_world, tmp_path):
    recipe = ("train.optimizer=muon", "train.schedule=cosine", "train.steps=6", "train.log_every=1")
    train(debug_config(tiny_world, tmp_path / "straight", *recipe, "train.ckpt_every=6"))
    resumed = tmp_path / "resumed"
    train(
        debug_config(tiny_world, resumed, *recipe, "train.ckpt_every=6", "train.max_time_s=1e-9")
    )  # stops at 1
    train(debug_config(tiny_world, resumed, *recipe, "train.ckpt_every=6", "train.resume=true"))
    a, b = final_state(resumed), final_state(tmp_path / "straight")
    assert a["state"]["step"] == b["state"]["step"] == 6
    assert_bitwise_equal(a["model"], b["model"])
    assert_bitwise_equal(a["ema"], b["ema"])
    with pytest.raises(CheckpointError, match=r"saved with train\.optimizer=muon, now adamw"):
        train(
            debug_config(tiny_world, resumed, "train.schedule=cosine", "train.steps=8", "train.resume=true")
        )


def test_muon_under_fsdp_is_refused_by_name(model):
    with pytest.raises(ConfigError, match=r"train\.optimizer=muon.*fsdp"):
        build_optimizer(model, muon_config(), sharded=True)

"""Optimizer groups, the learning-rate schedule, and the EMA half-life."""

import itertools
import math

import pytest
import torch
from torch import nn

from vimi.config import TrainConfig
from vimi.train.ema import EMA, ema_decay
from vimi.train.optim import build_optimizer, lr_factor, split_decay_groups


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.linear = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.null_token = nn.Parameter(torch.zeros(4))


def test_no_weight_decay_on_norms_biases_embeddings():
    model = Toy()
    decay, no_decay = split_decay_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model.linear.weight)}
    expected = {
        id(model.embed.weight),
        id(model.linear.bias),
        id(model.norm.weight),
        id(model.norm.bias),
        id(model.null_token),
    }
    assert {id(p) for p in no_decay["params"]} == expected


def test_frozen_parameters_are_not_optimised():
    model = Toy()
    model.linear.requires_grad_(False)
    optimizer = build_optimizer(model, TrainConfig())
    params = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model.linear.weight) not in params and id(model.norm.weight) in params


def test_warmup_then_cosine_reaches_min_ratio():
    cfg = TrainConfig(steps=110, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.55)  # halfway down the cosine
    assert lr_factor(110, cfg) == pytest.approx(0.1)
    factors = [lr_factor(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(factors))


def test_wsd_holds_the_rate_then_decays_linearly_over_the_last_steps():
    cfg = TrainConfig(steps=100, warmup_steps=10, schedule="wsd", decay_steps=40, min_lr_ratio=0.1)
    assert [lr_factor(s, cfg) for s in (0, 9, 10, 59, 60)] == pytest.approx([0.1, 1.0, 1.0, 1.0, 1.0])
    assert lr_factor(80, cfg) == pytest.approx(0.55)  # halfway down the line
    assert lr_factor(100, cfg) == pytest.approx(0.1)
    assert lr_factor(150, cfg) == pytest.approx(0.1)  # stays at the floor past the end
    factors = [lr_factor(s, cfg) for s in range(60, 101)]
    assert all(a > b for a, b in itertools.pairwise(factors))


def test_constant_schedule_after_warmup():
    cfg = TrainConfig(steps=100, warmup_steps=4, schedule="constant")
    assert [lr_factor(s, cfg) for s in (0, 3, 4, 99)] == [0.25, 1.0, 1.0, 1.0]


def test_ema_halves_the_distance_every_halflife():
    assert ema_decay(10) ** 10 == pytest.approx(0.5)
    module = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        module.weight.zero_()
    ema = EMA(module, halflife_steps=10)
    with torch.no_grad():
        module.weight.fill_(1.0)
    for _ in range(10):
        ema.update(module)
    assert torch.allclose(ema.state_dict()["weight"], torch.full((2, 2), 0.5))
    for _ in range(10):
        ema.update(module)
    assert torch.allclose(ema.state_dict()["weight"], torch.full((2, 2), 0.75))


def test_ema_applied_swaps_in_and_restores():
    module = nn.Linear(2, 2)
    ema = EMA(module, halflife_steps=1)
    raw = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        module.weight.add_(1.0)
    changed = module.weight.detach().clone()
    with ema.applied(module):
        assert torch.equal(module.weight, raw["weight"])
    assert torch.equal(module.weight, changed)
    assert math.isclose(ema_decay(0), 0.0)

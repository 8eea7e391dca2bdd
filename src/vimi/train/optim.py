"""AdamW with weight-decay groups and the warmup + constant/cosine/wsd learning-rate schedule."""

import math

import torch
from torch import nn

from vimi.config import TrainConfig


def split_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Parameter groups: matrices decay; norms, biases, embeddings and other vectors do not.

    Why: decaying a LayerNorm gain or a bias pulls it towards 0, which is never the prior we want,
    and embeddings (tokens, positions, null tokens) are looked up sparsely and shrink unevenly.
    """
    embedding_params = {
        id(p) for module in model.modules() if isinstance(module, nn.Embedding) for p in module.parameters()
    }
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_embedding = id(param) in embedding_params or "embed" in name.split(".")[-1] or "token" in name
        if param.ndim < 2 or is_embedding:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, in decay / no-decay groups."""
    groups = split_decay_groups(model, cfg.weight_decay)
    on_gpu = all(param.device.type == "cuda" for group in groups for param in group["params"])
    # A GPU: the fused kernel, a few launches a step where one parameter at a time is ~10 per parameter (~1,650 for
    # GroundedWorld-S), which would bound a small model's step. The CPU: one parameter at a time, which keeps the
    # update order identical across world sizes and resumes (the bit-exact CPU tests).
    implementation = {"fused": True} if on_gpu else {"foreach": False}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), **implementation)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of cfg.lr at `step`: linear warmup, then constant, cosine, or constant-then-linear (wsd)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "wsd":
        decay_start = cfg.steps - cfg.decay_steps
        progress = min(max(step - decay_start, 0) / max(cfg.decay_steps, 1), 1.0)
        return 1.0 - (1.0 - cfg.min_lr_ratio) * progress
    decay_steps = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min(max(step - cfg.warmup_steps, 0) / decay_steps, 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over `lr_factor`; its state_dict holds only numbers (weights_only-loadable)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))

"""AdamW (or Muon for the hidden matrices) with weight-decay groups, and the warmup + constant/cosine/wsd
learning-rate schedule."""

import math

import torch
from torch import nn

from vimi.config import TrainConfig
from vimi.errors import ConfigError

# A network's input and output projections stay with AdamW under Muon, as Jordan et al. advise: their rows or
# columns are per-pixel channels, not a hidden space whose directions an orthogonal update should treat alike.
MUON_EXCLUDED = ("patch_embed", "final_layer.linear")


def split_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Parameter groups: matrices decay; norms, biases, embeddings and other vectors do not."""
    decay, no_decay = decayed_parameters(model)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def decayed_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The trainable parameters as (weight matrices, everything else).

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
    return decay, no_decay


def build_optimizer(model: nn.Module, cfg: TrainConfig, sharded: bool = False) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, in decay / no-decay groups; with cfg.optimizer == "muon", the
    decayed hidden matrices go to Muon instead (`MuonWithAdamW`)."""
    if cfg.optimizer == "muon":
        if sharded:
            raise ConfigError(
                "train.optimizer=muon needs whole weight matrices: use train.parallel=ddp, not fsdp"
            )
        return MuonWithAdamW(model, cfg)
    return _adamw(split_decay_groups(model, cfg.weight_decay), cfg)


def _adamw(groups: list[dict], cfg: TrainConfig) -> torch.optim.AdamW:
    on_gpu = all(param.device.type == "cuda" for group in groups for param in group["params"])
    # A GPU: the fused kernel, a few launches a step where one parameter at a time is ~10 per parameter (~1,650 for
    # GroundedWorld-S), which would bound a small model's step. The CPU: one parameter at a time, which keeps the
    # update order identical across world sizes and resumes (the bit-exact CPU tests).
    implementation = {"fused": True} if on_gpu else {"foreach": False}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), **implementation)


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon for the hidden layers' weight matrices, AdamW for the rest, stepped as one optimizer.

    The two optimizers share this one's param_groups (the same dicts), so a scheduler that sets
    `group["lr"]` drives both. Muon's rate is scaled per matrix to AdamW's update RMS (`match_rms_adamw`).
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig):
        excluded = tuple(f"{name}.weight" for name in MUON_EXCLUDED)
        is_hidden = {
            id(p): p.ndim == 2 and not name.endswith(excluded) for name, p in model.named_parameters()
        }
        decay, no_decay = decayed_parameters(model)
        hidden = [p for p in decay if is_hidden[id(p)]]
        rest = [
            {"params": [p for p in decay if not is_hidden[id(p)]], "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        self.muon = torch.optim.Muon(
            hidden, lr=cfg.lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw"
        )
        self.adamw = _adamw([g for g in rest if g["params"]], cfg)
        super().__init__([{"params": []}], {})  # the base class's hooks; the groups are the two optimizers'
        self.param_groups = self.muon.param_groups + self.adamw.param_groups

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        self.muon.step()
        self.adamw.step()
        return loss

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        self.param_groups = self.muon.param_groups + self.adamw.param_groups  # loading made new group dicts


def saved_optimizer(state: dict) -> str:
    """Which train.optimizer wrote an optimizer state dict: "muon" (MuonWithAdamW's) or "adamw"."""
    return "muon" if set(state) == {"muon", "adamw"} else "adamw"


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

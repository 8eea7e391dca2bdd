"""Grow a trained VideoDiT k times wider without changing what it computes (Net2WiderNet, Chen et al. 2016,
for a pre-norm transformer; the new parts start as bert2BERT's and Shen et al. 2022's do: contributing zero).

The residual stream, the noise/condition embedding c and the condition tokens become k copies of themselves,
[x, x] for k = 2: a LayerNorm without affine parameters normalises k copies exactly as it did one, and a linear
layer that reads them divides its old weights by k. What the blocks compute inside (the MLP's hidden units and
the attention heads, head size kept) keeps its old units and adds fresh ones, initialised as a new network
would be, whose outgoing weights start at zero. So the grown network's output equals the old one's, and yet it
does not stay a copy of the narrow one: once the fresh units' outgoing weights move (from the first step on),
they read the copies with different weights, the copies' gradients differ, and they drift apart. A network
whose every unit were duplicated would stay exactly as narrow as it was, whatever it was trained on.
"""

import re
from dataclasses import replace

import torch
from torch import nn

from vimi.config import BackboneConfig, VimiConfig
from vimi.errors import ConfigError
from vimi.models.video_dit import VideoDiT, resolve_backbone_size
from vimi.models.vimi_model import VimiModel, build_model

# Layers whose outputs are a block's inner units (name suffix -> how many parts of heads x head_dim or MLP
# units their output holds: q, k, v); these keep their old units first in each part and add fresh ones.
INNER_OUTPUTS = {"attn.qkv": 3, "attn.cond_kv": 2, "cross_attn.q": 1, "cross_attn.kv": 2, "mlp.0": 1}
# Layers that read those units back into the residual stream: the fresh units' columns start at zero.
INNER_INPUTS = ("attn.proj", "cross_attn.proj", "mlp.2")


def widened_backbone(backbone: BackboneConfig, factor: int) -> BackboneConfig:
    """`backbone` `factor` times wider: hidden and heads x factor, depth and head size kept."""
    if factor < 2:
        raise ConfigError(
            f"grow: factor={factor} must be an integer >= 2 (hidden and heads are multiplied by it)"
        )
    size = resolve_backbone_size(backbone)
    return replace(backbone, hidden=size.hidden * factor, heads=size.heads * factor, depth=size.depth)


def widened_config(cfg: VimiConfig, factor: int) -> VimiConfig:
    """`cfg` with its backbone `widened_backbone`."""
    return replace(cfg, model=replace(cfg.model, backbone=widened_backbone(cfg.model.backbone, factor)))


def _widen_dim(
    old: torch.Tensor, dim: int, parts: int, factor: int, kind: str, fresh: torch.Tensor
) -> torch.Tensor:
    """Widen `old` along `dim` (`parts` equal parts, each `factor` times longer).

    kind: "copy" (each part repeated factor times), "read" (copied and divided by factor: a linear layer's
    input from copies), "units" (old part first, then `fresh`'s values), "zero_units" (old part, then zeros).
    """
    old = old.movedim(dim, 0)
    part = old.shape[0] // parts
    grouped = old.reshape(parts, 1, part, *old.shape[1:])  # [n, ...] -> [parts, 1, part, ...]
    if kind in ("copy", "read"):
        wide = grouped.expand(parts, factor, *grouped.shape[2:]) / (factor if kind == "read" else 1)
    else:
        if kind == "units":  # [n * factor, ...] -> [parts, factor, part, ...]
            wide = fresh.movedim(dim, 0).reshape(parts, factor, part, *old.shape[1:]).clone()
        else:
            wide = old.new_zeros(parts, factor, part, *old.shape[1:])
        wide[:, 0] = grouped[:, 0]
    return wide.reshape(parts * factor * part, *old.shape[1:]).movedim(0, dim)


def widen_backbone(narrow: VideoDiT, wide: VideoDiT) -> None:
    """Overwrite `wide`'s weights (keeping its initialisation only where fresh units need it) so that it computes
    what `narrow` does; `wide` must be `narrow`'s config `widened_config`-ed."""
    hidden, wide_hidden = narrow.size.hidden, wide.size.hidden
    factor = wide_hidden // hidden
    if (
        wide_hidden != factor * hidden
        or wide.size.heads != factor * narrow.size.heads
        or wide.size.depth != narrow.size.depth
    ):
        raise ConfigError(
            f"grow: a backbone of hidden={hidden}, heads={narrow.size.heads}, depth={narrow.size.depth} grows "
            f"into hidden and heads times the same integer at the same depth, not hidden={wide_hidden}, "
            f"heads={wide.size.heads}, depth={wide.size.depth}"
        )
    linears = {name for name, module in wide.named_modules() if isinstance(module, nn.Linear)}
    narrow_state = narrow.state_dict()
    grown = {}
    for name, fresh in wide.state_dict().items():
        value = narrow_state[name]
        layer = name.rsplit(".", 1)[0]  # blocks.0.attn.qkv.weight -> blocks.0.attn.qkv
        suffix = re.sub(r"^blocks\.\d+\.", "", layer)  # e.g. attn.qkv, mlp.0
        is_linear_weight = layer in linears and name.endswith(".weight")
        for dim in reversed(range(value.ndim)):  # inputs (dim 1) first, so fresh rows are full width
            if value.shape[dim] == fresh.shape[dim]:
                continue
            reads_input = is_linear_weight and dim == 1
            if reads_input and suffix in INNER_INPUTS:
                kind, parts = "zero_units", 1
            elif not reads_input and suffix in INNER_OUTPUTS:
                kind, parts = "units", INNER_OUTPUTS[suffix]
            elif value.shape[dim] % hidden == 0:  # the residual stream, c, condition tokens, adaLN chunks
                kind, parts = ("read" if reads_input else "copy"), value.shape[dim] // hidden
            else:
                raise ConfigError(f"grow: do not know how to widen {name} {tuple(value.shape)}")
            value = _widen_dim(value, dim, parts, factor, kind, fresh)
        grown[name] = value
    wide.load_state_dict(grown)


def grow_model(model: VimiModel, cfg: VimiConfig, factor: int) -> tuple[VimiModel, VimiConfig]:
    """A new model of `cfg`'s backbone `factor` times wider that computes what `model` does: the same encoder
    (and autoencoder) weights, the backbone widened by `widen_backbone`. Returns it with its config."""
    wide_cfg = widened_config(cfg, factor)
    wide = build_model(wide_cfg)
    wide.encoder.load_state_dict(model.encoder.state_dict())
    wide.autoencoder.load_state_dict(model.autoencoder.state_dict())
    widen_backbone(model.backbone, wide.backbone)
    return wide, wide_cfg

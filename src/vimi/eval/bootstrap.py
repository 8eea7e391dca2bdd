"""Percentile bootstrap intervals (Efron 1979): resample the samples with replacement, take a statistic's quantiles."""

from collections.abc import Callable

import numpy as np


def bootstrap_interval(
    count: int,
    statistic: Callable[[np.ndarray], np.ndarray],
    samples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """The `level` interval of `statistic` over `count` samples; statistic(picks [S, count] indices) -> [S] values.

    Paired statistics resample their arrays with the same picks. Fewer than 2 samples (or no resamples): the
    statistic of the samples themselves, twice.
    """
    if count < 2 or samples < 1:
        value = float(statistic(np.arange(count)[None])[0])
        return value, value
    picks = np.random.default_rng(seed).integers(0, count, size=(samples, count))  # [samples, count]
    values = statistic(picks)  # [samples]
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def bootstrap_ci(
    values: np.ndarray, samples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `values`."""
    values = np.asarray(values, np.float64)
    return bootstrap_interval(len(values), lambda picks: values[picks].mean(axis=1), samples, seed, level)

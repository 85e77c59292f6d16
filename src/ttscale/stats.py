"""Uncertainty of accuracies: Wilson intervals for one proportion, percentile bootstrap over
problems for means and paired differences."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> Estimate:
    """The Wilson score interval: sound for small samples and for 0 or all successes, where
    the normal approximation collapses to a point."""
    if trials <= 0:
        return Estimate(math.nan, 0.0, 1.0)
    z = _z(confidence)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half))


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _resample_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(values), size=(resamples, len(values)))
    return values[rows].mean(axis=1)


def bootstrap_mean(values: Sequence[float], confidence: float = 0.95,
                   resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Estimate:
    """The mean of ``values`` (one per problem) with a percentile bootstrap interval."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return Estimate(math.nan, math.nan, math.nan)
    means = _resample_means(data, resamples, seed)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Estimate(float(data.mean()), float(low), float(high))


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95,
                      resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Estimate:
    """mean(a) - mean(b) over the same problems, resampling problems (not a and b apart), so
    that the interval reflects how the two differ on each problem."""
    if len(a) != len(b):
        raise ValueError(f"paired values differ in length: {len(a)} and {len(b)}")
    return bootstrap_mean(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64),
                          confidence, resamples, seed)


def ratio_of_means(a: Sequence[float], b: Sequence[float], confidence: float = 0.95,
                   resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Estimate:
    """mean(a) / mean(b) over the same problems (e.g. an adaptive method's FLOPs over a fixed
    one's), with a percentile bootstrap interval that resamples problems, keeping pairs."""
    if len(a) != len(b):
        raise ValueError(f"paired values differ in length: {len(a)} and {len(b)}")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size == 0 or y.sum() == 0:
        return Estimate(math.nan, math.nan, math.nan)
    rows = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = x[rows].sum(axis=1) / y[rows].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(ratios, [tail, 100 - tail])
    return Estimate(float(x.sum() / y.sum()), float(low), float(high))

"""Robust binned statistics of the noise fit: each intensity bin's variance from its central
residuals (`robust_variance`, `bin_stats`) and the weighted line var = beta1 * x + beta2 through
them (`fit_line`); see `lpie_data.calibrate.noise` for the whole procedure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lpie_data.calibrate.noise import NoiseFitOptions

IQR_TO_SIGMA = 1.0 / 1.3489795
#: Residuals further than this many standard deviations from the median are left out.
TRUNCATE = 3.0


@dataclass(frozen=True)
class BinStats:
    """Binned statistics of one channel: float64 arrays (n_bins,) of mean intensity, robust
    variance and pixel count, and a bool array of the bins the fit used."""

    mean: np.ndarray
    var: np.ndarray
    count: np.ndarray
    used: np.ndarray


def robust_variance(r: np.ndarray, room: float) -> float:
    """Variance of Gaussian residuals ``r`` (1-D) from their central part.

    First the interquartile range (``((q75 - q25) / 1.349)^2``, blind to outliers and to
    clipping beyond the quartiles), then the variance of the residuals within ``t`` standard
    deviations of the median, corrected for the truncation: ``t = min(TRUNCATE, room / sd)``,
    ``room`` being the distance from the bin to the nearest clip in residual units, so clipped
    values stay outside the window. With ``t`` below 1 the interquartile estimate is kept.
    Truncated at 3 sd the estimate is about 2.5 times as efficient as the IQR alone.
    """
    med = float(np.median(r))
    q25, q75 = np.percentile(r, [25, 75])
    sd = float(q75 - q25) * IQR_TO_SIGMA
    if sd <= 0.0:
        return 0.0
    for _ in range(2):
        t = min(TRUNCATE, room / sd)
        if t < 1.0:
            return sd * sd
        inside = r[np.abs(r - med) <= t * sd]
        var_t = float(np.mean((inside.astype(np.float64) - med) ** 2))
        pdf = math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
        mass = math.erf(t / math.sqrt(2))
        sd = math.sqrt(var_t / (1.0 - 2.0 * t * pdf / mass))
    return sd * sd


def bin_stats(
    x: np.ndarray, r: np.ndarray, options: NoiseFitOptions, clip: tuple[float, float] = (
        0.0, math.inf)
) -> BinStats:
    """Bins of equal width between the 0.1 and 99.9 percentiles of ``x`` (float32 (n,));
    robust variance of the residuals ``r`` in each (:func:`robust_variance`, kept clear of
    the ``clip`` levels); bins with too few pixels are dropped."""
    lo, hi = np.quantile(x, [0.001, 0.999]) if x.size else (0.0, 0.0)
    if not hi > lo:
        return BinStats(*(np.zeros(0) for _ in range(3)), np.zeros(0, bool))
    edges = np.linspace(lo, hi, options.bins + 1)
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, options.bins - 1)
    inside = (x >= lo) & (x <= hi)
    order = np.argsort(which[inside], kind="stable")
    xs, rs, ws = x[inside][order], r[inside][order], which[inside][order]
    starts = np.searchsorted(ws, np.arange(options.bins + 1))
    mean, var, count = [], [], []
    for b in range(options.bins):
        a, e = starts[b], starts[b + 1]
        if e - a < options.min_bin_pixels:
            continue
        room = min(edges[b] - clip[0], clip[1] - edges[b + 1])
        mean.append(float(np.mean(xs[a:e], dtype=np.float64)))
        var.append(robust_variance(rs[a:e], float(room)))
        count.append(e - a)
    return BinStats(np.array(mean), np.array(var), np.array(count, float),
                    np.ones(len(mean), bool))


def _weighted_line(x: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares v ~ b1 x + b2 with b1, b2 >= 0."""
    a = np.stack([x, np.ones_like(x)], axis=1) * np.sqrt(w)[:, None]
    t = v * np.sqrt(w)
    b1, b2 = np.linalg.lstsq(a, t, rcond=None)[0]
    if b1 >= 0 and b2 >= 0:
        return float(b1), float(b2)
    only1 = max(float(np.sum(w * x * v) / max(np.sum(w * x * x), 1e-300)), 0.0)
    only2 = max(float(np.sum(w * v) / max(np.sum(w), 1e-300)), 0.0)
    cost1 = float(np.sum(w * (v - only1 * x) ** 2))
    cost2 = float(np.sum(w * (v - only2) ** 2))
    return (only1, 0.0) if cost1 <= cost2 else (0.0, only2)


def fit_line(
    stats: Sequence[BinStats], clip: tuple[float, float], margin: float, rounds: int = 4
) -> tuple[float, float, list[np.ndarray]]:
    """Fit var = b1 * mean + b2 to the bins of ``stats`` pooled; leave out bins within
    ``margin`` model standard deviations of a clip (lo, hi), refitting ``rounds`` times.
    Returns (b1, b2, per-stats bool arrays of the bins used)."""
    mean = np.concatenate([s.mean for s in stats])
    var = np.concatenate([s.var for s in stats])
    count = np.concatenate([s.count for s in stats])
    model_var = np.maximum(var, 1e-30)
    used = np.ones(mean.shape, bool)
    b1 = b2 = 0.0
    for _ in range(rounds):
        sd = np.sqrt(np.maximum(model_var, 0.0))
        used = (mean - margin * sd > clip[0]) & (mean + margin * sd < clip[1]) & (var > 0)
        if used.sum() < 2:
            break
        weights = count[used] / np.maximum(model_var[used], 1e-30) ** 2
        b1, b2 = _weighted_line(mean[used], var[used], weights)
        model_var = np.maximum(b1 * mean + b2, 1e-30)
    splits = np.cumsum([len(s.mean) for s in stats])[:-1]
    return b1, b2, list(np.split(used, splits))


def fit_residual(stats: Sequence[BinStats], b1: float, b2: float) -> float:
    rel = [(s.var[s.used] - (b1 * s.mean[s.used] + b2)) / np.maximum(
        b1 * s.mean[s.used] + b2, 1e-30) for s in stats]
    flat = np.concatenate(rel) if rel else np.zeros(0)
    return float(np.sqrt(np.mean(flat**2))) if flat.size else float("nan")

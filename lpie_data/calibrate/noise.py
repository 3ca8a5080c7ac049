"""Fit the noise-level function var(y - x | x) = beta1 * x + beta2 from pairs in linear light.

Per channel and per group of pairs (meta keys, e.g. SIDD's phone and ISO):

1. residual ``y - x`` and intensity ``x`` (with a PSF: ``y - x * k`` and ``x * k``, a border of
   the PSF's radius left out, since the crop's blur context is unknown there);
2. pixels at strong edges of the intensity are left out (misalignment and PSF error inflate the
   variance there): the ``edge_share`` largest gradient magnitudes of each pair;
3. pixels are binned by intensity; each bin's variance is estimated robustly from the central
   residuals (interquartile range, then a truncated variance within 3 standard deviations or
   the distance to a clip, corrected for the truncation: :func:`robust_variance`), which
   ignores outliers and clipped values;
4. a weighted least-squares line through (bin mean, bin variance), weights ``n / var^2``,
   beta1, beta2 >= 0, refitted after leaving out the bins whose mean lies within
   ``clip_margin`` standard deviations (of the fitted model) of a clip (0 and the dataset's
   ``x_max``): the values there are censored and their variance is smaller than the model's.

The fit over all channels (``beta1``, ``beta2``) pools the bins of the three channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lpie_data.calibrate.binning import BinStats, bin_stats, fit_line, fit_residual
from lpie_data.calibrate.pairs import LinearPairs, meta_value
from lpie_data.errors import ConfigError, DataError
from lpie_data.synth.blur import blur
from lpie_data.synth.psf import Psf

#: Schema version of noise.json.
NOISE_FILE_VERSION = 1


@dataclass(frozen=True)
class NoiseFitOptions:
    """Options of :func:`fit_noise`.

    by: meta keys that split the pairs into groups (empty: one group; dotted keys read
    nested meta, e.g. ``noise_group.iso``). bins: intensity bins
    per channel. min_bin_pixels: pixels a bin needs to be used. min_bins: bins a fit needs.
    edge_share: share of each pair's pixels (largest intensity gradients) left out.
    clip_margin: bins closer than this many standard deviations to a clip are left out.
    max_pixels: pixels per channel and pair kept (a fixed random subset beyond it).
    border: pixels left out at each side with a PSF (None: the PSF radius, at most an eighth
    of the smaller side). seed: the subset's generator.
    """

    by: tuple[str, ...] = ()
    bins: int = 48
    min_bin_pixels: int = 200
    min_bins: int = 4
    edge_share: float = 0.1
    clip_margin: float = 2.0
    max_pixels: int = 1 << 18
    border: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "by", tuple(self.by))
        if self.bins < 2 or self.min_bins < 2 or self.min_bin_pixels < 10:
            raise ConfigError("bins and min_bins must be >= 2, min_bin_pixels >= 10")
        if not 0.0 <= self.edge_share < 1.0:
            raise ConfigError(f"edge_share: must be in [0, 1), got {self.edge_share}")
        if self.clip_margin < 0:
            raise ConfigError(f"clip_margin: must be >= 0, got {self.clip_margin}")
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels: must be >= 1, got {self.max_pixels}")


@dataclass(frozen=True)
class NoiseGroup:
    """The fitted noise of one group of pairs.

    group: {meta key: value}. beta1, beta2: the fit over all channels; channel_beta1/2: per
    channel (R, G, B). pixels: pixels in the bins used (all channels). residual: RMS relative
    deviation of the used bins' variances from the fitted line (all channels). pairs: pairs
    in the group. bins: per-channel binned statistics (for the picture).
    """

    group: dict[str, Any]
    beta1: float
    beta2: float
    channel_beta1: tuple[float, float, float]
    channel_beta2: tuple[float, float, float]
    pixels: int
    residual: float
    pairs: int
    bins: tuple[BinStats, ...] = field(repr=False, default=())

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "channels": {"beta1": list(self.channel_beta1), "beta2": list(self.channel_beta2)},
            "pixels": self.pixels,
            "residual": self.residual,
            "pairs": self.pairs,
        }


@dataclass(frozen=True)
class NoiseCalibration:
    """Result of :func:`fit_noise`: what ``noise.json`` holds (see :meth:`as_json`).

    intensity: ``"x"`` (the clean target) or ``"x * k"`` (the re-blurred target, with a PSF).
    """

    dataset: str
    split: str
    value_space: str
    assumed: bool
    intensity: str
    psf: str | None
    groups: tuple[NoiseGroup, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "version": NOISE_FILE_VERSION,
            "dataset": self.dataset,
            "split": self.split,
            "value_space": self.value_space,
            "value_space_assumed": self.assumed,
            "intensity": self.intensity,
            "psf": self.psf,
            "model": "variance = beta1 * intensity + beta2 (linear light)",
            "groups": [g.as_json() for g in self.groups],
        }


def _group_value(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def _gradient_magnitude(v: np.ndarray) -> np.ndarray:
    """Largest absolute difference to the 4 neighbours, max over channels: (H, W)."""
    g = np.zeros(v.shape[:2], np.float32)
    dy = np.abs(np.diff(v, axis=0)).max(axis=2)
    dx = np.abs(np.diff(v, axis=1)).max(axis=2)
    g[1:] = np.maximum(g[1:], dy)
    g[:-1] = np.maximum(g[:-1], dy)
    g[:, 1:] = np.maximum(g[:, 1:], dx)
    g[:, :-1] = np.maximum(g[:, :-1], dx)
    return g


def _collect(
    pairs: LinearPairs, members: Sequence[int], psf: Psf | None, options: NoiseFitOptions,
    border: int,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per channel, the intensities and residuals of the kept pixels of ``members``."""
    rng = np.random.default_rng(options.seed)
    xs: list[list[np.ndarray]] = [[], [], []]
    rs: list[list[np.ndarray]] = [[], [], []]
    h, w = pairs.shape
    for i in members:
        pair = pairs.pairs[i]
        intensity = pair.clean if psf is None else blur(pair.clean, psf)
        keep = np.zeros((h, w), bool)
        keep[border : h - border, border : w - border] = True
        if options.edge_share > 0:
            grad = _gradient_magnitude(intensity)
            keep &= grad <= np.quantile(grad[keep], 1.0 - options.edge_share)
        idx = np.flatnonzero(keep)
        if idx.size > options.max_pixels:
            idx = np.sort(rng.choice(idx, options.max_pixels, replace=False))
        inten = intensity.reshape(-1, 3)[idx]
        resid = pair.degraded.reshape(-1, 3)[idx] - inten
        for c in range(3):
            xs[c].append(inten[:, c])
            rs[c].append(resid[:, c])
    return [np.concatenate(v) for v in xs], [np.concatenate(v) for v in rs]


def _groups(pairs: LinearPairs, by: Sequence[str]) -> list[tuple[dict[str, Any], list[int]]]:
    found: dict[tuple, list[int]] = {}
    for i, pair in enumerate(pairs.pairs):
        found.setdefault(tuple(_group_value(meta_value(pair.meta, k)) for k in by), []).append(i)
    return [(dict(zip(by, key, strict=True)), idx) for key, idx in
            sorted(found.items(), key=lambda kv: [str(v) for v in kv[0]])]


def fit_noise(
    pairs: LinearPairs, options: NoiseFitOptions | None = None, psf: Psf | None = None
) -> NoiseCalibration:
    """Fit var(y - x | x) = beta1 x + beta2 per group and channel (see the module docstring).

    ``pairs``: read with ``load_linear_pairs(..., keys=options.by)``. ``psf``: the pairs'
    blur (residual ``y - x * k``, intensity ``x * k``). Raises DataError naming the dataset
    and group when a group leaves fewer than ``min_bins`` usable bins.
    """
    options = options or NoiseFitOptions()
    h, w = pairs.shape
    border = 0
    if psf is not None:
        ph = max(psf.kernel.shape[:2])
        border = options.border if options.border is not None else min(ph // 2, min(h, w) // 8)
        if h - 2 * border < 2 or w - 2 * border < 2:
            raise DataError(
                f"{pairs.dataset}: pairs of {h}x{w} leave no pixels inside a border of {border}"
            )
    clip = (0.0, pairs.clip)
    groups = []
    for group, members in _groups(pairs, options.by):
        xs, rs = _collect(pairs, members, psf, options, border)
        stats = [bin_stats(xs[c], rs[c], options, clip) for c in range(3)]
        name = ", ".join(f"{k}={v}" for k, v in group.items()) or "all pairs"
        per_channel = []
        for c in range(3):
            b1, b2, used = fit_line([stats[c]], clip, options.clip_margin)
            stats[c] = BinStats(stats[c].mean, stats[c].var, stats[c].count, used[0])
            if used[0].sum() < options.min_bins:
                raise DataError(
                    f"{pairs.dataset}: group {name}: channel {'RGB'[c]} has "
                    f"{int(used[0].sum())} usable intensity bins of >= {options.min_bin_pixels} "
                    f"pixels away from the clip levels, the fit needs {options.min_bins}; "
                    "use more pairs or pairs with more mid-tones"
                )
            per_channel.append((b1, b2))
        b1, b2, _ = fit_line(stats, clip, options.clip_margin)
        pooled = [BinStats(s.mean, s.var, s.count, s.used) for s in stats]
        groups.append(NoiseGroup(
            group=group,
            beta1=b1,
            beta2=b2,
            channel_beta1=tuple(p[0] for p in per_channel),  # type: ignore[arg-type]
            channel_beta2=tuple(p[1] for p in per_channel),  # type: ignore[arg-type]
            pixels=int(sum(s.count[s.used].sum() for s in stats)),
            residual=fit_residual(pooled, b1, b2),
            pairs=len(members),
            bins=tuple(stats),
        ))
    return NoiseCalibration(
        dataset=pairs.dataset,
        split=pairs.split,
        value_space=pairs.space,
        assumed=pairs.assumed,
        intensity="x" if psf is None else "x * k",
        psf=None if psf is None else psf.source or psf.id,
        groups=tuple(groups),
    )

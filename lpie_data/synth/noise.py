"""Camera noise n of the degradation model: shot + read noise on linear light.

The variance of the noise at a pixel of (blurred) linear value v is ``beta1 * v + beta2``:
beta1 is the shot-noise gain, beta2 the read-noise variance, both in the units of v. The
heteroscedastic Gaussian is the usual approximation; ``poisson=True`` draws the exact
Poisson-Gaussian form ``beta1 * Poisson(v / beta1) + N(0, beta2)`` with the same mean and
variance.

Parameter samplers (``NOISE_SAMPLERS``) draw ``NoiseParams`` from an explicit generator:
``none``, ``fixed`` (config values or uniform ranges), ``unprocessing`` (Brooks et al. 2019),
``sidd`` (noise-level functions of the SIDD phones) and ``calibrated`` (the groups of a
``noise.json`` made by ``lpie-data calibrate noise``, one drawn per pair, per-channel values).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lpie_data.errors import ConfigError

if TYPE_CHECKING:
    from lpie_data.synth.config import SynthConfig


@dataclass(frozen=True)
class NoiseParams:
    """Noise of one pair: variance ``beta1 * v + beta2``; ``extra`` goes to the record meta.

    channels: optional per-channel (beta1 (R, G, B), beta2 (R, G, B)), used instead of
    beta1 / beta2 by :func:`apply_noise` when set (calibrated noise).
    """

    beta1: float = 0.0
    beta2: float = 0.0
    poisson: bool = False
    model: str = "none"
    extra: tuple[tuple[str, Any], ...] = ()
    channels: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def as_meta(self) -> dict[str, Any]:
        meta = {
            "noise": self.model,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "poisson": self.poisson,
            **dict(self.extra),
        }
        if self.channels is not None:
            meta["beta1_rgb"] = list(self.channels[0])
            meta["beta2_rgb"] = list(self.channels[1])
        return meta


# SIDD noise-level functions (DNG NoiseProfile, variance = b1 * y + b2), per phone and ISO.
SIDD_NOISE_LEVELS: dict[tuple[str, int], tuple[float, float]] = {
    ("S6", 100): (4.79e-4, 2e-6),
    ("S6", 400): (1.774e-3, 2e-6),
    ("S6", 800): (3.696e-3, 2e-6),
    ("S6", 1600): (8.211e-3, 2e-6),
    ("S6", 3200): (1.993e-2, 2e-6),
    ("IP", 100): (7.02e-4, 3e-6),
    ("IP", 1600): (6.87e-4, 2e-6),
    ("GP", 100): (2.28e-4, 2e-6),
    ("GP", 800): (1.764e-3, 1.2e-5),
    ("N6", 100): (4.73e-4, 3e-6),
    ("N6", 800): (3.476e-3, 5.2e-5),
    ("G4", 100): (7.39e-4, 2e-6),
    ("G4", 800): (3.356e-3, 6.3e-5),
}


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    u = float(rng.random())  # drawn even for a fixed value: later draws do not shift
    return lo if lo == hi else lo + u * (hi - lo)


def sample_none(rng: np.random.Generator, config: SynthConfig) -> NoiseParams:
    """No noise (draws nothing)."""
    return NoiseParams(model="none")


def sample_fixed(rng: np.random.Generator, config: SynthConfig) -> NoiseParams:
    """beta1, beta2 from the config: fixed numbers, or uniform draws from their ranges."""
    beta1 = _uniform(rng, config.beta1)
    beta2 = _uniform(rng, config.beta2)
    return NoiseParams(beta1, beta2, config.poisson, "fixed")


def sample_unprocessing(rng: np.random.Generator, config: SynthConfig) -> NoiseParams:
    """Brooks et al. 2019: log(shot) ~ U(log 1e-4, log 1.2e-2),
    log(read) = 2.18 log(shot) + 1.20 + N(0, 0.26^2); variance = shot * v + read."""
    log_shot = rng.uniform(math.log(1e-4), math.log(1.2e-2))
    log_read = 2.18 * log_shot + 1.20 + rng.normal(0.0, 0.26)
    return NoiseParams(
        float(math.exp(log_shot)), float(math.exp(log_read)), config.poisson, "unprocessing"
    )


def sample_sidd(rng: np.random.Generator, config: SynthConfig) -> NoiseParams:
    """One SIDD phone/ISO noise-level function, drawn uniformly from ``SIDD_NOISE_LEVELS``."""
    entries = list(SIDD_NOISE_LEVELS.items())
    (phone, iso), (b1, b2) = entries[int(rng.integers(len(entries)))]
    return NoiseParams(b1, b2, config.poisson, "sidd", (("phone", phone), ("iso", iso)))


_NOISE_FILES: dict[tuple[str, float], Any] = {}


def load_noise_file(path: str) -> Any:
    """The :class:`lpie_data.calibrate.noise.NoiseModel` of a ``noise.json``, read once per
    process (and again when the file changes); DataError naming the file when it is bad."""
    import os

    from lpie_data.calibrate.noise import read_noise_file

    try:
        key = (os.path.abspath(path), os.path.getmtime(path))
    except OSError:
        key = (os.path.abspath(path), -1.0)
    if key not in _NOISE_FILES:
        _NOISE_FILES[key] = read_noise_file(path)
    return _NOISE_FILES[key]


def sample_calibrated(rng: np.random.Generator, config: SynthConfig) -> NoiseParams:
    """One group of ``config.noise_file`` (written by ``lpie-data calibrate noise``), drawn
    uniformly; its per-channel beta1 / beta2 are used, the group is recorded in the meta."""
    model = load_noise_file(config.noise_file)
    group, b1, b2, c1, c2 = model.groups[int(rng.integers(len(model.groups)))]
    return NoiseParams(
        b1, b2, config.poisson, "calibrated",
        (("noise_group", group), ("noise_file", config.noise_file)), (tuple(c1), tuple(c2)),
    )


NOISE_SAMPLERS: dict[str, Callable[[np.random.Generator, Any], NoiseParams]] = {
    "none": sample_none,
    "fixed": sample_fixed,
    "unprocessing": sample_unprocessing,
    "sidd": sample_sidd,
    "calibrated": sample_calibrated,
}


def sample_noise(rng: np.random.Generator, config: SynthConfig) -> NoiseParams:
    """Draw the noise parameters of one pair with the sampler named by ``config.noise``."""
    try:
        sampler = NOISE_SAMPLERS[config.noise]
    except KeyError:
        raise ConfigError(
            f"noise: unknown noise model {config.noise!r}; valid: {', '.join(NOISE_SAMPLERS)}"
        ) from None
    return sampler(rng, config)


def draws_normals_only(params: NoiseParams) -> bool:
    """Whether :func:`apply_noise` draws exactly ``rng.standard_normal(v.shape, float32)``
    (the Gaussian model with some noise): those draws do not depend on ``v``, so a caller may
    make them ahead, e.g. while the blur runs, and pass them as ``normals``."""
    noisy = params.beta1 > 0.0 or params.beta2 > 0.0
    if params.channels is not None:  # calibrated: per-channel values decide
        noisy = any(b > 0.0 for b in (*params.channels[0], *params.channels[1]))
        return noisy and not (params.poisson and any(b > 0.0 for b in params.channels[0]))
    return noisy and not (params.poisson and params.beta1 > 0.0)


def apply_noise(v: np.ndarray, params: NoiseParams, rng: np.random.Generator,
                normals: np.ndarray | None = None) -> np.ndarray:
    """Noisy version of the linear image ``v`` (float32, any shape, values >= 0 expected).

    Returns a new float32 array; negative inputs count as zero signal for the shot noise.
    The result is not clipped (that is C's job). ``normals``: where
    :func:`draws_normals_only`, the ``rng.standard_normal(v.shape, dtype=np.float32)`` drawn
    beforehand (then ``rng`` is not used; the result is the same); it is overwritten.
    """
    v = np.asarray(v, dtype=np.float32)
    if params.channels is not None:
        return _apply_channel_noise(v, params, rng, normals)
    if params.beta1 <= 0.0 and params.beta2 <= 0.0:
        return v.copy()
    if params.poisson and params.beta1 > 0.0:
        rate = np.maximum(v, 0.0, dtype=np.float32) / np.float32(params.beta1)
        out = rng.poisson(rate).astype(np.float32)
        out *= np.float32(params.beta1)
        if params.beta2 > 0.0:
            read = rng.standard_normal(v.shape, dtype=np.float32)
            read *= np.float32(math.sqrt(params.beta2))
            out += read
        return out
    sigma = np.maximum(v, np.float32(0.0))
    sigma *= np.float32(params.beta1)
    sigma += np.float32(params.beta2)
    np.sqrt(sigma, out=sigma)
    out = normals if normals is not None else rng.standard_normal(v.shape, dtype=np.float32)
    out *= sigma
    out += v
    return out


def _apply_channel_noise(
    v: np.ndarray, params: NoiseParams, rng: np.random.Generator,
    normals: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`apply_noise` with per-channel beta1 / beta2 (last axis, 3) of ``params.channels``."""
    b1 = np.asarray(params.channels[0], dtype=np.float32)  # type: ignore[index]
    b2 = np.asarray(params.channels[1], dtype=np.float32)  # type: ignore[index]
    signal = np.maximum(v, np.float32(0.0))
    if params.poisson and np.any(b1 > 0):
        safe = np.where(b1 > 0, b1, np.float32(1.0))
        shot = rng.poisson(signal / safe).astype(np.float32) * safe
        out = np.where(b1 > 0, shot, v).astype(np.float32)
        out += rng.standard_normal(v.shape, dtype=np.float32) * np.sqrt(b2)
        return out
    sigma = np.sqrt(signal * b1 + b2)
    out = normals if normals is not None else rng.standard_normal(v.shape, dtype=np.float32)
    out *= sigma
    out += v
    return out

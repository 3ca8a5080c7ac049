"""Camera noise n of the degradation model: shot + read noise on linear light.

The variance of the noise at a pixel of (blurred) linear value v is ``beta1 * v + beta2``:
beta1 is the shot-noise gain, beta2 the read-noise variance, both in the units of v. The
heteroscedastic Gaussian is the usual approximation; ``poisson=True`` draws the exact
Poisson-Gaussian form ``beta1 * Poisson(v / beta1) + N(0, beta2)`` with the same mean and
variance.

Parameter samplers (``NOISE_SAMPLERS``) draw ``NoiseParams`` from an explicit generator:
``none``, ``fixed`` (config values or uniform ranges), ``unprocessing`` (Brooks et al. 2019)
and ``sidd`` (noise-level functions of the SIDD phones).
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
    """Noise of one pair: variance ``beta1 * v + beta2``; ``extra`` goes to the record meta."""

    beta1: float = 0.0
    beta2: float = 0.0
    poisson: bool = False
    model: str = "none"
    extra: tuple[tuple[str, Any], ...] = ()

    def as_meta(self) -> dict[str, Any]:
        return {
            "noise": self.model,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "poisson": self.poisson,
            **dict(self.extra),
        }


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


NOISE_SAMPLERS: dict[str, Callable[[np.random.Generator, Any], NoiseParams]] = {
    "none": sample_none,
    "fixed": sample_fixed,
    "unprocessing": sample_unprocessing,
    "sidd": sample_sidd,
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


def apply_noise(v: np.ndarray, params: NoiseParams, rng: np.random.Generator) -> np.ndarray:
    """Noisy version of the linear image ``v`` (float32, any shape, values >= 0 expected).

    Returns a new float32 array; negative inputs count as zero signal for the shot noise.
    The result is not clipped (that is C's job).
    """
    v = np.asarray(v, dtype=np.float32)
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
    out = rng.standard_normal(v.shape, dtype=np.float32)
    out *= sigma
    out += v
    return out

"""Per-pair randomness: one generator per (seed, source key, pair index), and the draws.

Each pair owns its generator, so a pair's content never depends on the number of workers,
the order of work, or which other sources are present. Source keys are hashed with BLAKE2b
(stable across processes and Python versions, unlike ``hash()``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from lpie_data.synth.config import SynthConfig
from lpie_data.synth.noise import NoiseParams, sample_noise

Box = tuple[int, int, int, int]


def key_words(key: str) -> list[int]:
    """Four 32-bit words of the BLAKE2b digest of ``key`` (stable entropy for SeedSequence)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def pair_rng(seed: int, source_key: str, pair_index: int) -> np.random.Generator:
    """The generator of pair ``pair_index`` of ``source_key`` under ``seed`` (seed >= 0)."""
    entropy = [int(seed), *key_words(source_key), int(pair_index)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def split_score(seed: int, source_key: str) -> float:
    """A stable number in [0, 1) per source image, used to pick the validation images."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *key_words(
        source_key)], spawn_key=(1,))))
    return float(rng.random())


def assign_splits(keys: list[str], seed: int, val_fraction: float) -> dict[str, str]:
    """{key: "train" | "validation"}: the ``round(val_fraction * n)`` images with the lowest
    scores go to validation; with two or more images and a fraction > 0, at least one does,
    and at least one stays in train."""
    n = len(keys)
    if n < 2 or val_fraction <= 0:
        return {k: "train" for k in keys}
    count = min(max(1, round(val_fraction * n)), n - 1)
    ranked = sorted(keys, key=lambda k: (split_score(seed, k), k))
    val = set(ranked[:count])
    return {k: "validation" if k in val else "train" for k in keys}


@dataclass(frozen=True)
class PairParams:
    """Everything drawn for one pair (all recorded in the meta)."""

    box: Box
    exposure: float
    x_max: float
    psf_index: int
    psf_rotation: float
    noise: NoiseParams

    def as_meta(self) -> dict[str, Any]:
        return {
            "box": list(self.box),
            "exposure": self.exposure,
            "x_max": self.x_max if np.isfinite(self.x_max) else None,  # None: no clip
            "psf_rotation": self.psf_rotation,
            **self.noise.as_meta(),
        }


def uniform_draw(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A uniform draw from [lo, hi]; always consumes exactly one number from ``rng``."""
    lo, hi = bounds
    u = float(rng.random())
    if lo == hi or not np.isfinite(hi):
        return hi
    return lo + u * (hi - lo)


def draw_pair_params(
    rng: np.random.Generator, config: SynthConfig, source_shape: tuple[int, int], n_psfs: int
) -> PairParams:
    """Draw one pair's crop box, exposure, x_max, PSF, rotation and noise, in that order.

    The crop is ``config.crop`` square, shrunk to the source where the source is smaller.
    Every draw is made even when its range is a single value, so changing one range leaves
    the other draws of a pair unchanged.
    """
    h, w = source_shape
    ch, cw = min(config.crop, h), min(config.crop, w)
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    exposure = uniform_draw(rng, config.exposure)
    x_max = uniform_draw(rng, config.x_max)
    psf_index = int(rng.integers(n_psfs))
    rotation = uniform_draw(rng, (-config.psf_rotation, config.psf_rotation))
    noise = sample_noise(rng, config)
    return PairParams((y, x, ch, cw), exposure, x_max, psf_index, rotation, noise)

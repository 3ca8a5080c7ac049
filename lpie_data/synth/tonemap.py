"""Tone maps gamma(.) of the degradation model and how their output is stored.

Every tone map takes a float32 H x W x 3 array of non-negative linear light and returns a new
float32 array of the same shape:

- ``reinhard``: ``x / (x + 0.25)`` (DISCNet / MIPI UDC), values in [0, 1).
- ``srgb``: the sRGB transfer curve (IEC 61966-2-1) of ``min(x, 1)``, values in [0, 1].
- ``none``: the identity (linear HDR data, values as given).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lpie_data.errors import ConfigError, DataError
from lpie_data.valuespace import linear_to_srgb, srgb_to_linear

REINHARD_KNEE = 0.25
FLOAT16_MAX = 65504.0


def reinhard(x: np.ndarray) -> np.ndarray:
    """``x / (x + 0.25)``: [0, inf) -> [0, 1), float32."""
    x = np.asarray(x, dtype=np.float32)
    out = np.add(x, np.float32(REINHARD_KNEE), out=np.empty_like(x))
    np.divide(x, out, out=out)
    return out


def reinhard_inverse(y: np.ndarray) -> np.ndarray:
    """Inverse of :func:`reinhard`: ``y * 0.25 / (1 - y)`` for y in [0, 1)."""
    y = np.asarray(y, dtype=np.float32)
    return y * np.float32(REINHARD_KNEE) / (np.float32(1.0) - y)


def srgb(x: np.ndarray) -> np.ndarray:
    """sRGB encoding of linear light clipped to [0, 1] (a display saturates at white), float32."""
    return linear_to_srgb(np.minimum(np.asarray(x, dtype=np.float32), np.float32(1.0)))


def srgb_inverse(y: np.ndarray) -> np.ndarray:
    """Inverse sRGB curve: encoded values in [0, 1] -> linear light in [0, 1], float32."""
    return srgb_to_linear(np.clip(np.asarray(y, dtype=np.float32), 0.0, 1.0))


def identity(x: np.ndarray) -> np.ndarray:
    """No tone map: linear values unchanged, as float32."""
    return np.array(x, dtype=np.float32, copy=True)


TONE_MAPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "reinhard": reinhard,
    "srgb": srgb,
    "none": identity,
}


def get_tone_map(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The tone map called ``name``; ConfigError listing the valid names otherwise."""
    try:
        return TONE_MAPS[name]
    except KeyError:
        raise ConfigError(
            f"tone_map: unknown tone map {name!r}; valid: {', '.join(TONE_MAPS)}"
        ) from None


def storage_dtype(tone_map: str) -> np.dtype:
    """How tone-mapped images are stored in the records.

    Bounded tone maps (values in [0, 1]) are stored as uint16 (readers divide by 65535; the
    round-trip error is at most 7.7e-6); linear HDR data (``none``) as float16 (relative error
    below 1e-3, values up to 65504).
    """
    get_tone_map(tone_map)
    return np.dtype(np.float16) if tone_map == "none" else np.dtype(np.uint16)


def encode_for_storage(y: np.ndarray, tone_map: str) -> np.ndarray:
    """A tone-mapped float32 H x W x 3 image as stored: uint16 (bounded maps) or float16 (none)."""
    dtype = storage_dtype(tone_map)
    if dtype == np.uint16:
        scaled = np.clip(y, 0.0, 1.0) * np.float32(65535.0)
        np.rint(scaled, out=scaled)
        return scaled.astype(np.uint16)
    peak = float(np.max(y)) if y.size else 0.0
    if peak > FLOAT16_MAX:
        raise DataError(
            f"linear value {peak:g} exceeds the float16 range ({FLOAT16_MAX:g}); "
            "lower exposure or x_max, or use a bounded tone map"
        )
    return y.astype(np.float16)

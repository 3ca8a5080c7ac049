"""Tone maps gamma(.) of the degradation model and how their output is stored.

Every tone map takes a float32 H x W x 3 array of non-negative linear light and returns a new
float32 array of the same shape, in the value space :data:`TONE_MAP_SPACES` names (the maps
themselves are :mod:`lpie_data.valuespace`'s; none is written again here):

- ``reinhard``: ``x / (x + 0.25)`` (DISCNet / MIPI UDC), values in [0, 1).
- ``srgb``: the sRGB transfer curve (IEC 61966-2-1) of ``min(x, 1)``, values in [0, 1].
- ``none``: the identity (linear HDR data, values as given).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lpie_data import valuespace
from lpie_data.errors import ConfigError
from lpie_data.valuespace import (  # noqa: F401 - re-exported for the synth API
    FLOAT16_MAX,
    REINHARD_KNEE,
    TONE_MAP_SPACES,
    reinhard,
    reinhard_inverse,
)

#: sRGB encoding of linear light clipped to [0, 1] (a display saturates at white), float32.
srgb = valuespace.linear_to_srgb
#: Inverse sRGB curve: encoded values in [0, 1] -> linear light in [0, 1], float32.
srgb_inverse = valuespace.srgb_to_linear


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


def value_space(tone_map: str) -> str:
    """The value space that the tone map ``tone_map`` produces (ConfigError if unknown)."""
    get_tone_map(tone_map)
    return TONE_MAP_SPACES[tone_map]


def storage_dtype(tone_map: str) -> np.dtype:
    """How tone-mapped images are stored in the records: uint16 for the bounded maps (readers
    divide by 65535; round-trip error at most 7.7e-6), float16 for ``none`` (relative error
    below 1e-3, values up to 65504). See :func:`lpie_data.valuespace.storage_dtype`."""
    return valuespace.storage_dtype(value_space(tone_map))


def encode_for_storage(y: np.ndarray, tone_map: str) -> np.ndarray:
    """A tone-mapped float32 H x W x 3 image as stored: uint16 (bounded maps) or float16 (none)."""
    return valuespace.encode(y, value_space(tone_map))

"""The value space of an image array: what its numbers mean, and how to go between spaces.

Three spaces, each a float32 H x W x C array (any leading axes are fine):

- ``linear``: scene-referred linear light, >= 0, may exceed 1 (HDR; UDC SYNTH reaches 500).
- ``reinhard``: ``x / (x + 0.25)`` of linear light (DISCNet / MIPI UDC), values in [0, 1).
- ``srgb``: the IEC 61966-2-1 transfer curve of ``min(x, 1)``, values in [0, 1] (photos).

Every stage (datasets, synthesis, training, export, evaluate, enhance, preview) goes between
spaces through this module only. Storage in the records: bounded spaces as uint16 (or uint8 for
8-bit sources), ``linear`` as float16.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lpie_data.errors import ConfigError

REINHARD_KNEE = 0.25
FLOAT16_MAX = 65504.0

#: name -> (bounded to [0, 1], what it is), in the order help texts list them.
VALUE_SPACES: dict[str, tuple[bool, str]] = {
    "linear": (False, "scene-referred linear light, >= 0, may exceed 1"),
    "reinhard": (True, "x / (x + 0.25) of linear light, [0, 1)"),
    "srgb": (True, "sRGB transfer curve (IEC 61966-2-1) of min(linear, 1), [0, 1]"),
}

#: The value space that each synth tone map produces.
TONE_MAP_SPACES: dict[str, str] = {"reinhard": "reinhard", "srgb": "srgb", "none": "linear"}


def check_space(name: str) -> str:
    """``name`` if it is a value space; ConfigError listing the valid ones otherwise."""
    if name not in VALUE_SPACES:
        raise ConfigError(f"unknown value space {name!r}; valid: {', '.join(VALUE_SPACES)}")
    return name


def is_bounded(space: str) -> bool:
    """Whether values of ``space`` lie in [0, 1] (what LPIENet's output range covers)."""
    return VALUE_SPACES[check_space(space)][0]


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """Inverse sRGB curve: encoded values in [0, 1] -> linear light in [0, 1], float32."""
    v = np.clip(np.asarray(v, dtype=np.float32), 0.0, 1.0)
    low = v / np.float32(12.92)
    high = np.power((v + np.float32(0.055)) / np.float32(1.055), np.float32(2.4), dtype=np.float32)
    return np.where(v <= 0.04045, low, high).astype(np.float32, copy=False)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """sRGB curve of linear light clipped to [0, 1] (a display saturates at white), float32."""
    v = np.clip(np.asarray(v, dtype=np.float32), 0.0, 1.0)
    high = np.float32(1.055) * np.power(v, np.float32(1 / 2.4), dtype=np.float32)
    high -= np.float32(0.055)
    return np.where(v <= 0.0031308, v * np.float32(12.92), high).astype(np.float32, copy=False)


def reinhard(x: np.ndarray) -> np.ndarray:
    """``x / (x + 0.25)``: linear [0, inf) -> [0, 1), float32 (negative inputs clipped to 0)."""
    x = np.asarray(x, dtype=np.float32)
    x = np.maximum(x, np.float32(0.0), out=np.empty_like(x))
    out = np.add(x, np.float32(REINHARD_KNEE), out=np.empty_like(x))
    np.divide(x, out, out=out)
    return out


def reinhard_inverse(y: np.ndarray) -> np.ndarray:
    """Inverse of :func:`reinhard`: ``y * 0.25 / (1 - y)``; y clipped to [0, 1 - 1e-6], float32."""
    y = np.clip(np.asarray(y, dtype=np.float32), 0.0, np.float32(1.0 - 1e-6))
    return y * np.float32(REINHARD_KNEE) / (np.float32(1.0) - y)


def _linear(x: np.ndarray) -> np.ndarray:
    return np.maximum(np.asarray(x, dtype=np.float32), np.float32(0.0))


_TO_LINEAR = {"linear": _linear, "reinhard": reinhard_inverse, "srgb": srgb_to_linear}
_FROM_LINEAR = {"linear": _linear, "reinhard": reinhard, "srgb": linear_to_srgb}


def to_linear(x: np.ndarray, space: str) -> np.ndarray:
    """Values of ``space`` -> linear light, float32 of the same shape."""
    return _TO_LINEAR[check_space(space)](x)


def from_linear(x: np.ndarray, space: str) -> np.ndarray:
    """Linear light -> values of ``space``, float32 of the same shape (sRGB clips at 1)."""
    return _FROM_LINEAR[check_space(space)](x)


def convert(x: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Values of space ``src`` -> values of space ``dst`` (float32); the identity when equal."""
    check_space(src)
    check_space(dst)
    if src == dst:
        return np.asarray(x, dtype=np.float32)
    return from_linear(to_linear(x, src), dst)


def tf_convert(x: Any, src: str, dst: str) -> Any:
    """:func:`convert` as TensorFlow ops (for tf.data maps and graphs); float32 tensor in and out.

    Same formulas as the numpy functions (they agree to float32 rounding; a test checks it).
    """
    import tensorflow as tf

    check_space(src)
    check_space(dst)
    x = tf.cast(x, tf.float32)
    if src == dst:
        return x
    if src == "reinhard":
        y = tf.clip_by_value(x, 0.0, 1.0 - 1e-6)
        lin = y * REINHARD_KNEE / (1.0 - y)
    elif src == "srgb":
        v = tf.clip_by_value(x, 0.0, 1.0)
        lin = tf.where(v <= 0.04045, v / 12.92, tf.pow((v + 0.055) / 1.055, 2.4))
    else:
        lin = tf.maximum(x, 0.0)
    if dst == "reinhard":
        return lin / (lin + REINHARD_KNEE)
    if dst == "srgb":
        v = tf.clip_by_value(lin, 0.0, 1.0)
        return tf.where(v <= 0.0031308, v * 12.92, 1.055 * tf.pow(v, 1 / 2.4) - 0.055)
    return lin


def storage_dtype(space: str) -> np.dtype:
    """How images of ``space`` are stored when made as float: uint16 if bounded, else float16.

    (Sources stored as they come keep their own dtype: SIDD and GoPro PNGs as uint8.)
    uint16 round-trips [0, 1] within 7.7e-6; float16 keeps a relative error below 1e-3 up to 65504.
    """
    return np.dtype(np.uint16) if is_bounded(space) else np.dtype(np.float16)


def encode(y: np.ndarray, space: str) -> np.ndarray:
    """Float32 values of ``space`` as stored (:func:`storage_dtype`): bounded spaces as uint16
    ``round(65535 * clip(y, 0, 1))`` (readers divide by 65535), ``linear`` as float16.

    DataError when a linear value exceeds the float16 range (65504).
    """
    if storage_dtype(space) == np.uint16:
        scaled = np.clip(np.asarray(y, dtype=np.float32), 0.0, 1.0)
        scaled *= np.float32(65535.0)
        np.rint(scaled, out=scaled)
        return scaled.astype(np.uint16)
    y = np.asarray(y)
    peak = float(np.max(y)) if y.size else 0.0
    if peak > FLOAT16_MAX:
        from lpie_data.errors import DataError

        raise DataError(
            f"linear value {peak:g} exceeds the float16 range ({FLOAT16_MAX:g}); "
            "lower the exposure or x_max, or store a bounded value space (reinhard, srgb)"
        )
    return y.astype(np.float16)


#: The value space of each ``lpie-data prepare`` source (``udc`` depends on ``--tonemap``).
SOURCE_SPACES: dict[str, str] = {"sidd": "srgb", "gopro": "srgb"}
#: ``prepare udc --tonemap`` -> value space.
UDC_TONEMAP_SPACES: dict[str, str] = {"reinhard": "reinhard", "none": "linear"}


def manifest_value_space(manifest: dict[str, Any]) -> tuple[str | None, bool]:
    """(space, assumed) from a loaded manifest: its ``value_space`` key, or for manifests
    written before the key existed, what the command that made the dataset implies
    (assumed=True). (None, True) when it cannot be told."""
    stored = manifest.get("value_space")
    if stored is not None:
        return check_space(str(stored)), False
    command = str(manifest.get("command", ""))
    arguments = manifest.get("arguments") or {}
    words = command.split()
    kind = words[-1] if words else str(manifest.get("name", ""))
    if kind in SOURCE_SPACES:
        return SOURCE_SPACES[kind], True
    if kind == "udc":
        return UDC_TONEMAP_SPACES.get(str(arguments.get("tonemap", "reinhard"))), True
    if kind == "synth":
        tone_map = manifest.get("tone_map")
        if tone_map is None:
            tone_map = (manifest.get("synth") or arguments.get("config") or {}).get("tone_map")
        return TONE_MAP_SPACES.get(str(tone_map)), True
    return None, True


def value_space_of(path: str) -> tuple[str, bool]:
    """The value space of the dataset at ``path`` and whether it was assumed.

    Returns ``(space, assumed)``: ``assumed`` is False when ``manifest.json`` records
    ``value_space``; True for older manifests, read by what made the dataset (``prepare sidd`` /
    ``gopro``: srgb; ``prepare udc``: by ``--tonemap``; ``synth``: by its ``tone_map``).
    Raises DataError naming the folder when the manifest is missing or the space cannot be told.
    """
    from lpie_data.errors import DataError
    from lpie_data.shards import read_manifest

    manifest = read_manifest(str(path))
    try:
        space, assumed = manifest_value_space(manifest)
    except ConfigError as e:
        raise DataError(f"{path}: manifest.json value_space: {e}") from None
    if space is None:
        raise DataError(
            f"{path}: cannot tell the value space of this dataset (no 'value_space' in "
            f"manifest.json, made by {manifest.get('command', '?')!r}); add "
            '"value_space": "linear" | "reinhard" | "srgb" to its manifest.json'
        )
    return space, assumed

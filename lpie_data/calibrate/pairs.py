"""Pairs of a dataset in linear light, for calibration: (clean target x, degraded input y).

Both images of each pair are mapped to linear light through the dataset's value space
(:func:`lpie_data.valuespace.value_space_of`, :func:`lpie_data.valuespace.to_linear`). For sRGB
datasets this inverts the standard sRGB curve, which only approximates a camera's own pipeline
(its tone curve, denoising and sharpening are unknown), so noise fitted there is the noise of
that approximation.

Clipping: the largest input value of the split, when at least ``CLIP_SHARE`` of the input
pixels sit at it, is taken as the clip level ``x_max`` of C (else there is none); 0 is the
lower clip of every dataset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lpie_data.dataset import iter_pairs
from lpie_data.errors import DataError
from lpie_data.valuespace import to_linear, value_space_of

#: Share of input pixels at the split's maximum from which that maximum counts as a clip level.
CLIP_SHARE = 1e-4
#: Relative distance below the clip level within which a pixel counts as clipped.
CLIP_TOLERANCE = 1e-3


@dataclass(frozen=True)
class LinearPair:
    """One pair in linear light: ``clean`` (target x) and ``degraded`` (input y), float32
    (H, W, 3), values >= 0; ``meta`` is the record's meta."""

    key: str
    clean: np.ndarray
    degraded: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LinearPairs:
    """The pairs of one split in linear light, all of the same size.

    dataset: the dataset path (named in errors). space: its value space. assumed: whether the
    space was inferred from an older manifest. clip: linear clip level of the inputs
    (``inf``: none found).
    """

    dataset: str
    split: str
    space: str
    assumed: bool
    pairs: tuple[LinearPair, ...]
    clip: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.pairs[0].clean.shape[:2]

    def clipped(self, degraded: np.ndarray) -> np.ndarray:
        """Boolean mask (same shape as ``degraded``) of clipped input values (at 0 or ``clip``)."""
        mask = degraded <= 0.0
        if math.isfinite(self.clip):
            mask |= degraded >= np.float32(self.clip * (1.0 - CLIP_TOLERANCE))
        return mask


def meta_value(meta: dict[str, Any], key: str) -> Any:
    """``meta[key]``; a dotted key reads nested objects (``noise_group.iso``); KeyError."""
    value: Any = meta
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def load_linear_pairs(
    path: str, split: str = "train", *, limit: int | None = None, keys: Sequence[str] = ()
) -> LinearPairs:
    """Read a split's pairs and map them to linear light.

    ``limit``: read at most this many pairs (in stored order). ``keys``: meta keys (dotted for
    nested objects) every pair must have (DataError naming the dataset and the first pair
    without one).
    Raises DataError naming the dataset for: no pairs, pairs of different sizes, a value space
    that cannot be told (see ``value_space_of``).
    """
    path = str(path)
    space, assumed = value_space_of(path)
    pairs: list[LinearPair] = []
    for pair in iter_pairs(path, split):
        if limit is not None and len(pairs) >= limit:
            break
        if pairs and pair.input.shape != pairs[0].clean.shape:
            raise DataError(
                f"{path}: pairs of different sizes in split {split!r} "
                f"({pairs[0].key}: {pairs[0].clean.shape[:2]}, "
                f"{pair.key}: {pair.input.shape[:2]}); "
                "calibration needs pairs of one size (prepare with one --tile / --patch)"
            )
        if pair.input.shape != pair.target.shape:
            raise DataError(f"{path}: pair {pair.key}: input and target differ in size")
        for k in keys:
            try:
                meta_value(pair.meta, k)
            except KeyError:
                raise DataError(
                    f"{path}: pair {pair.key} has no meta key {k!r} "
                    f"(its keys: {', '.join(sorted(pair.meta)) or 'none'})"
                ) from None
        pairs.append(
            LinearPair(pair.key, to_linear(pair.target, space), to_linear(pair.input, space),
                       pair.meta)
        )
    if not pairs:
        raise DataError(f"{path}: split {split!r} has no pairs to calibrate from")
    return LinearPairs(path, split, space, assumed, tuple(pairs), _clip_level(pairs))


def _clip_level(pairs: Sequence[LinearPair]) -> float:
    top = max(float(p.degraded.max()) for p in pairs)
    if top <= 0.0:
        return math.inf
    level = np.float32(top * (1.0 - CLIP_TOLERANCE))
    at_top = sum(int(np.count_nonzero(p.degraded >= level)) for p in pairs)
    total = sum(p.degraded.size for p in pairs)
    return top if at_top >= max(2, CLIP_SHARE * total) else math.inf

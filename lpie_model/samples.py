"""Images to calibrate int8 exports on and to check parity with: built-in sample photos, a
dataset split's inputs, random crops, and the mapping into the model's value space."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lpie_data.errors import DataError

SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea")
CALIBRATION_CROP = 256  # int8 calibration crops (ranges do not depend on the image size)


def fit_to_size(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crops (and reflect-pads where smaller) an H x W x C image to exactly `size`."""
    h, w = size
    for axis, want in ((0, h), (1, w)):
        have = image.shape[axis]
        if have < want:
            pad = [(0, 0)] * image.ndim
            pad[axis] = (0, want - have)
            image = np.pad(image, pad, mode="reflect" if have > 1 else "edge")
        elif have > want:
            start = (have - want) // 2
            image = np.take(image, range(start, start + want), axis=axis)
    return image


def sample_photos() -> list[tuple[str, np.ndarray]]:
    """Three of the built-in sample photos (`lpie_data.synth.samples`: scikit-image's bundled
    colour photos, no download) as float32 H x W x 3 sRGB values in [0, 1]."""
    from lpie_data.images import read_image
    from lpie_data.synth.samples import sample_photo_files

    files = sample_photo_files()
    return [(name, read_image(files[name]).astype(np.float32) / 255.0) for name in SAMPLE_PHOTOS]


def dataset_inputs(path: str | Path, split: str, count: int) -> list[tuple[str, np.ndarray]]:
    """The first `count` input images of an lpie dataset split, as (key, float32 H x W x 3)."""
    from lpie_data import iter_pairs

    out = []
    for pair in iter_pairs(str(path), split):
        out.append((pair.key, pair.input))
        if len(out) >= count:
            break
    if not out:
        raise DataError(f"{path}: split {split!r} has no examples")
    return out


def calibration_crops(
    images: Iterable[np.ndarray],
    *,
    count: int = 100,
    crop: tuple[int, int] = (CALIBRATION_CROP, CALIBRATION_CROP),
    per_image: int = 1,
    seed: int = 0,
) -> list[np.ndarray]:
    """Up to `count` random `crop`-sized crops, `per_image` from each image, deterministic in seed.

    Images smaller than `crop` are reflect-padded (see `fit_to_size`).
    """
    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    for image in images:
        h, w = image.shape[:2]
        for _ in range(per_image):
            y = int(rng.integers(0, max(h - crop[0], 0) + 1))
            x = int(rng.integers(0, max(w - crop[1], 0) + 1))
            piece = fit_to_size(image[y : y + crop[0], x : x + crop[1]], crop)
            crops.append(np.ascontiguousarray(piece, dtype=np.float32))
            if len(crops) >= count:
                return crops
    return crops


def dataset_calibration(
    path: str | Path,
    split: str = "train",
    *,
    count: int = 100,
    crop: tuple[int, int] = (CALIBRATION_CROP, CALIBRATION_CROP),
    seed: int = 0,
) -> list[np.ndarray]:
    """`count` calibration crops from the inputs of a dataset split, spread over its pairs."""
    from lpie_data import iter_pairs
    from lpie_data.dataset import split_info

    examples = int(split_info(str(path), split).get("examples", 0)) or count
    per_image = max(1, math.ceil(count / examples))
    crops = calibration_crops(
        (p.input for p in iter_pairs(str(path), split)),
        count=count,
        crop=crop,
        per_image=per_image,
        seed=seed,
    )
    if not crops:
        raise DataError(f"{path}: split {split!r} has no examples to calibrate on")
    return crops


def to_model_space(image: np.ndarray, space: str | None, model: Any) -> np.ndarray:
    """`image` (values of value space `space`) mapped into the value space `model` works in
    (`model.lpie_value_space`); unchanged when either is unknown (None) or they are equal."""
    target = getattr(model, "lpie_value_space", None)
    if space is None or target is None or space == target:
        return image
    from lpie_data.valuespace import convert

    return convert(image, space, target)


def export_inputs(
    model: Any,
    *,
    precision: str,
    size: tuple[int, int] | None = None,
    calibration: str | Path | None = None,
    split: str = "train",
    count: int = 100,
    parity_count: int = 3,
) -> tuple[list[tuple[str, np.ndarray]], list[np.ndarray] | None, list[str]]:
    """The images an export of `model` is checked (parity) and, for int8, calibrated on.

    With a `calibration` dataset: the first `parity_count` inputs of its `split` for parity and
    `count` crops spread over the split for calibration. Without one: the built-in sample
    photos, and crops of them. Every image is mapped into the model's value space (when it
    records one). Calibration crops are at most `CALIBRATION_CROP` a side whatever `size` is:
    ranges do not depend on the image size (a fixed-size export is calibrated on a crop-sized
    twin of the network, see `lpie_model.convert.convert`).

    Returns:
        (parity images as (name, float32 H x W x 3), calibration crops or None unless int8,
        notes for the user).
    """
    crop = tuple(min(s, CALIBRATION_CROP) for s in size or (CALIBRATION_CROP,) * 2)
    notes: list[str] = []
    cal = None
    if calibration is not None:
        from lpie_data.valuespace import value_space_of

        space = value_space_of(str(calibration))[0] if model.lpie_value_space else None
        parity = [(k, to_model_space(x, space, model))
                  for k, x in dataset_inputs(calibration, split, parity_count)]
        if precision == "int8":
            crops = dataset_calibration(calibration, split, count=count, crop=crop)
            cal = [to_model_space(x, space, model) for x in crops]
    else:
        parity = [(k, to_model_space(x, "srgb", model)) for k, x in sample_photos()]
        if precision == "int8":
            notes.append("int8: calibrating on sample photos; pass a calibration dataset for "
                         "ranges that match your inputs")
            cal = calibration_crops([image for _, image in parity], count=count, crop=crop,
                                    per_image=-(-count // len(parity)))
    return parity, cal, notes

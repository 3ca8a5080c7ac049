"""Pictures of pairs for people to look at: contact sheets and extracted image files.

What a person looks at is sRGB: stored values are mapped from the dataset's value space
(:func:`lpie_data.valuespace.value_space_of`) to sRGB (linear light above 1 saturates to white,
as on a display). ``extract_pairs(..., stored=True)`` writes the stored values unchanged instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lpie_data.dataset import iter_pairs, split_info
from lpie_data.errors import ConfigError, DataError
from lpie_data.valuespace import convert, value_space_of


def _fit(img: np.ndarray, height: int) -> np.ndarray:
    """Nearest-neighbour resize to ``height`` rows (keeps the sheet dependency-free)."""
    h, w, _ = img.shape
    width = max(1, round(w * height / h))
    rows = (np.arange(height) * h // height).clip(0, h - 1)
    cols = (np.arange(width) * w // width).clip(0, w - 1)
    return img[rows][:, cols]


def contact_sheet(path: str, split: str, count: int = 4, height: int = 256,
                  gain: float = 4.0) -> np.ndarray:
    """Rows of input | target | ``gain`` x |input - target| for the first ``count`` pairs.

    Images are shown in sRGB (converted from the dataset's value space), the difference
    between those sRGB images. Returns uint8 sRGB (rows * height + gaps) x W x 3.
    """
    if count < 1 or height < 1 or gain <= 0:
        raise ConfigError(f"preview needs count >= 1, height >= 1 and gain > 0 (got count "
                          f"{count}, height {height}, gain {gain})")
    space, _ = value_space_of(path)
    rows = []
    for pair in iter_pairs(path, split):
        inp, tgt = convert(pair.input, space, "srgb"), convert(pair.target, space, "srgb")
        diff = np.clip(np.abs(inp - tgt) * gain, 0, 1)
        cells = [_fit(x, height) for x in (inp, tgt, diff)]
        gap = np.ones((height, 4, 3), np.float32)
        rows.append(np.concatenate([cells[0], gap, cells[1], gap, cells[2]], axis=1))
        if len(rows) == count:
            break
    if not rows:
        raise DataError(f"{path}: split {split!r} has no pairs to preview")
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=1)
              for r in rows]
    sheet = np.concatenate(padded, axis=0)[:-4]
    return (sheet * 255 + 0.5).astype(np.uint8)


def extract_pairs(path: str, split: str, out: Path, count: int = 4, *,
                  stored: bool = False) -> list[Path]:
    """Write the first ``count`` pairs of ``split`` into ``out`` as image files.

    Default: sRGB images to look at, converted from the dataset's value space: 8-bit PNG for
    8-bit data, 16-bit PNG otherwise. ``stored=True``: the stored values unchanged, in their
    stored precision: uint8 -> 8-bit PNG, uint16 -> 16-bit PNG, float16/float32 -> float32 .npy.
    File names are the example key with '/' replaced by '__', plus ``_input`` / ``_target``.
    Returns the written paths (inputs and targets interleaved).
    """
    from lpie_data.images import from_float, write_png

    info = split_info(path, split)
    space = None
    if not stored:
        try:
            space = value_space_of(path)[0]
        except DataError as e:
            raise DataError(f"{e}; or write the stored values unchanged (--stored)") from None
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for n, pair in enumerate(iter_pairs(path, split)):
        if n == count:
            break
        stem = pair.key.replace("/", "__")
        for which, img in (("input", pair.input), ("target", pair.target)):
            dtype = info[f"{which}_dtype"]
            if space is not None:
                f = out / f"{stem}_{which}.png"
                bits = np.uint8 if dtype == "uint8" else np.uint16
                write_png(f, from_float(convert(img, space, "srgb"), bits))
            elif dtype in ("uint8", "uint16"):
                f = out / f"{stem}_{which}.png"
                write_png(f, from_float(img, np.dtype(dtype)))
            else:
                f = out / f"{stem}_{which}.npy"
                np.save(f, img.astype(np.float32))
            written.append(f)
    return written

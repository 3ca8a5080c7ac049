"""Run a restoration model on one image of any size, whole or in blended tiles.

`lpie_model.runtime.open_runner(path)` gives a `Runner` (Keras or LiteRT);
`predict(runner, image, tile=..., overlap=...)` then restores a float32 H x W x 3 image in [0, 1]
of any size:

- Models with a dynamic input size (Keras models, dynamic .tflite exports) run the whole image in
  one call, or tile by tile when `tile` is given (memory bounded for 4K and beyond).
- A fixed-size .tflite model (exported with `--size`) always runs in tiles of its own size; an
  image (or edge tile) smaller than that is reflect-padded up to it and cropped back.

Tiles overlap and are blended with linear ramps: inside an overlap of n pixels, each tile's weight
rises linearly across the middle half of the overlap and is zero over the quarter nearest its own
edge (where zero padding makes a tile's output differ from the whole-image output). The weights
are normalised to add up to one everywhere (for two neighbours they already do), so a region
covered by one tile is that tile's output unchanged. Tile starts are multiples of `runner.align`
(>= the network's pooling factor), which keeps the pooling grid of every tile aligned with the
whole image's: away from seams, tiled and whole-image results agree to float rounding for a fully
convolutional network.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lpie_data.errors import ConfigError, DataError
from lpie_model.runtime import Runner


def tile_spans(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """[start, stop) spans of at most `tile` pixels covering [0, length), neighbours overlapping.

    As few spans as steps of at most `tile - overlap` (rounded down to `align`) allow, spread
    evenly; starts are multiples of `align`, the last span ends at `length`, and neighbours
    overlap by at least `overlap` pixels. One span [0, length) when the axis fits in a tile.
    """
    if length <= tile:
        return [(0, length)]
    stride = (tile - overlap) // align * align
    if stride < align:
        raise ConfigError(
            f"tile {tile} with overlap {overlap} leaves no room to advance in steps of {align} px; "
            "use a larger tile or a smaller overlap"
        )
    steps = -(-(length - tile) // stride)
    # Start k is k * (length - tile) / steps rounded up to `align`: gaps stay <= stride.
    starts = sorted({-(-k * (length - tile) // (steps * align)) * align for k in range(steps + 1)})
    return [(s, min(s + tile, length)) for s in starts]


def blend_weights(spans: list[tuple[int, int]]) -> list[np.ndarray]:
    """Per-span float32 weights along one axis (from `tile_spans`); they add up to 1 everywhere.

    In an overlap of n pixels with a neighbour, a span's raw weight is zero over the quarter of the
    overlap nearest its own edge and rises linearly over the middle half; the raw weights are then
    divided by their sum at each position. For two neighbours the result is exactly the linear
    cross-fade w and 1 - w; an edge on the image border needs no ramp.
    """
    length = spans[-1][1]
    raw = []
    for k, (start, stop) in enumerate(spans):
        w = np.ones(stop - start, dtype=np.float64)
        if k > 0:
            n = spans[k - 1][1] - start
            w[:n] = np.minimum(w[:n], _ramp(n))
        if k + 1 < len(spans):
            n = stop - spans[k + 1][0]
            w[len(w) - n :] = np.minimum(w[len(w) - n :], _ramp(n)[::-1])
        raw.append(w)
    total = np.zeros(length, dtype=np.float64)
    for (start, stop), w in zip(spans, raw, strict=True):
        total[start:stop] += w
    if np.any(total == 0):  # only with overlaps larger than half a tile: fall back to a mean
        for (start, stop), w in zip(spans, raw, strict=True):
            w[total[start:stop] == 0] = 1.0
        total[:] = 0
        for (start, stop), w in zip(spans, raw, strict=True):
            total[start:stop] += w
    return [
        (w / total[start:stop]).astype(np.float32)
        for (start, stop), w in zip(spans, raw, strict=True)
    ]


def _ramp(n: int) -> np.ndarray:
    i = np.arange(n, dtype=np.float64) + 0.5
    return np.clip((i - n / 4) / (n / 2), 0.0, 1.0)


def _run_padded(runner: Runner, crop: np.ndarray) -> np.ndarray:
    """Run a crop no larger than the runner's fixed size: reflect-pad up to it, crop back."""
    h, w = crop.shape[:2]
    if runner.fixed_size is None or (h, w) == runner.fixed_size:
        return runner.run(crop)
    fh, fw = runner.fixed_size
    padded = np.pad(crop, ((0, fh - h), (0, fw - w), (0, 0)), mode="reflect")
    return runner.run(padded)[:h, :w]


def predict(
    runner: Runner,
    image: np.ndarray,
    *,
    tile: int | None = None,
    overlap: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Restore one image with `runner`, whole or in overlapping, blended tiles.

    Args:
        runner: from `open_runner`.
        image: float32 H x W x 3 in [0, 1], any H, W >= 1.
        tile: largest tile side in pixels; None or 0 runs the whole image in one call. A
            fixed-size model always uses its own size as the tile.
        overlap: pixels shared by neighbouring tiles (see `blend_weights`); at most a quarter of
            a fixed-size model's side.
        progress: called as `progress(tiles_done, tiles_total)`.

    Returns:
        float32 H x W x 3, the model's output (not clipped here).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"expected an H x W x 3 image, got shape {image.shape}")
    if tile is not None and tile < 0:
        raise ConfigError(f"tile {tile}: must be >= 0 (0: no tiling)")
    if overlap < 0:
        raise ConfigError(f"overlap {overlap}: must be >= 0")
    h, w = image.shape[:2]
    if runner.fixed_size is not None:
        th, tw = runner.fixed_size
        # The model's size is not the user's choice: keep the overlap workable for small sizes.
        overlap = min(overlap, min(th, tw) // 4)
    elif tile:
        th = tw = tile
    else:
        th, tw = h, w
    if h <= th and w <= tw:
        out = _run_padded(runner, image)
        if progress:
            progress(1, 1)
        return out
    rows = tile_spans(h, th, overlap, runner.align)
    cols = tile_spans(w, tw, overlap, runner.align)
    row_w, col_w = blend_weights(rows), blend_weights(cols)
    out = np.zeros((h, w, 3), dtype=np.float32)
    total, done = len(rows) * len(cols), 0
    for (y0, y1), wy in zip(rows, row_w, strict=True):
        for (x0, x1), wx in zip(cols, col_w, strict=True):
            pred = _run_padded(runner, image[y0:y1, x0:x1])
            out[y0:y1, x0:x1] += pred * (wy[:, None, None] * wx[None, :, None])
            done += 1
            if progress:
                progress(done, total)
    return out

"""Run a restoration model on one image of any size: Keras or LiteRT (.tflite), whole or tiled.

`open_runner(path)` gives a `Runner` for a training run directory, a `.weights.h5`, a `.keras` or
a `.tflite` file. `predict(runner, image, tile=..., overlap=...)` then restores a float32
H x W x 3 image in [0, 1] of any size:

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
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lpie_data.errors import ConfigError, DataError
from lpie_model.config import ModelConfig

# Tile starts are multiples of this: covers networks with up to 4 poolings (LPIENet has 2).
DEFAULT_ALIGN = 16


class Runner(Protocol):
    """One model, run on one image per call.

    Attributes:
        description: what was loaded, for messages ("Keras best.weights.h5", "LiteRT m.tflite
            (float32 input, any size)", ...).
        fixed_size: (H, W) for a model that accepts only that size, else None.
        align: tile starts must be multiples of this to keep the pooling grid aligned.
        value_space: the value space of the model's input and output (`lpie_data.valuespace`),
            from the run's model.json or the .tflite's metadata; None when not recorded (older
            runs and exports): images are then fed as they are stored, with no conversion.
    """

    description: str
    fixed_size: tuple[int, int] | None
    align: int
    value_space: str | None

    def run(self, image: np.ndarray) -> np.ndarray:
        """float32 H x W x 3 in [0, 1] -> float32 H x W x 3 (H x W == fixed_size if fixed)."""
        ...


class KerasRunner:
    """A Keras model (e.g. from `lpie_model.load_model`), batch of one, as one traced graph.

    The graph is traced once for any H and W (about 2 s for LPIENet), which then runs each call
    several times faster than eager execution of the layers.
    """

    def __init__(self, model: Any, description: str | None = None) -> None:
        import tensorflow as tf

        self.model = model
        shape = tuple(model.input_shape[1:3])
        self.fixed_size = None if None in shape else (int(shape[0]), int(shape[1]))
        self.align = DEFAULT_ALIGN
        config = getattr(model, "lpie_config", None)
        if config:
            self.align = max(DEFAULT_ALIGN, ModelConfig.from_dict(config).size_multiple)
        self.description = description or f"Keras model {model.name!r}"
        self.value_space: str | None = getattr(model, "lpie_value_space", None)
        h, w = self.fixed_size or (None, None)
        self._fn = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec((1, h, w, 3), tf.float32)],
        )

    def run(self, image: np.ndarray) -> np.ndarray:
        return self._fn(image[None].astype(np.float32, copy=False)).numpy()[0]


class LiteRTRunner:
    """A .tflite model run with the LiteRT interpreter (`ai_edge_litert`, XNNPACK on CPU).

    A thin adapter over `lpie_model.export.TFLiteRunner`, which resizes dynamic models to each
    input (`resize_tensor_input` + `allocate_tensors`, only when the size changes) and converts
    uint8 I/O with the tensors' own scale and zero point.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from lpie_model.export import TFLiteRunner

        path = Path(path)
        self._runner = TFLiteRunner(path, num_threads=threads)
        details = self._runner.interpreter.get_input_details()
        if len(details) != 1 or len(self._runner.interpreter.get_output_details()) != 1:
            raise DataError(f"{path}: expected a model with one input and one output tensor")
        signature = [int(v) for v in details[0]["shape_signature"]]
        if len(signature) != 4 or signature[3] != 3:
            raise DataError(f"{path}: input shape {signature} is not [batch, H, W, 3]")
        self.fixed_size = self._runner.input_size
        self.align = DEFAULT_ALIGN
        kind = np.dtype(details[0]["dtype"]).name
        size = "any size" if self.fixed_size is None else "fixed {}x{}".format(*self.fixed_size)
        self.description = f"LiteRT {path.name} ({kind} input, {size})"
        from lpie_model.export import read_metadata

        info = read_metadata(path) or {}
        space = info.get("value_space")
        if space is not None:
            from lpie_data.valuespace import check_space

            try:
                check_space(str(space))
            except ConfigError as e:
                raise DataError(f"{path}: metadata value_space: {e}") from None
        self.value_space: str | None = space

    def run(self, image: np.ndarray) -> np.ndarray:
        return self._runner(image)


def unrecorded_space_note(runner: Runner) -> str | None:
    """What is assumed for a model that records no value space (None when it records one)."""
    if runner.value_space is not None:
        return None
    return (f"{runner.description} records no value space (an older run or export): images are "
            "fed to it as stored, with no value-space conversion")


def open_runner(path: str | Path, *, threads: int | None = None) -> Runner:
    """A Runner for a run directory, `.weights.h5`, `.keras` (Keras) or `.tflite` (LiteRT) file.

    `threads` sets the LiteRT interpreter's thread count (None: its default); Keras uses
    TensorFlow's own thread pools. Raises DataError / ConfigError naming the file.
    """
    path = Path(path)
    if path.suffix == ".tflite":
        return LiteRTRunner(path, threads)
    from lpie_model.checkpoint import load_model

    return KerasRunner(load_model(path), description=f"Keras {path.name}")


# --------------------------------------------------------------------------- tiling


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

"""Running a restoration model: one wrapper per runtime behind one `Runner` interface.

`open_runner(path)` gives a `Runner` for a training run directory, a `.weights.h5`, a `.keras`
(`KerasRunner`) or a `.tflite` file (`LiteRTRunner`, the one LiteRT interpreter wrapper, used by
evaluate, enhance, export's parity check, benchmark and `bench/`). Tiling images of any size over
a runner is `lpie_model.runner.predict`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lpie_data.cores import usable_cores
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

    `model`: a .tflite path or its bytes. Takes float32 images in [0, 1] (H x W x 3 or
    B x H x W x 3; `run` and calling the runner) and returns the same shape, float32. Dynamic-size
    models are resized to each input (`resize_tensor_input` + `allocate_tensors`, only when the
    size changes); fixed-size models need inputs of their size. uint8 I/O models get the input
    quantized and the output dequantized here with the tensors' own scale and zero point.
    `threads`: interpreter threads; None (default): all CPU cores; 0: not set (the runtime's
    own default).
    """

    def __init__(self, model: bytes | str | Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from lpie_model.tflite_model import read_metadata

        name = "model" if isinstance(model, bytes) else str(model)
        if threads is None:
            threads = usable_cores()
        kwargs: dict[str, Any] = {"num_threads": threads or None}
        if isinstance(model, bytes):
            kwargs["model_content"] = model
        else:
            if not Path(model).is_file():
                raise DataError(f"{model}: no such .tflite file")
            kwargs["model_path"] = str(model)
        try:
            self.interpreter = Interpreter(**kwargs)
        except ValueError as e:
            raise DataError(f"{name}: {e}") from None
        details = self.interpreter.get_input_details()
        if len(details) != 1 or len(self.interpreter.get_output_details()) != 1:
            raise DataError(f"{name}: expected a model with one input and one output tensor")
        signature = [int(v) for v in details[0]["shape_signature"]]
        if len(signature) != 4 or signature[3] != 3:
            raise DataError(f"{name}: input shape {signature} is not [batch, H, W, 3]")
        self._in = details[0]
        self._out = self.interpreter.get_output_details()[0]
        self.fixed_size: tuple[int, int] | None = (
            None if signature[1] < 0 or signature[2] < 0 else (signature[1], signature[2])
        )
        self._shape: tuple[int, ...] | None = None
        self.align = DEFAULT_ALIGN
        kind = np.dtype(details[0]["dtype"]).name
        size = "any size" if self.fixed_size is None else "fixed {}x{}".format(*self.fixed_size)
        shown = "model" if isinstance(model, bytes) else Path(model).name
        self.description = f"LiteRT {shown} ({kind} input, {size})"
        space = (read_metadata(model) or {}).get("value_space")
        if space is not None:
            from lpie_data.valuespace import check_space

            try:
                check_space(str(space))
            except ConfigError as e:
                raise DataError(f"{name}: metadata value_space: {e}") from None
        self.value_space: str | None = space

    def prepare(self, shape: Sequence[int]) -> None:
        """Resizes (dynamic models) and allocates for a B x H x W x 3 input shape."""
        shape = tuple(int(s) for s in shape)
        if shape == self._shape:
            return
        if self.fixed_size is not None and tuple(shape[1:3]) != self.fixed_size:
            h, w = self.fixed_size
            raise DataError(f"input of size {shape[1]}x{shape[2]}: this model takes only {h}x{w}")
        if tuple(self._in["shape"]) != shape:
            self.interpreter.resize_tensor_input(self._in["index"], shape)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self._shape = shape

    def set_input(self, batch: np.ndarray) -> None:
        """Prepares for and copies in a B x H x W x 3 float batch in [0, 1]."""
        self.prepare(batch.shape)
        dtype = self._in["dtype"]
        if dtype == np.float32:
            data = batch.astype(np.float32, copy=False)
        else:
            scale, zero = self._in["quantization"]
            info = np.iinfo(dtype)
            data = np.clip(np.round(batch / scale + zero), info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self._in["index"], data)

    def invoke(self) -> None:
        self.interpreter.invoke()

    def get_output(self) -> np.ndarray:
        out = self.interpreter.get_tensor(self._out["index"])
        if out.dtype != np.float32:
            scale, zero = self._out["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        single = image.ndim == 3
        batch = image[None] if single else image
        if batch.ndim != 4 or batch.shape[3] != 3:
            raise DataError(f"input of shape {image.shape}: expected H x W x 3 or B x H x W x 3")
        self.set_input(batch)
        self.invoke()
        out = self.get_output()
        return out[0] if single else out

    def set_random_input(self, seed: int = 0) -> None:
        """Fills the (prepared) input with seeded random values of its dtype: float32 in [0, 1),
        or integers over a quantised dtype's whole range (for timing; see `lpie_model.latency`).
        """
        if self._shape is None:
            self.prepare(self._in["shape"])
        self.interpreter.set_tensor(self._in["index"], random_input(self._in, seed))

    def run(self, image: np.ndarray) -> np.ndarray:
        """float32 H x W x 3 in [0, 1] -> float32 H x W x 3 (the `Runner` interface)."""
        return self(image)


def random_input(detail: dict[str, Any], seed: int = 0) -> np.ndarray:
    """A seeded random tensor for an interpreter input (``get_input_details()`` entry):
    float32 in [0, 1), or integers over the whole range of a quantised input's dtype."""
    rng = np.random.default_rng(seed)
    if detail["dtype"] == np.float32:
        return rng.random(detail["shape"], dtype=np.float32)
    info = np.iinfo(detail["dtype"])
    return rng.integers(info.min, info.max + 1, detail["shape"]).astype(detail["dtype"])


def unrecorded_space_note(runner: Runner) -> str | None:
    """What is assumed for a model that records no value space (None when it records one)."""
    if runner.value_space is not None:
        return None
    return (f"{runner.description} records no value space (an older run or export): images are "
            "fed to it as stored, with no value-space conversion")


def open_runner(path: str | Path, *, threads: int | None = None,
                build: Mapping[str, Any] | None = None) -> Runner:
    """A Runner for a run directory, `.weights.h5`, `.keras` (Keras) or `.tflite` (LiteRT) file.

    `threads` sets the LiteRT interpreter's thread count (None: its default); Keras uses
    TensorFlow's own thread pools. `build`: the architecture of bare weights (`load_model`).
    Raises DataError / ConfigError naming the file.
    """
    path = Path(path)
    if path.suffix == ".tflite":
        if build is not None:
            raise DataError(f"{path}: a .tflite file holds its architecture; leave --arch out")
        return LiteRTRunner(path, threads)
    from lpie_model.checkpoint import load_model

    return KerasRunner(load_model(path, build), description=f"Keras {path.name}")

"""TFLite export of LPIENet (builtin ops only), a TFLite runner, and a parity report.

Route: `model.export(dir)` (SavedModel) + `tf.lite.TFLiteConverter.from_saved_model(dir)` with
builtin ops only (`from_keras_model` fails on this network; `format="litert"` lets Flex ops in).
The default export takes any H and W (resize the input tensor, then allocate); `size=(H, W)`
exports a fixed-shape model, which XNNPACK runs faster. Precisions:
    - fp32: float weights and activations;
    - fp16: float16 weights (dequantized on load by CPU runtimes; GPU delegates run them in fp16);
    - int8: full-integer weights and activations, calibrated on representative images;
      `io="uint8"` also makes the model's input and output uint8.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lpie_data import storage
from lpie_data.errors import ConfigError, DataError, LpieError, OutputError
from lpie_data.jsonfile import json_safe
from lpie_model.metrics import psnr

PRECISIONS = ("fp32", "fp16", "int8")
IO_TYPES = ("float", "uint8")
# What the parity report checks per precision: (quantity, bound, "max" | "min").
PARITY_TARGETS: dict[str, tuple[str, float, str]] = {
    "fp32": ("max_abs_diff", 1e-4, "max"),
    "fp16": ("psnr_db", 50.0, "min"),
    "int8": ("psnr_db", 35.0, "min"),
}
SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea")
CALIBRATION_CROP = 256
PARITY_MAX_SIDE = 512

Progress = Callable[[str, int, int], None]


class ExportError(LpieError):
    """The converter failed, or produced ops that a stock TFLite runtime cannot run."""


def parse_size(text: str) -> tuple[int, int]:
    """Parses "HxW" (e.g. "1080x1920") into (H, W); raises ConfigError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ConfigError(f"size {text!r}: expected HxW with positive integers, e.g. 256x256")
    return int(m.group(1)), int(m.group(2))


# --------------------------------------------------------------------------- op inspection


def op_names(content: bytes) -> list[str]:
    """Sorted distinct op names of a .tflite flatbuffer ("CONV_2D", ..., custom ops by code)."""
    from ai_edge_litert import schema_py_generated as schema

    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    try:
        model = schema.Model.GetRootAs(content, 0)
        names = set()
        for s in range(model.SubgraphsLength()):
            sub = model.Subgraphs(s)
            for i in range(sub.OperatorsLength()):
                opcode = model.OperatorCodes(sub.Operators(i).OpcodeIndex())
                code = max(opcode.BuiltinCode(), opcode.DeprecatedBuiltinCode())
                if code == schema.BuiltinOperator.CUSTOM:
                    names.add((opcode.CustomCode() or b"CUSTOM").decode())
                else:
                    names.add(codes.get(code, f"BUILTIN_{code}"))
    except Exception as e:  # a truncated or foreign file raises from deep inside flatbuffers
        raise DataError(f"not a readable .tflite model ({e})") from None
    return sorted(names)


def check_builtin_ops(content: bytes) -> list[str]:
    """The model's op names; raises ExportError naming any Flex (TF) or custom op."""
    names = op_names(content)
    from ai_edge_litert import schema_py_generated as schema

    builtin = {k for k in vars(schema.BuiltinOperator) if not k.startswith("_")} - {"CUSTOM"}
    bad = [n for n in names if n not in builtin]
    if bad:
        raise ExportError(
            f"the converted model needs non-builtin ops {', '.join(bad)} "
            "(Flex/custom ops do not run on a stock TFLite runtime)"
        )
    return names


# --------------------------------------------------------------------------- conversion


def convert(
    model: Any,
    *,
    precision: str = "fp32",
    size: tuple[int, int] | None = None,
    io: str = "float",
    calibration: Iterable[np.ndarray] | None = None,
    optimize: bool = True,
    progress: Progress | None = None,
) -> bytes:
    """Converts a Keras LPIENet to a .tflite flatbuffer with builtin ops only.

    Args:
        model: a model from `build_lpienet` / `load_model` (its `lpie_config` is used to rebuild it
            for a fixed size).
        precision: "fp32", "fp16" or "int8".
        size: (H, W) for a fixed-shape model (batch 1); None for any H, W (and batch).
        io: "float" (float32 input/output) or "uint8" (int8 only: uint8 input/output, 0..255).
        calibration: for int8, representative float32 H x W x 3 images in [0, 1] (about 100),
            typically crops (`calibration_crops`, 256 x 256). Quantisation ranges do not depend
            on the image size, so a fixed-size export of any `size` is calibrated on a
            crop-sized twin of the network (see `convert_int8_on_crops`); images of another
            size than the twin's are centre-cropped (or reflect-padded) to it.
        optimize: export the faster graph that computes the same function (see
            `rebuild_for_shape`): the head and the full-resolution spatial convs on
            space-to-depth blocks (smaller XNNPACK indirection buffers: about half the plain
            build's peak memory at 1080x1920), and for float precisions the attention's spatial
            conv in concat form (int8 keeps the split form, whose mean and max inputs then get
            their own quantization scales).
        progress: called as `progress("calibrate", done, total)` while int8 calibrates.

    Raises:
        ConfigError: bad options. ExportError: conversion failed or needs non-builtin ops.
    """
    from lpie_model.lpienet import rebuild_for_shape

    _check_options(precision, io, calibration)
    h, w = size if size is not None else (None, None)
    fused, s2d = optimize and precision != "int8", optimize
    if precision == "int8" and size is not None:
        images = _calibration_images(calibration)
        twin = calibration_twin_size(size, images[0].shape[:2], _size_multiple(model))
        if twin != size:
            return convert_int8_on_crops(
                model, size, twin, images, io=io, s2d_gate=s2d, progress=progress
            )
        calibration = [fit_to_size(x, size) for x in images]
    export_model = rebuild_for_shape(
        model, h, w, fused_attention=fused, s2d_gate=s2d, s2d_full_res=s2d
    )
    return convert_keras(
        export_model,
        precision=precision,
        size=size,
        io=io,
        calibration=calibration,
        progress=progress,
    )


def _size_multiple(model: Any) -> int:
    from lpie_model.lpienet import DEFAULTS, resolve_widths, size_multiple

    config = {**DEFAULTS, **(getattr(model, "lpie_config", None) or {})}
    return size_multiple(resolve_widths(config["variant"], config["widths"]))


def _calibration_images(calibration: Iterable[np.ndarray] | None) -> list[np.ndarray]:
    images = [np.asarray(x, dtype=np.float32) for x in (calibration or [])]
    if not images:
        raise ConfigError("precision 'int8' needs at least one calibration image")
    for x in images:
        if x.ndim != 3 or x.shape[2] != 3:
            raise ConfigError(f"calibration image of shape {x.shape}: expected HxWx3")
    return images


def calibration_twin_size(
    size: tuple[int, int], crop: Sequence[int], multiple: int = 4
) -> tuple[int, int]:
    """The input size of the crop-sized twin that calibrates a fixed-size int8 export.

    Per axis: the export's own size if the crop is at least as large, else the largest size
    <= the crop with the same remainder modulo `multiple` (the network's pooling factor), so
    that the twin's graph has the same ops (padding or not) as the full-size one.
    """
    out = []
    for full, c in zip(size, crop, strict=True):
        c = int(c)
        t = c - (c - full) % multiple if c < full else full
        out.append(t if t >= multiple else full)
    return out[0], out[1]


def convert_int8_on_crops(
    model: Any,
    size: tuple[int, int],
    twin: tuple[int, int],
    calibration: Sequence[np.ndarray],
    *,
    io: str = "float",
    s2d_gate: bool = True,
    progress: Progress | None = None,
) -> bytes:
    """A fixed `size` int8 export calibrated on a `twin`-sized copy of the network.

    TFLiteConverter calibrates by running the float model on every representative input at the
    model's own input size (at 1080 x 1920 with reference kernels: minutes per image). Ranges do
    not depend on the image size, so:

    1. the twin (same layers and weights, input `twin`) is converted with
       `_experimental_calibrate_only`: TFLiteConverter's own calibrator records each tensor's
       min / max over the crops;
    2. the full-size network is converted to fp32 (the same graph at another size: same ops,
       same tensor names, in the same order; checked, else ExportError);
    3. the ranges are copied tensor by tensor into the full-size float model, which the
       converter's own MLIR quantizer (`mlir_quantize`, as `convert()` calls it) then quantizes.

    At the twin's size this gives the same model as a direct conversion (outputs identical).
    """
    from lpie_model.lpienet import rebuild_for_shape

    images = [fit_to_size(np.asarray(x, dtype=np.float32), twin) for x in calibration]
    small = rebuild_for_shape(
        model, *twin, fused_attention=False, s2d_gate=s2d_gate, s2d_full_res=s2d_gate
    )
    calibrated = convert_keras(
        small,
        precision="int8",
        size=twin,
        io=io,
        calibration=images,
        progress=progress,
        calibrate_only=True,
    )
    full = rebuild_for_shape(
        model, *size, fused_attention=False, s2d_gate=s2d_gate, s2d_full_res=s2d_gate
    )
    float_content = convert_keras(full, precision="fp32", size=size)
    return quantize_with_ranges(transfer_ranges(calibrated, float_content), io=io)


def transfer_ranges(calibrated: bytes, target: bytes) -> bytes:
    """Copies the calibration min / max of every tensor of `calibrated` into `target`.

    Both are float .tflite models of the same network at different input sizes (the first from
    a calibrate-only conversion). Raises ExportError if their graphs differ (op sequence,
    tensor names).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    src = flatbuffer_utils.convert_bytearray_to_object(calibrated)
    dst = flatbuffer_utils.convert_bytearray_to_object(target)
    if len(src.subgraphs) != 1 or len(dst.subgraphs) != 1:
        raise ExportError("range transfer expects single-subgraph models")
    a, b = src.subgraphs[0], dst.subgraphs[0]
    ops_a = [src.operatorCodes[o.opcodeIndex].builtinCode for o in a.operators]
    ops_b = [dst.operatorCodes[o.opcodeIndex].builtinCode for o in b.operators]
    names_a = [t.name for t in a.tensors]
    if ops_a != ops_b or names_a != [t.name for t in b.tensors]:
        raise ExportError(
            "the crop-sized calibration twin converted to another graph than the full-size "
            "model; calibrate with crops of the export's size instead"
        )
    copied = 0
    for ta, tb in zip(a.tensors, b.tensors, strict=True):
        qa = ta.quantization
        if qa is None or qa.min is None or qa.max is None:
            continue
        if tb.quantization is None:
            tb.quantization = schema.QuantizationParametersT()
        tb.quantization.min, tb.quantization.max = qa.min, qa.max
        copied += 1
    if copied == 0:
        raise ExportError("the calibrated model holds no ranges")
    return bytes(flatbuffer_utils.convert_object_to_bytearray(dst))


def quantize_with_ranges(calibrated: bytes, *, io: str = "float") -> bytes:
    """Full-integer quantization of a float model carrying calibration ranges (builtin ops).

    The same call TFLiteConverter makes after calibrating (per-channel weights, int8
    activations); `io="uint8"` gives uint8 input and output.
    """
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    dtype = tf.uint8 if io == "uint8" else tf.float32
    try:
        content = bytes(mlir_quantize(calibrated, input_data_type=dtype, output_data_type=dtype))
    except Exception as e:  # ConverterError and friends
        raise ExportError(_converter_message(e)) from None
    check_builtin_ops(content)
    return content


def _check_options(precision: str, io: str, calibration: Iterable[np.ndarray] | None) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if io not in IO_TYPES:
        raise ConfigError(f"unknown io type {io!r}; valid: {', '.join(IO_TYPES)}")
    if io == "uint8" and precision != "int8":
        raise ConfigError("io 'uint8' needs precision 'int8' (float models keep float I/O)")
    if precision == "int8" and calibration is None:
        raise ConfigError("precision 'int8' needs calibration images")


def convert_keras(
    export_model: Any,
    *,
    precision: str = "fp32",
    size: tuple[int, int] | None = None,
    io: str = "float",
    calibration: Iterable[np.ndarray] | None = None,
    progress: Progress | None = None,
    calibrate_only: bool = False,
) -> bytes:
    """Converts a Keras model as it is (already built for `size`, if given); see `convert`.

    With `size`, int8 calibration images must be exactly that size (TFLiteConverter runs the
    float model on each). `calibrate_only` (int8) returns the float model with each tensor's
    calibrated min / max instead of the quantized model (see `convert_int8_on_crops`).
    """
    import tensorflow as tf

    _check_options(precision, io, calibration)
    h, w = size if size is not None else (None, None)
    spec = tf.TensorSpec((1, h, w, 3) if size is not None else (None, None, None, 3), tf.float32)
    with tempfile.TemporaryDirectory(prefix="lpie-export-") as tmp:
        export_model.export(tmp, format="tf_saved_model", verbose=False, input_signature=[spec])
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if precision == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif precision == "int8":
            images = _calibration_images(calibration)
            for x in images:
                if size is not None and x.shape[:2] != tuple(size):
                    want = f"{size[0]}x{size[1]}x3"
                    raise ConfigError(f"calibration image of shape {x.shape}: expected {want}")

            def representative() -> Iterator[list[np.ndarray]]:
                for i, x in enumerate(images):
                    if progress is not None:
                        progress("calibrate", i, len(images))
                    yield [x[None]]
                if progress is not None:
                    progress("calibrate", len(images), len(images))

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter._experimental_calibrate_only = calibrate_only
            if io == "uint8":
                converter.inference_input_type = tf.uint8
                converter.inference_output_type = tf.uint8
        try:
            content = converter.convert()
        except Exception as e:  # ConverterError and friends
            raise ExportError(_converter_message(e)) from None
    content = bytes(content)
    check_builtin_ops(content)
    return content


def _converter_message(e: Exception) -> str:
    text = str(e)
    ops = sorted(set(re.findall(r"\btf\.(\w+)", text)))
    if ops:
        return (
            f"TFLite conversion needs ops that are not TFLite builtins: {', '.join(ops)} "
            "(the model would need the Flex delegate on a phone)"
        )
    first = next((ln for ln in text.splitlines() if "error" in ln.lower()), text[:500])
    return f"TFLite conversion failed: {first.strip()}"


# --------------------------------------------------------------------------- metadata

METADATA_NAME = "lpie"


def model_metadata(model: Any, precision: str, io: str) -> dict[str, Any]:
    """What a .tflite of `model` says about itself (the JSON of its "lpie" metadata entry).

    {"value_space": the space of input and output values (`lpie_data.valuespace`; null when the
    model records none), "input": how to feed it, "output": what it returns, "precision", "io",
    "build": the network's build options, "lpie_version"}.
    """
    from lpie_data import __version__

    space = getattr(model, "lpie_value_space", None)
    values = f"values in the {space!r} value space" if space else "values as stored in the data"
    if io == "uint8":
        scale = "uint8 0..255 for [0, 1]"
    else:
        scale = "float32 in [0, 1]"
    config = getattr(model, "lpie_config", None)
    return {
        "value_space": space,
        "input": f"RGB image, NHWC (1, H, W, 3), {scale}, {values}",
        "output": f"restored image of the input's shape, {scale}, {values}",
        "precision": precision,
        "io": io,
        "build": json_safe(config) if config is not None else None,
        "lpie_version": __version__,
    }


def to_model_space(image: np.ndarray, space: str | None, model: Any) -> np.ndarray:
    """`image` (values of value space `space`) mapped into the value space `model` works in
    (`model.lpie_value_space`); unchanged when either is unknown (None) or they are equal."""
    target = getattr(model, "lpie_value_space", None)
    if space is None or target is None or space == target:
        return image
    from lpie_data.valuespace import convert

    return convert(image, space, target)


def add_metadata(content: bytes, info: dict[str, Any], name: str = METADATA_NAME) -> bytes:
    """The .tflite flatbuffer `content` with `info` as JSON in its `Model.metadata` entry `name`.

    The entry's buffer holds UTF-8 JSON; an earlier entry of that name is replaced and the
    converter's own entries (e.g. "min_runtime_version") are kept. Readable with
    `read_metadata`, or with any flatbuffer reader of the TFLite schema.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    except Exception as e:  # flatbuffers raises from deep inside on foreign bytes
        raise DataError(f"not a readable .tflite model ({e})") from None
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(info, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers = list(model.buffers or [])
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) != name]
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers)
    model.buffers.append(buffer)
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(model: bytes | str | Path, name: str = METADATA_NAME) -> dict[str, Any] | None:
    """The JSON object of a .tflite's metadata entry `name` (see `add_metadata`); None without it.

    `model`: the flatbuffer's bytes or a local path. Raises DataError for unreadable files.
    """
    from ai_edge_litert import schema_py_generated as schema

    where = "model"
    if not isinstance(model, bytes):
        where = str(model)
        try:
            model = Path(model).read_bytes()
        except OSError as e:
            raise DataError(f"{where}: cannot read ({e.strerror})") from None
    try:
        root = schema.Model.GetRootAs(model, 0)
        for i in range(root.MetadataLength()):
            entry = root.Metadata(i)
            if _text(entry.Name()) == name:
                data = root.Buffers(entry.Buffer()).DataAsNumpy()
                info = json.loads(bytes(data).decode())
                return info if isinstance(info, dict) else None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{where}: unreadable {name!r} metadata ({e})") from None
    except Exception as e:  # a truncated or foreign file raises from deep inside flatbuffers
        raise DataError(f"{where}: not a readable .tflite model ({e})") from None
    return None


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


# --------------------------------------------------------------------------- running


class TFLiteRunner:
    """Runs an LPIENet .tflite model with the LiteRT interpreter (XNNPACK on CPU).

    Takes float32 images in [0, 1] (H x W x 3 or B x H x W x 3) and returns the same shape, float32.
    Dynamic-size models are resized to each input; fixed-size models need inputs of their size.
    uint8 I/O models get the input quantized and the output dequantized here. `num_threads`
    defaults to all CPU cores (the interpreter's own default is one thread).
    """

    def __init__(self, model: bytes | str | Path, num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        kwargs: dict[str, Any] = {"num_threads": num_threads or os.cpu_count() or 1}
        if isinstance(model, bytes):
            kwargs["model_content"] = model
        else:
            if not Path(model).is_file():
                raise DataError(f"{model}: no such .tflite file")
            kwargs["model_path"] = str(model)
        try:
            self.interpreter = Interpreter(**kwargs)
        except ValueError as e:
            raise DataError(f"{model if not isinstance(model, bytes) else 'model'}: {e}") from None
        self._in = self.interpreter.get_input_details()[0]
        self._out_index = self.interpreter.get_output_details()[0]["index"]
        signature = self._in["shape_signature"]
        self.input_size: tuple[int, int] | None = (
            None if signature[1] < 0 or signature[2] < 0 else (int(signature[1]), int(signature[2]))
        )
        self._shape: tuple[int, ...] | None = None

    def prepare(self, shape: Sequence[int]) -> None:
        """Resizes (dynamic models) and allocates for a B x H x W x 3 input shape."""
        shape = tuple(int(s) for s in shape)
        if shape == self._shape:
            return
        if self.input_size is not None and tuple(shape[1:3]) != self.input_size:
            h, w = self.input_size
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


# --------------------------------------------------------------------------- images


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
    """scikit-image's bundled colour photos as float32 H x W x 3 in [0, 1] (no download)."""
    from skimage import data

    return [(name, getattr(data, name)().astype(np.float32) / 255.0) for name in SAMPLE_PHOTOS]


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


# --------------------------------------------------------------------------- parity


def parity_report(
    model: Any,
    content: bytes,
    precision: str,
    images: Sequence[tuple[str, np.ndarray]],
    *,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Compares a converted model with the fp32 Keras model on real images.

    Each image is centre-cropped to the model's fixed size (or at most 512 px a side for dynamic
    models). Per image: max |TFLite - Keras| and PSNR of TFLite against Keras (the fp32 reference).

    Returns:
        {"precision", "target": {"quantity", "bound", "kind"}, "images": [...],
         "max_abs_diff", "min_psnr_db", "passed"}.
    """
    runner = TFLiteRunner(content, num_threads=num_threads)
    rows = []
    for name, image in images:
        size = runner.input_size or (
            min(image.shape[0], PARITY_MAX_SIDE),
            min(image.shape[1], PARITY_MAX_SIDE),
        )
        x = fit_to_size(np.asarray(image, dtype=np.float32), size)
        want = np.asarray(model(x[None], training=False))[0]
        got = runner(x)
        rows.append(
            {
                "name": name,
                "size": [int(x.shape[0]), int(x.shape[1])],
                "max_abs_diff": float(np.max(np.abs(got.astype(np.float64) - want))),
                "psnr_db": psnr(want, got),
            }
        )
    quantity, bound, kind = PARITY_TARGETS[precision]
    worst_diff = max(r["max_abs_diff"] for r in rows)
    worst_psnr = min(r["psnr_db"] for r in rows)
    value = worst_diff if quantity == "max_abs_diff" else worst_psnr
    return {
        "precision": precision,
        "target": {"quantity": quantity, "bound": bound, "kind": kind},
        "images": rows,
        "max_abs_diff": worst_diff,
        "min_psnr_db": worst_psnr,
        "passed": bool(value <= bound if kind == "max" else value >= bound),
    }


def export_tflite(
    model: Any,
    out: str | Path,
    *,
    precision: str = "fp32",
    size: tuple[int, int] | None = None,
    io: str = "float",
    calibration: Iterable[np.ndarray] | None = None,
    parity_images: Sequence[tuple[str, np.ndarray]] | None = None,
    overwrite: bool = True,
    num_threads: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Converts, writes `out` (.tflite), checks parity and writes the report next to it.

    The report goes to `out` with suffix `.json` (model.tflite -> model.json). `parity_images`
    default to scikit-image's sample photos. See `convert` for the other arguments.

    Returns:
        The report: {"model", "precision", "io", "input_size", "bytes", "params", "ops",
        "build", "value_space", "metadata", "parity"}. The .tflite carries `model_metadata` as
        its "lpie" metadata entry (`read_metadata` reads it back).

    Raises:
        ConfigError, ExportError (see `convert`); OutputError: `out` cannot be written.
    """
    out = str(out)
    if not out.endswith(".tflite"):
        raise OutputError(f"{out}: the output file must end in .tflite")
    report_path = out[: -len(".tflite")] + ".json"
    if not overwrite and storage.exists(out):
        raise OutputError(f"{out}: exists (pass overwrite to replace it)")
    if not storage.is_remote(out) and not Path(out).resolve().parent.is_dir():
        raise OutputError(f"{Path(out).parent}: no such directory")
    content = convert(
        model, precision=precision, size=size, io=io, calibration=calibration, progress=progress
    )
    info = model_metadata(model, precision, io)
    content = add_metadata(content, info)
    try:
        storage.write_atomic(out, content)
    except OSError as e:
        raise OutputError(f"{out}: cannot write ({e})") from None
    images = parity_images if parity_images is not None else sample_photos()
    config = getattr(model, "lpie_config", None)
    report = {
        "model": storage.basename(out),
        "precision": precision,
        "io": io,
        "input_size": list(size) if size is not None else None,
        "bytes": len(content),
        "params": int(model.count_params()),
        "ops": op_names(content),
        "build": json_safe(config) if config is not None else None,
        "value_space": info["value_space"],
        "metadata": info,
        "parity": parity_report(model, content, precision, images, num_threads=num_threads),
    }
    try:
        storage.write_atomic(report_path, (json.dumps(report, indent=2) + "\n").encode())
    except OSError as e:
        raise OutputError(f"{report_path}: cannot write ({e})") from None
    return report


"""Conversion of a Keras LPIENet to a .tflite flatbuffer with builtin ops only (fp32, fp16, int8).

Route: `model.export(dir)` (SavedModel) + `tf.lite.TFLiteConverter.from_saved_model(dir)` with
builtin ops only (`from_keras_model` fails on this network; `format="litert"` lets Flex ops in).
The default export takes any H and W (resize the input tensor, then allocate); `size=(H, W)`
exports a fixed-shape model, which XNNPACK runs faster. Precisions:
    - fp32: float weights and activations;
    - fp16: float16 weights (dequantized on load by CPU runtimes; GPU delegates run them in fp16);
    - int8: full-integer weights and activations, calibrated on representative images;
      `io="uint8"` also makes the model's input and output uint8. The quantizer leaves ELU in
      float (DEQUANTIZE -> ELU -> QUANTIZE) and the output clip as an int8 MINIMUM that XNNPACK
      does not run; `lpie_model.int8_rewrite.rewrite_int8` makes each such ELU one int8 ELU and
      drops the MINIMUM where it is an identity (same outputs).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import StrEnum
from typing import Any

import numpy as np

from lpie_data.errors import ConfigError
from lpie_model.config import ModelConfig
from lpie_model.int8_rewrite import rewrite_int8
from lpie_model.samples import fit_to_size
from lpie_model.tflite_model import ExportError, check_builtin_ops


class Precision(StrEnum):
    """Export precisions (the choices of ``lpie-model export --precision``)."""

    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class IOType(StrEnum):
    """Input and output types of an export: float32, or uint8 (int8 models only)."""

    float = "float"
    uint8 = "uint8"


PRECISIONS = tuple(p.value for p in Precision)
IO_TYPES = tuple(t.value for t in IOType)
Progress = Callable[[str, int, int], None]


def parse_size(text: str) -> tuple[int, int]:
    """Parses "HxW" (e.g. "1080x1920") into (H, W); raises ConfigError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ConfigError(f"size {text!r}: expected HxW with positive integers, e.g. 256x256")
    return int(m.group(1)), int(m.group(2))


def convert(
    model: Any,
    *,
    precision: str = "fp32",
    size: tuple[int, int] | None = None,
    io: str = "float",
    calibration: Iterable[np.ndarray] | None = None,
    optimize: bool = True,
    progress: Progress | None = None,
    simplify_int8: bool = True,
    memory: str = "auto",
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
        simplify_int8: for int8, run ELU in int8 and drop identity clips
            (`int8_rewrite.rewrite_int8`); False keeps the quantizer's graph (A/B comparisons).
        memory: "auto", "low" or "fast": whether `optimize` also runs the full-resolution
            spatial convs on space-to-depth blocks (less memory, more CPU time; see
            `lpie_model.deploy.low_memory_layout`).

    Raises:
        ConfigError: bad options. ExportError: conversion failed or needs non-builtin ops.
    """
    from lpie_model.deploy import low_memory_layout, rebuild_for_shape

    check_options(precision, io, calibration)
    h, w = size if size is not None else (None, None)
    fused, s2d = optimize and precision != "int8", optimize
    full_res = s2d and low_memory_layout(memory, size, precision)
    if precision == "int8" and size is not None:
        images = _calibration_images(calibration)
        twin = calibration_twin_size(size, images[0].shape[:2], _size_multiple(model))
        if twin != size:
            return convert_int8_on_crops(
                model, size, twin, images, io=io, s2d_gate=s2d, progress=progress,
                s2d_full_res=full_res, simplify_int8=simplify_int8,
            )
        calibration = [fit_to_size(x, size) for x in images]
    export_model = rebuild_for_shape(
        model, h, w, fused_attention=fused, s2d_gate=s2d, s2d_full_res=full_res
    )
    return convert_keras(
        export_model,
        precision=precision,
        size=size,
        io=io,
        calibration=calibration,
        progress=progress,
        simplify_int8=simplify_int8,
    )


def _size_multiple(model: Any) -> int:
    return ModelConfig.from_dict(getattr(model, "lpie_config", None) or {}).size_multiple


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
    simplify_int8: bool = True,
    s2d_full_res: bool | None = None,
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
    from lpie_model.deploy import rebuild_for_shape

    images = [fit_to_size(np.asarray(x, dtype=np.float32), twin) for x in calibration]
    full_res = s2d_gate if s2d_full_res is None else s2d_full_res  # both graphs alike
    small = rebuild_for_shape(
        model, *twin, fused_attention=False, s2d_gate=s2d_gate, s2d_full_res=full_res
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
        model, *size, fused_attention=False, s2d_gate=s2d_gate, s2d_full_res=full_res
    )
    float_content = convert_keras(full, precision="fp32", size=size)
    return quantize_with_ranges(
        transfer_ranges(calibrated, float_content), io=io, simplify_int8=simplify_int8
    )


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


def quantize_with_ranges(
    calibrated: bytes, *, io: str = "float", simplify_int8: bool = True
) -> bytes:
    """Full-integer quantization of a float model carrying calibration ranges (builtin ops).

    The same call TFLiteConverter makes after calibrating (per-channel weights, int8
    activations); `io="uint8"` gives uint8 input and output; `simplify_int8` as in `convert`.
    """
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    dtype = tf.uint8 if io == "uint8" else tf.float32
    try:
        content = bytes(mlir_quantize(calibrated, input_data_type=dtype, output_data_type=dtype))
    except Exception as e:  # ConverterError and friends
        raise ExportError(_converter_message(e)) from None
    if simplify_int8:
        content = rewrite_int8(content)
    check_builtin_ops(content)
    return content


def check_options(precision: str, io: str, calibration: Iterable[np.ndarray] | None) -> None:
    """Raises ConfigError for an unknown precision or io type, or a combination that cannot be
    exported (uint8 I/O of a float model, int8 without calibration images)."""
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
    simplify_int8: bool = True,
) -> bytes:
    """Converts a Keras model as it is (already built for `size`, if given); see `convert`.

    With `size`, int8 calibration images must be exactly that size (TFLiteConverter runs the
    float model on each). `calibrate_only` (int8) returns the float model with each tensor's
    calibrated min / max instead of the quantized model (see `convert_int8_on_crops`);
    `simplify_int8` as in `convert`.
    """
    import tensorflow as tf

    check_options(precision, io, calibration)
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
    if precision == "int8" and simplify_int8 and not calibrate_only:
        content = rewrite_int8(content)
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

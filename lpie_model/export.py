"""Export to TFLite (LiteRT) and the parity check: `export_tflite` converts (`lpie_model.convert`),
writes the .tflite with its metadata (`lpie_model.tflite_model`), compares it with the Keras model
on real images and writes the report next to it; `export_model` is the whole
`lpie-model export`, choosing the calibration and parity images (`lpie_model.samples`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lpie_data import storage
from lpie_data.errors import OutputError
from lpie_data.jsonfile import json_safe, write_json
from lpie_model.convert import Progress, check_options, convert
from lpie_model.metrics import psnr
from lpie_model.runtime import KerasRunner, LiteRTRunner
from lpie_model.samples import export_inputs, fit_to_size, sample_photos
from lpie_model.tflite_model import add_metadata, op_names

# What the parity report checks per precision: (quantity, bound, "max" | "min").
PARITY_TARGETS: dict[str, tuple[str, float, str]] = {
    "fp32": ("max_abs_diff", 1e-4, "max"),
    "fp16": ("psnr_db", 50.0, "min"),
    "int8": ("psnr_db", 35.0, "min"),
}
PARITY_MAX_SIDE = 512


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
    runner = LiteRTRunner(content, threads=num_threads)
    # One traced graph, not eager calls: eager Keras held ~10.7 GB for one 1080 x 1920 image
    # (every intermediate kept), the graph ~1.6 GB.
    reference = KerasRunner(model)
    rows = []
    for name, image in images:
        size = runner.fixed_size or (
            min(image.shape[0], PARITY_MAX_SIDE),
            min(image.shape[1], PARITY_MAX_SIDE),
        )
        x = fit_to_size(np.asarray(image, dtype=np.float32), size)
        want = reference.run(x)
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
    memory: str = "auto",
) -> dict[str, Any]:
    """Converts, writes `out` (.tflite), checks parity and writes the report next to it.

    The report goes to `out` with suffix `.json` (model.tflite -> model.json). `parity_images`
    default to scikit-image's sample photos. See `convert` for the other arguments.

    Returns:
        The report: {"model", "precision", "io", "input_size", "memory", "bytes", "params",
        "ops", "build", "value_space", "metadata", "parity"}; "memory" is the layout used,
        "low" or "fast" (`lpie_model.deploy.low_memory_layout`). The .tflite carries
        `model_metadata` as its "lpie" metadata entry (`read_metadata` reads it back).

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
    from lpie_model.deploy import low_memory_layout

    low = low_memory_layout(memory, size, precision)
    content = convert(
        model, precision=precision, size=size, io=io, calibration=calibration, progress=progress,
        memory="low" if low else "fast",
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
        "memory": "low" if low else "fast",
        "bytes": len(content),
        "params": int(model.count_params()),
        "ops": op_names(content),
        "build": json_safe(config) if config is not None else None,
        "value_space": info["value_space"],
        "metadata": info,
        "parity": parity_report(model, content, precision, images, num_threads=num_threads),
    }
    write_json(report_path, report, sort_keys=False)
    return report


@dataclass(frozen=True)
class ExportOutcome:
    """What `export_model` did: the report (as written next to the .tflite) and notes."""

    report: dict[str, Any]
    notes: list[str]


def export_model(
    model: str | Path,
    out: str,
    *,
    precision: str = "fp32",
    size: tuple[int, int] | None = None,
    io: str = "float",
    calibration: str | Path | None = None,
    calibration_split: str = "train",
    calibration_count: int = 100,
    overwrite: bool = False,
    progress: Progress | None = None,
    memory: str = "auto",
    build: Mapping[str, Any] | None = None,
) -> ExportOutcome:
    """`lpie-model export`: loads a trained model (run folder, .weights.h5 or .keras), chooses
    its parity and calibration images (`lpie_model.samples.export_inputs`: from the
    `calibration` dataset, else the built-in sample photos) and runs `export_tflite`. `build`:
    the architecture of bare weights (`lpie_model.checkpoint.load_model`).

    Raises:
        ConfigError, ExportError, OutputError (see `export_tflite`); DataError, ConfigError from
        loading the model or reading the calibration dataset.
    """
    from lpie_model.checkpoint import load_model
    from lpie_model.deploy import low_memory_layout

    check_options(precision, io, ())  # calibration images are chosen below
    low_memory_layout(memory, size)  # a bad layout name fails before the model loads
    if not overwrite and storage.exists(str(out)):
        raise OutputError(f"{out}: exists (pass overwrite to replace it)")
    net = load_model(model, build)
    parity, cal, notes = export_inputs(
        net, precision=precision, size=size, calibration=calibration, split=calibration_split,
        count=calibration_count,
    )
    report = export_tflite(net, out, precision=precision, size=size, io=io, calibration=cal,
                           parity_images=parity, overwrite=overwrite, progress=progress,
                           memory=memory)
    if report["value_space"] is None:
        notes.append(f"{model} records no value space: the .tflite says so (null), and "
                     "enhance/evaluate will feed it stored values unchanged")
    return ExportOutcome(report, notes)

"""Model cost and TFLite speed: parameters, multiply-adds per input size, latency, peak memory.

Multiply-adds (MACs) are counted from the Keras graph built at the given size: every Conv2D adds
H_out * W_out * k_h * k_w * C_in * C_out, every DepthwiseConv2D H_out * W_out * k_h * k_w * C_in;
biases, activations, pooling, resizing and element-wise ops are not counted (the usual convention,
and the one behind the paper's numbers; FLOPs ~ 2 x MACs).

Latency and peak memory are measured on a fixed-size .tflite export per size, each in a fresh
subprocess (`lpie_model.latency`). `run_benchmark` is the whole `lpie-model benchmark`: a
.tflite file, a trained model or an untrained variant.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lpie_data.cores import usable_cores
from lpie_data.errors import ConfigError
from lpie_data.jsonfile import json_safe
from lpie_model.latency import machine_description, measure_tflite

DEFAULT_SIZES = ((256, 256), (800, 800), (1080, 1920), (1440, 2560), (2160, 3840))


SIZE_NAMES = {(1080, 1920): "FHD", (1440, 2560): "2K", (2160, 3840): "4K"}


BENCH_CALIBRATION_IMAGES = 4


Progress = Callable[[str], None]


def count_macs(model: Any, height: int, width: int) -> int:
    """Convolution multiply-adds of one H x W x 3 image through `model` (an LPIENet).

    The model is rebuilt for the fixed size (weights do not matter) so every shape is static.
    """
    import keras

    from lpie_model.deploy import rebuild_for_shape

    fixed = rebuild_for_shape(model, height, width)
    total = 0
    for layer in fixed.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, _ = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * layer.input.shape[-1] * layer.depth_multiplier
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * layer.input.shape[-1] // layer.groups * c_out
    return int(total)


def indirection_bytes(content: bytes) -> int:
    """Bytes of XNNPACK indirection buffers a fixed-size .tflite model needs (an estimate).

    XNNPACK keeps, for every spatial convolution (CONV_2D or DEPTHWISE_CONV_2D with a kernel
    larger than 1x1), k_h x k_w pointers of 8 bytes per output pixel for the model's lifetime:
    at 1080x1920 this, not the activations, is most of the peak memory (docs/benchmarks.md).
    Counted from the flatbuffer's static shapes, so it does not depend on the machine's load.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    spatial = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D}
    total = 0
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            opcode = model.OperatorCodes(op.OpcodeIndex())
            if max(opcode.BuiltinCode(), opcode.DeprecatedBuiltinCode()) not in spatial:
                continue
            kernel = sub.Tensors(op.Inputs(1)).ShapeAsNumpy()
            out = sub.Tensors(op.Outputs(0)).ShapeAsNumpy()
            kh, kw = int(kernel[1]), int(kernel[2])
            if kh * kw > 1:
                total += int(out[1]) * int(out[2]) * kh * kw * 8
    return total


@dataclass
class BenchRow:
    """One (size, precision) measurement; times in seconds, memory in MiB; label "HxW (name)"."""

    height: int
    width: int
    precision: str
    macs: int | None
    median_s: float | None = None
    min_s: float | None = None
    times_s: list[float] = field(default_factory=list)
    peak_mib: float | None = None
    model_mib: float | None = None
    bytes: int | None = None

    @property
    def label(self) -> str:
        name = SIZE_NAMES.get((self.height, self.width))
        return f"{self.height}x{self.width}" + (f" ({name})" if name else "")


def benchmark(
    model: Any,
    *,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    precisions: Sequence[str] = ("fp32",),
    threads: int | None = None,
    runs: int = 5,
    warmup: int = 2,
    work_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Benchmarks a Keras LPIENet: MACs per size and TFLite latency per size and precision.

    Each (size, precision) gets its own fixed-size export (int8 calibrated on a few sample-photo
    fits of that size: enough for speed, not for quality; use `lpie-model export` for that).

    Args:
        model: a Keras LPIENet (`build_lpienet` / `load_model`).
        sizes: (H, W) pairs. precisions: among "fp32", "fp16", "int8"; empty: MACs only.
        threads: interpreter threads (None: all CPU cores).
        work_dir: where the .tflite files go (default: a temporary folder, removed after).
        progress: called with a short note before each step.

    Returns:
        {"params", "threads", "runs", "warmup", "machine", "rows": [BenchRow as dict, ...]}.
    """
    from lpie_model import convert as cv
    from lpie_model import samples as smp

    for p in precisions:
        if p not in cv.PRECISIONS:
            raise ConfigError(f"unknown precision {p!r}; valid: {', '.join(cv.PRECISIONS)}")
    threads = threads or usable_cores()
    note = progress or (lambda _: None)
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="lpie-bench-") as tmp:
        folder = Path(work_dir) if work_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for h, w in sizes:
            macs = count_macs(model, h, w)
            for precision in precisions:
                row = BenchRow(h, w, precision, macs)
                note(f"export {precision} {h}x{w}")
                calibration = None
                if precision == "int8":
                    # Crops: a fixed-size export calibrates on a crop-sized twin (fast at FHD).
                    photos = [img for _, img in smp.sample_photos()]
                    crop = (min(h, smp.CALIBRATION_CROP), min(w, smp.CALIBRATION_CROP))
                    calibration = smp.calibration_crops(
                        photos, count=BENCH_CALIBRATION_IMAGES, crop=crop, per_image=2
                    )
                content = cv.convert(
                    model, precision=precision, size=(h, w), calibration=calibration
                )
                path = folder / f"lpienet-{precision}-{h}x{w}.tflite"
                path.write_bytes(content)
                note(f"time {precision} {h}x{w}")
                result = measure_tflite(path, threads=threads, runs=runs, warmup=warmup)
                row.median_s, row.min_s, row.times_s = (
                    result["median_s"],
                    result["min_s"],
                    result["times_s"],
                )
                if result["peak_kib"] is not None and result["base_kib"] is not None:
                    row.peak_mib = result["peak_kib"] / 1024
                    row.model_mib = (result["peak_kib"] - result["base_kib"]) / 1024
                row.bytes = len(content)
                rows.append(row)
            if not precisions:
                rows.append(BenchRow(h, w, "-", macs))
    return {
        "params": int(model.count_params()),
        "build": json_safe(getattr(model, "lpie_config", None)),
        "threads": threads,
        "runs": runs,
        "warmup": warmup,
        "machine": machine_description(),
        "rows": [asdict(r) | {"label": r.label} for r in rows],
    }


def benchmark_tflite_file(
    path: str | Path,
    *,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    threads: int | None = None,
    runs: int = 5,
    warmup: int = 2,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Latency of an existing .tflite file: at its own size if fixed, else at each of `sizes`.

    A dynamic model is timed after resizing its input (slower than a fixed-size export).
    """
    from lpie_model.runtime import LiteRTRunner

    path = Path(path)
    runner = LiteRTRunner(path)
    fixed = runner.fixed_size
    threads = threads or usable_cores()
    note = progress or (lambda _: None)
    rows = []
    for h, w in [fixed] if fixed else sizes:
        note(f"time {path.name} {h}x{w}")
        result = measure_tflite(
            path, threads=threads, runs=runs, warmup=warmup, size=None if fixed else (h, w)
        )
        row = BenchRow(
            h,
            w,
            _precision_of(runner),
            None,
            result["median_s"],
            result["min_s"],
            result["times_s"],
            bytes=path.stat().st_size,
        )
        if result["peak_kib"] is not None and result["base_kib"] is not None:
            row.peak_mib = result["peak_kib"] / 1024
            row.model_mib = (result["peak_kib"] - result["base_kib"]) / 1024
        rows.append(asdict(row) | {"label": row.label})
    return {
        "params": None,
        "build": None,
        "threads": threads,
        "runs": runs,
        "warmup": warmup,
        "machine": machine_description(),
        "model": str(path),
        "rows": rows,
    }


def _precision_of(runner: Any) -> str:
    import numpy as np

    details = runner.interpreter.get_tensor_details()
    types = {d["dtype"] for d in details}
    if np.int8 in types or np.uint8 in types:
        return "int8"
    if np.float16 in types:
        return "fp16"
    return "fp32"


def format_table(result: dict[str, Any]) -> list[list[str]]:
    """Rows of a Table-6-like table: model, GFLOPs, GMACs, resolution, then per precision
    median latency (s) and peak memory (MiB). The first row is the header."""
    rows = result["rows"]
    precisions = list(dict.fromkeys(r["precision"] for r in rows if r["precision"] != "-"))
    header = ["Resolution", "GMACs", "GFLOPs"]
    for p in precisions:
        header += [f"{p} (s)", f"{p} MiB"]
    table = [header]
    by_size: dict[tuple[int, int], dict[str, dict]] = {}
    for r in rows:
        by_size.setdefault((r["height"], r["width"]), {})[r["precision"]] = r
    for _, cells in by_size.items():
        first = next(iter(cells.values()))
        macs = first["macs"]
        line = [
            first["label"],
            f"{macs / 1e9:.3f}" if macs is not None else "-",
            f"{2 * macs / 1e9:.2f}" if macs is not None else "-",
        ]
        for p in precisions:
            r = cells.get(p)
            line.append(f"{r['median_s']:.4f}" if r and r["median_s"] is not None else "-")
            line.append(f"{r['model_mib']:.0f}" if r and r["model_mib"] is not None else "-")
        table.append(line)
    return table


def run_benchmark(
    model: str | Path | None = None,
    *,
    variant: str = "base",
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    precisions: Sequence[str] = ("fp32",),
    threads: int | None = None,
    runs: int = 5,
    warmup: int = 2,
    progress: Progress | None = None,
    build: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`lpie-model benchmark`: a .tflite file (`benchmark_tflite_file`), a trained model (run
    folder, .weights.h5, .keras) or, with `model` None, an untrained `variant` built with seed 0
    (weights do not change the speed) through `benchmark`. Empty `precisions`: MACs only.

    `build`: the architecture of a bare `.weights.h5` (`lpie_model.checkpoint.load_model`).

    Returns `benchmark`'s dict with "name": what was measured, for titles.
    """
    if build is not None and (model is None or Path(model).suffix == ".tflite"):
        raise ConfigError("--arch gives bare .weights.h5 their architecture; without MODEL use "
                          "--variant, a .tflite file holds its own")
    if model is not None and Path(model).suffix == ".tflite":
        result = benchmark_tflite_file(model, sizes=sizes, threads=threads, runs=runs,
                                       warmup=warmup, progress=progress)
        return {**result, "name": str(model)}
    import keras

    from lpie_model.checkpoint import load_model
    from lpie_model.lpienet import build_lpienet

    if model is not None:
        net, name = load_model(model, build), str(model)
    else:
        keras.utils.set_random_seed(0)
        net, name = build_lpienet(variant), f"LPIENet {variant} (untrained)"
    result = benchmark(net, sizes=sizes, precisions=precisions, threads=threads, runs=runs,
                       warmup=warmup, progress=progress)
    return {**result, "name": name}

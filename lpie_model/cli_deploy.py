"""``lpie-model export`` and ``lpie-model benchmark``: TFLite export with its parity check
(`lpie_model.export.export_model`) and cost and speed (`lpie_model.benchmark.run_benchmark`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lpie_data import storage
from lpie_data.console import (
    console,
    err_console,
    progress_bar,
    quiet_tensorflow,
)
from lpie_model.cli_options import ArchOpt, arch_build, handle_errors
from lpie_model.config import VARIANTS
from lpie_model.convert import IOType, Precision

# lpie_model.deploy.MEMORY_LAYOUTS (not imported: it loads Keras; a test checks they agree).
MemoryLayout = StrEnum("MemoryLayout", {n: n for n in ("auto", "low", "fast")})  # type: ignore[misc]


@handle_errors
def export_cmd(
    model: Annotated[
        Path,
        typer.Argument(exists=True, help="A training run folder, a .weights.h5 or a .keras file."),
    ],
    out: Annotated[
        str, typer.Option("--out", help="The .tflite file to write (or a gs://, ram:// URL).")
    ],
    precision: Annotated[
        Precision, typer.Option("--precision", help="fp32, fp16 or int8 (int8 is calibrated).")
    ] = Precision.fp32,
    size: Annotated[
        str | None,
        typer.Option("--size", help="Fixed input HxW (faster); default: any size at run time."),
    ] = None,
    calibration: Annotated[
        str | None,
        typer.Option("--calibration", help="lpie dataset: int8 calibration and parity images."),
    ] = None,
    calibration_split: Annotated[
        str, typer.Option("--calibration-split", help="Split of --calibration to use.")
    ] = "train",
    calibration_count: Annotated[
        int, typer.Option("--calibration-count", min=1, help="Number of calibration crops.")
    ] = 100,
    io: Annotated[
        IOType, typer.Option("--io", help="float, or uint8 (int8 models: uint8 input and output).")
    ] = IOType.float,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out.")
    ] = False,
    memory: Annotated[
        MemoryLayout,
        typer.Option(
            "--memory",
            help="low: about half the peak memory, ~7% more CPU time; fast; auto: low for "
            "any-size exports and sizes from ~1 Mpx.",
        ),
    ] = MemoryLayout.auto,
    arch: ArchOpt = None,
) -> None:
    """Export a trained LPIENet to TFLite (builtin ops only) and check it against Keras.

    The parity report (max |TFLite - Keras|, PSNR against the fp32 output; targets: fp32 <= 1e-4,
    fp16 >= 50 dB, int8 >= 35 dB) runs on --calibration's inputs, else on built-in sample photos,
    and is written next to the model (model.tflite -> model.json). Without --calibration, int8 is
    calibrated on crops of the sample photos. Calibration runs on 256x256 crops whatever --size
    is (ranges do not depend on the image size), with a progress bar.

    Example: lpie-model export runs/sidd --out sidd.tflite --precision int8 --calibration data/sidd
    """
    quiet_tensorflow()
    from lpie_model.convert import parse_size
    from lpie_model.export import export_model

    fixed = parse_size(size) if size is not None else None
    if storage.exists(out) and not overwrite:
        raise typer.BadParameter(f"{out} exists (add --overwrite)", param_hint="--out")
    with progress_bar(f"exporting {precision.value}") as update:
        outcome = export_model(
            model, out, precision=precision.value, size=fixed, io=io.value,
            calibration=calibration, calibration_split=calibration_split,
            calibration_count=calibration_count, overwrite=overwrite, memory=memory.value,
            build=arch_build(arch),
            progress=lambda _stage, done, total: update(done, total, description="calibrating"),
        )
    for note in outcome.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    report = outcome.report
    p = report["parity"]
    shape = "x".join(map(str, fixed)) if fixed else "any HxW"
    console.print(
        f"[bold]{out}[/]: {report['bytes'] / 1024:.0f} KiB, {precision.value}, input {shape}, "
        f"{report['params']:,} params, {report['memory']}-memory layout, "
        f"value space {report['value_space']}, "
        f"builtin ops: {', '.join(report['ops'])}"
    )
    for row in p["images"]:
        console.print(
            f"  {row['name']:<24} {row['size'][0]}x{row['size'][1]:<6} "
            f"max|diff| {row['max_abs_diff']:.2e}  PSNR vs fp32 {row['psnr_db']:.2f} dB"
        )
    t = p["target"]
    verdict = "[green]meets[/]" if p["passed"] else "[bold red]misses[/]"
    sign = "<=" if t["kind"] == "max" else ">="
    console.print(
        f"parity {verdict} the target {t['quantity']} {sign} {t['bound']:g}; "
        f"report: {out[: -len('.tflite')]}.json"
    )


Variant = StrEnum("Variant", {name: name for name in VARIANTS})  # type: ignore[misc]
DEFAULT_BENCH_SIZES = ["256x256", "800x800", "1080x1920", "1440x2560", "2160x3840"]


@handle_errors
def benchmark_cmd(
    model: Annotated[
        Path | None,
        typer.Argument(
            exists=True,
            help="Run folder, .weights.h5, .keras or .tflite; default: an untrained --variant.",
        ),
    ] = None,
    variant: Annotated[
        Variant, typer.Option("--variant", help="base or large (when no MODEL is given).")
    ] = Variant.base,  # type: ignore[attr-defined]
    sizes: Annotated[
        list[str] | None,
        typer.Option("--size", help="Input size HxW (height first); repeatable. Default: "
                     + ", ".join(DEFAULT_BENCH_SIZES) + "."),
    ] = None,
    precisions: Annotated[
        list[Precision] | None,
        typer.Option("--precision", help="fp32, fp16 or int8; repeatable (default: fp32)."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Interpreter threads (default: all).")
    ] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs per model.")] = 5,
    warmup: Annotated[
        int, typer.Option("--warmup", min=0, help="Untimed runs first (at least 2 s).")
    ] = 2,
    no_latency: Annotated[
        bool, typer.Option("--no-latency", help="Only parameters and multiply-adds.")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write all results as JSON.")
    ] = None,
    arch: ArchOpt = None,
) -> None:
    """Parameters, multiply-adds and TFLite latency/peak memory per input size and precision.

    Each size and precision is exported at that fixed size and timed with the LiteRT interpreter
    (XNNPACK) in its own process: median of --runs after --warmup. Weights do not change the speed,
    so an untrained --variant measures the architecture.

    Example: lpie-model benchmark --variant base --size 256x256 --size 1080x1920 --precision int8
    """
    quiet_tensorflow()
    from rich.table import Table

    from lpie_data.jsonfile import write_json
    from lpie_model import benchmark as bm
    from lpie_model.convert import parse_size

    size_list = [parse_size(s) for s in sizes or DEFAULT_BENCH_SIZES]
    chosen = [p.value for p in precisions or [Precision.fp32]]
    chosen = [] if no_latency else list(dict.fromkeys(chosen))
    steps = 2 * len(size_list) * max(len(chosen), 1)
    with progress_bar("benchmark", total=steps) as update:
        done = [0]

        def step(note: str) -> None:
            done[0] += 1
            update(done[0])

        result = bm.run_benchmark(
            model, variant=variant.value, sizes=size_list, precisions=chosen, threads=threads,
            runs=runs, warmup=warmup, progress=step, build=arch_build(arch),
        )
    m = result["machine"]
    params = f"{result['params']:,} params, " if result["params"] else ""
    table = Table(title=f"{result['name']}: {params}{m['cpu']}, {result['threads']} thread(s)")
    header, *lines = bm.format_table(result)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for line in lines:
        table.add_row(*line)
    console.print(table)
    if json_out is not None:
        write_json(json_out, {k: v for k, v in result.items() if k != "name"}, sort_keys=False)
        console.print(f"[green]wrote {json_out}[/]")

"""The `lpie-model` command: thin Typer commands over the lpie_model library.

Heavy imports (TensorFlow) happen inside the commands so that `--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lpie_data import storage
from lpie_data.console import (
    LpieGroup,
    console,
    err_console,
    fail,
    handle_errors,
    progress_bar,
    quiet_tensorflow,
)

app = typer.Typer(
    cls=LpieGroup,
    name="lpie-model",
    help="Train, evaluate, export and benchmark LPIENet image restoration models.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", help="Show TensorFlow's own logging.")]
    = False,
) -> None:
    quiet_tensorflow(verbose)


ModelArg = Annotated[
    Path,
    typer.Argument(
        exists=True, help="A training run folder, a .weights.h5, a .keras or a .tflite file."
    ),
]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", help="LiteRT interpreter threads (.tflite models).")
]


@app.command("evaluate")
@handle_errors
def evaluate_cmd(
    model: ModelArg,
    data: Annotated[str, typer.Option("--data", help="lpie pair dataset folder.")],
    split: Annotated[str, typer.Option("--split", help="Split to score (e.g. validation, test).")],
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Write per-image scores to this CSV file.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write means and per-image scores as JSON.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Score only the first N pairs.")
    ] = None,
    space: Annotated[
        str,
        typer.Option(
            "--space",
            help="Score in: stored (the dataset's values) or a value space (srgb, reinhard, "
            "linear) that output, input and target are mapped into.",
        ),
    ] = "stored",
    threads: ThreadsOpt = None,
) -> None:
    """Score a model on a dataset split: PSNR/SSIM of its output next to the degraded input's.

    Scores are computed in the dataset's stored domain (tone-mapped for UDC) unless --space asks
    for another (e.g. srgb: what a person sees), per image and as means; --csv writes key,
    psnr_input, ssim_input, psnr_output, ssim_output per image.

    Example: lpie-model evaluate runs/sidd-base --data data/sidd --split validation --csv val.csv
    """
    quiet_tensorflow()
    from lpie_data.jsonfile import write_json
    from lpie_model.evaluate import evaluate, write_csv
    from lpie_model.runner import open_runner

    runner = open_runner(model, threads=threads)
    with progress_bar("evaluate") as update:
        result = evaluate(runner, data, split, model_name=str(model), limit=limit, space=space,
                          progress=update)
    mean, gain = result.mean(), result.gain()
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    console.print(
        f"[bold]{model}[/] on {data} [{split}]: {len(result.images)} pairs in "
        f"{result.seconds:.1f} s ({runner.description}), scored in {space} values"
    )
    console.print(f"  {'':<8} {'PSNR (dB)':>10} {'SSIM':>8}")
    console.print(f"  {'input':<8} {mean['psnr_input']:>10.2f} {mean['ssim_input']:>8.4f}")
    console.print(f"  {'output':<8} {mean['psnr_output']:>10.2f} {mean['ssim_output']:>8.4f}")
    console.print(f"  {'gain':<8} {gain['psnr']:>+10.2f} {gain['ssim']:>+8.4f}")
    if csv is not None:
        write_csv(result, csv)
        console.print(f"[green]wrote {csv}[/]")
    if json_out is not None:
        write_json(json_out, result.to_dict(), sort_keys=False)
        console.print(f"[green]wrote {json_out}[/]")


@app.command("enhance")
@handle_errors
def enhance_cmd(
    model: ModelArg,
    images: Annotated[
        list[Path],
        typer.Argument(
            help="Photos (PNG, JPEG, TIFF; 8 or 16 bit; sRGB), linear .npy arrays, or folders."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for the results (same file names).")],
    tile: Annotated[
        int, typer.Option("--tile", min=0, help="Largest tile side in pixels; 0: whole image.")
    ] = 1024,
    overlap: Annotated[
        int, typer.Option("--overlap", min=0, help="Pixels shared by neighbouring tiles.")
    ] = 32,
    compare: Annotated[
        bool, typer.Option("--compare", help="Also write <stem>_compare.png: input | result.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing files in --out.")
    ] = False,
    input_space: Annotated[
        str | None,
        typer.Option(
            "--input-space",
            help="Value space of the inputs: linear, reinhard or srgb (default: srgb for photos, "
            "linear for .npy).",
        ),
    ] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Restore photos of any size, keeping each one's size, bit depth and file format.

    Each image is mapped from its value space (sRGB photos, linear .npy; --input-space
    overrides) into the model's (recorded in model.json or the .tflite), restored, and mapped
    back; the compare images show sRGB. Large photos run in overlapping tiles blended with linear
    ramps, so memory stays bounded.
    Unreadable images are reported and skipped (exit status 1 at the end); nothing in --out is
    replaced without --overwrite.

    Example: lpie-model enhance runs/sidd-base/model.tflite photos/*.jpg --out restored --compare
    """
    quiet_tensorflow()
    from lpie_model.enhance import EnhanceOptions, enhance_images, expand_inputs, plan
    from lpie_model.runner import open_runner

    options = EnhanceOptions(tile=tile, overlap=overlap, compare=compare, overwrite=overwrite,
                             input_space=input_space or "")
    sources = expand_inputs(images)
    plan(sources, out, options)  # refuse clashes before loading the model
    runner = open_runner(model, threads=threads)
    with progress_bar("enhance", total=len(sources)) as update:
        report = enhance_images(runner, sources, out, options, progress=update)
    for note in report.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    space = runner.value_space or "not recorded"
    console.print(f"model value space: {space}", highlight=False)
    for source, message in report.failed:
        # The library's messages name the file already.
        shown = message if str(source) in message else f"{source}: {message}"
        err_console.print(f"[bold red]skipped:[/] {shown}", highlight=False, soft_wrap=True)
    done = len(sources) - len(report.failed)
    console.print(f"[green]restored {done} of {len(sources)} image(s)[/] into {out}")
    if report.failed:
        names = ", ".join(str(source) for source, _ in report.failed[:5])
        more = f" and {len(report.failed) - 5} more" if len(report.failed) > 5 else ""
        raise fail(f"{len(report.failed)} of {len(sources)} image(s) failed: {names}{more}")


@app.command("train")
@handle_errors
def train_cmd(
    recipe: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Training recipe (TOML).")
    ],
    out: Annotated[
        str | None,
        typer.Option("--out", help="Run folder, local or gs:// (default: runs/<recipe name>)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out where it stopped.")
    ] = False,
) -> None:
    """Train LPIENet as RECIPE says: per-epoch validation, checkpoints, best model, TensorBoard.

    The run folder gets best.weights.h5 + model.json (the best epoch by validation PSNR),
    metrics.csv, logs/ (TensorBoard) and checkpoints/. A recipe with a "synth" table first
    synthesises its dataset into RUN/data. A new run needs an empty or missing --out.

    Example: lpie-model train recipes/smoke.toml --out runs/smoke
    """
    quiet_tensorflow()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from lpie_model.recipe import load_recipe
    from lpie_model.train import TrainEvent, train

    spec = load_recipe(recipe)
    run_dir = out or str(Path("runs") / recipe.stem)
    bar = Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=err_console, disable=not err_console.is_terminal)
    task = bar.add_task("preparing", total=None, note="")

    def say(text: str) -> None:
        console.print(text, soft_wrap=True, highlight=False)

    def report(e: TrainEvent) -> None:
        if e.kind == "synth_wait":
            bar.update(task, description="waiting for the chief's dataset")
            say(f"waiting for the chief to write {e.info['path']}")
        elif e.kind == "synth":
            bar.update(task, description="synthesising data", completed=e.done, total=e.total)
        elif e.kind == "start":
            i = e.info
            for note in i.get("notes", ()):
                say(f"note: {note}")
            start = f"resuming after epoch {e.epoch}" if e.epoch else "training"
            say(f"{start}: {e.epochs} epochs x {e.steps} steps, {i['replicas']} replica(s)")
            say(f"validation: {i['val_pairs']} pairs; degraded inputs {i['input_val_psnr']:.2f} "
                f"dB PSNR, {i['input_val_ssim']:.4f} SSIM")
            mapped = (f" (mapped from {i['data_value_space']})"
                      if i["data_value_space"] != i["value_space"] else "")
            say(f"value space: {i['value_space']}{mapped}")
        elif e.kind == "step":
            bar.update(task, description=f"epoch {e.epoch}/{e.epochs}", completed=e.step,
                       total=e.steps, note=f"loss {e.loss:.4f}")
        elif e.kind == "validate":
            bar.update(task, note="validating")
        elif e.kind == "epoch" and e.record is not None:
            r = e.record
            best = "  [green]best[/]" if e.improved else ""
            say(f"epoch {r.epoch}/{e.epochs}  {r.crop}  loss {r.train_loss:.4f}  "
                f"PSNR {r.val_psnr:.2f}  SSIM {r.val_ssim:.4f}  lr {r.lr:.3g}  "
                f"{r.seconds:.0f} s{best}")

    try:
        with bar:
            result = train(spec, run_dir, resume=resume, progress=report)
    except KeyboardInterrupt:
        err_console.print(f"[yellow]interrupted; continue with:[/] lpie-model train {recipe} "
                          f"--out {run_dir} --resume")
        raise typer.Exit(130) from None
    if result.epochs_done == result.resumed_from:
        say(f"[green]{run_dir} had already trained {result.epochs_done} epochs[/]")
    say(f"[green]best: epoch {result.best_epoch}, {result.best_val_psnr:.2f} dB PSNR, "
        f"{result.best_val_ssim:.4f} SSIM[/] (degraded inputs: {result.input_val_psnr:.2f} dB, "
        f"{result.input_val_ssim:.4f}) after {result.seconds / 60:.1f} min")
    for note in result.notes:
        say(f"[yellow]note:[/] {note}")
    say(f"model: {result.weights} + model.json (value space {result.value_space})")
    say(f"metrics: {run_dir}/metrics.csv  TensorBoard: tensorboard --logdir {run_dir}/logs")


@app.command("export")
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
        str, typer.Option("--precision", help="fp32, fp16 or int8 (int8 is calibrated).")
    ] = "fp32",
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
        str, typer.Option("--io", help="float, or uint8 (int8 models: uint8 input and output).")
    ] = "float",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out.")
    ] = False,
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
    from lpie_model import export as ex
    from lpie_model.lpienet import load_model

    fixed = ex.parse_size(size) if size is not None else None
    if precision not in ex.PRECISIONS:
        raise typer.BadParameter(f"valid: {', '.join(ex.PRECISIONS)}", param_hint="--precision")
    if io not in ex.IO_TYPES:
        raise typer.BadParameter(f"valid: {', '.join(ex.IO_TYPES)}", param_hint="--io")
    if storage.exists(out) and not overwrite:
        raise typer.BadParameter(f"{out} exists (add --overwrite)", param_hint="--out")
    net = load_model(model)
    # Calibration crops: ranges do not depend on the image size (a fixed-size export is
    # calibrated on a crop-sized twin of the network, see export.convert).
    crop = tuple(min(s, ex.CALIBRATION_CROP) for s in fixed or (ex.CALIBRATION_CROP,) * 2)
    cal = None
    if calibration is not None:
        # Parity and calibration images go into the model's value space (when it records one).
        from lpie_data.valuespace import value_space_of

        data_space = value_space_of(calibration)[0] if net.lpie_value_space else None
        parity = [(k, ex.to_model_space(x, data_space, net))
                  for k, x in ex.dataset_inputs(calibration, calibration_split, 3)]
        if precision == "int8":
            cal = [ex.to_model_space(x, data_space, net) for x in ex.dataset_calibration(
                calibration, calibration_split, count=calibration_count, crop=crop
            )]
    else:
        parity = [(k, ex.to_model_space(x, "srgb", net)) for k, x in ex.sample_photos()]
        if precision == "int8":
            console.print(
                "[yellow]int8: calibrating on sample photos; pass --calibration DATA "
                "for ranges that match your inputs[/]"
            )
            cal = ex.calibration_crops(
                [image for _, image in parity],
                count=calibration_count,
                crop=crop,
                per_image=-(-calibration_count // len(parity)),
            )
    if cal is not None:
        with progress_bar("calibrating int8", total=len(cal)) as update:
            report = ex.export_tflite(
                net, out, precision=precision, size=fixed, io=io, calibration=cal,
                parity_images=parity, progress=lambda _stage, done, total: update(done, total),
            )
    else:
        with console.status(f"converting {model} to {precision} TFLite"):
            report = ex.export_tflite(
                net, out, precision=precision, size=fixed, io=io, parity_images=parity
            )
    p = report["parity"]
    shape = "x".join(map(str, fixed)) if fixed else "any HxW"
    if report["value_space"] is None:
        err_console.print(f"[yellow]note:[/] {model} records no value space: the .tflite says "
                          "so (null), and enhance/evaluate will feed it stored values unchanged",
                          highlight=False, soft_wrap=True)
    console.print(
        f"[bold]{out}[/]: {report['bytes'] / 1024:.0f} KiB, {precision}, input {shape}, "
        f"{report['params']:,} params, value space {report['value_space']}, "
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


@app.command("benchmark")
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
        str, typer.Option("--variant", help="base or large (when no MODEL is given).")
    ] = "base",
    sizes: Annotated[
        str, typer.Option("--sizes", help="Comma-separated input sizes, HxW (height first).")
    ] = "256x256,800x800,1080x1920,1440x2560,2160x3840",
    precision: Annotated[
        str, typer.Option("--precision", help="Comma-separated: fp32, fp16, int8.")
    ] = "fp32",
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
) -> None:
    """Parameters, multiply-adds and TFLite latency/peak memory per input size and precision.

    Each size and precision is exported at that fixed size and timed with the LiteRT interpreter
    (XNNPACK) in its own process: median of --runs after --warmup. Weights do not change the speed,
    so an untrained --variant measures the architecture.

    Example: lpie-model benchmark --variant base --sizes 256x256,1080x1920 --precision fp32,int8
    """
    quiet_tensorflow()
    import json

    from rich.table import Table

    from lpie_model import benchmark as bm
    from lpie_model.export import parse_size

    size_list = [parse_size(s) for s in sizes.split(",") if s.strip()]
    precisions = [] if no_latency else [p.strip() for p in precision.split(",") if p.strip()]
    steps = 2 * len(size_list) * max(len(precisions), 1)
    with progress_bar("benchmark", total=steps) as update:
        done = [0]

        def step(note: str) -> None:
            done[0] += 1
            update(done[0])

        if model is not None and model.suffix == ".tflite":
            result = bm.benchmark_tflite_file(
                model, sizes=size_list, threads=threads, runs=runs, warmup=warmup, progress=step
            )
        else:
            import keras

            from lpie_model.lpienet import build_lpienet, load_model

            if model is not None:
                net = load_model(model)
            else:
                keras.utils.set_random_seed(0)
                net = build_lpienet(variant)
            result = bm.benchmark(
                net, sizes=size_list, precisions=precisions, threads=threads, runs=runs,
                warmup=warmup, progress=step,
            )
    name = str(model) if model is not None else f"LPIENet {variant} (untrained)"
    m = result["machine"]
    params = f"{result['params']:,} params, " if result["params"] else ""
    table = Table(title=f"{name}: {params}{m['cpu']}, {result['threads']} thread(s)")
    header, *lines = bm.format_table(result)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for line in lines:
        table.add_row(*line)
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"[green]wrote {json_out}[/]")


def main() -> None:
    """Entry point of the `lpie-model` console script."""
    app()


if __name__ == "__main__":
    main()

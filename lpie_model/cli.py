"""The `lpie-model` command: thin Typer commands over the lpie_model library.

Heavy imports (TensorFlow) happen inside the commands so that `--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lpie_data.console import console, err_console, handle_errors, progress_bar, quiet_tensorflow

app = typer.Typer(
    name="lpie-model",
    help="Train, evaluate, export and benchmark LPIENet image restoration models.",
    no_args_is_help=True,
    add_completion=False,
)


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
    split: Annotated[str, typer.Option("--split", help="Split to score (e.g. val, test).")],
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Write per-image scores to this CSV file.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write means and per-image scores as JSON.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Score only the first N pairs.")
    ] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Score a model on a dataset split: PSNR/SSIM of its output next to the degraded input's.

    Scores are computed in the dataset's stored domain (tone-mapped for UDC), per image and as
    means; --csv writes key, psnr_input, ssim_input, psnr_output, ssim_output per image.

    Example: lpie-model evaluate runs/sidd-base --data data/sidd --split val --csv sidd-val.csv
    """
    quiet_tensorflow()
    from lpie_model.evaluate import evaluate, write_csv, write_json
    from lpie_model.runner import open_runner

    runner = open_runner(model, threads=threads)
    with progress_bar("evaluate") as update:
        result = evaluate(runner, data, split, model_name=str(model), limit=limit, progress=update)
    mean, gain = result.mean(), result.gain()
    console.print(
        f"[bold]{model}[/] on {data} [{split}]: {len(result.images)} pairs in "
        f"{result.seconds:.1f} s ({runner.description})"
    )
    console.print(f"  {'':<8} {'PSNR (dB)':>10} {'SSIM':>8}")
    console.print(f"  {'input':<8} {mean['psnr_input']:>10.2f} {mean['ssim_input']:>8.4f}")
    console.print(f"  {'output':<8} {mean['psnr_output']:>10.2f} {mean['ssim_output']:>8.4f}")
    console.print(f"  {'gain':<8} {gain['psnr']:>+10.2f} {gain['ssim']:>+8.4f}")
    if csv is not None:
        write_csv(result, csv)
        console.print(f"[green]wrote {csv}[/]")
    if json_out is not None:
        write_json(result, json_out)
        console.print(f"[green]wrote {json_out}[/]")


@app.command("enhance")
@handle_errors
def enhance_cmd(
    model: ModelArg,
    images: Annotated[
        list[Path], typer.Argument(help="Photos (PNG, JPEG, TIFF; 8 or 16 bit) or folders of them.")
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
    threads: ThreadsOpt = None,
) -> None:
    """Restore photos of any size, keeping each one's size, bit depth and file format.

    Large photos run in overlapping tiles blended with linear ramps, so memory stays bounded.
    Unreadable images are reported and skipped (exit status 1 at the end); nothing in --out is
    replaced without --overwrite.

    Example: lpie-model enhance runs/sidd-base/model.tflite photos/*.jpg --out restored --compare
    """
    quiet_tensorflow()
    from lpie_model.enhance import EnhanceOptions, enhance_images, expand_inputs, plan
    from lpie_model.runner import open_runner

    options = EnhanceOptions(tile=tile, overlap=overlap, compare=compare, overwrite=overwrite)
    sources = expand_inputs(images)
    plan(sources, out, options)  # refuse clashes before loading the model
    runner = open_runner(model, threads=threads)
    with progress_bar("enhance", total=len(sources)) as update:
        report = enhance_images(runner, sources, out, options, progress=update)
    for source, message in report.failed:
        # The library's messages name the file already.
        shown = message if str(source) in message else f"{source}: {message}"
        err_console.print(f"[bold red]skipped:[/] {shown}", highlight=False, soft_wrap=True)
    done = len(sources) - len(report.failed)
    console.print(f"[green]restored {done} of {len(sources)} image(s)[/] into {out}")
    if report.failed:
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the `lpie-model` console script."""
    app()


if __name__ == "__main__":
    main()

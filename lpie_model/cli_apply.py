"""``lpie-model evaluate`` and ``lpie-model enhance``: a trained model applied to images
(`lpie_model.evaluate`, `lpie_model.enhance`, through `lpie_model.runtime.open_runner`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lpie_data.console import (
    console,
    err_console,
    fail,
    progress_bar,
    quiet_tensorflow,
)
from lpie_model.cli_options import (
    ArchOpt,
    InputSpace,
    ModelArg,
    ScoreSpace,
    ThreadsOpt,
    arch_build,
    handle_errors,
)


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
        ScoreSpace,
        typer.Option(
            "--space",
            help="Score in: stored (the dataset's values) or a value space (srgb, reinhard, "
            "linear) that output, input and target are mapped into.",
        ),
    ] = ScoreSpace.stored,  # type: ignore[attr-defined]
    threads: ThreadsOpt = None,
    arch: ArchOpt = None,
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
    from lpie_model.runtime import open_runner

    runner = open_runner(model, threads=threads, build=arch_build(arch))
    with progress_bar("evaluate") as update:
        result = evaluate(runner, data, split, model_name=str(model), limit=limit,
                          space=space.value,
                          progress=update)
    mean, gain = result.mean(), result.gain()
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    console.print(
        f"[bold]{model}[/] on {data} [{split}]: {len(result.images)} pairs in "
        f"{result.seconds:.1f} s ({runner.description}), scored in {space.value} values"
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
        InputSpace | None,
        typer.Option(
            "--input-space",
            help="Value space of the inputs: linear, reinhard or srgb (default: srgb for photos, "
            "linear for .npy).",
        ),
    ] = None,
    threads: ThreadsOpt = None,
    arch: ArchOpt = None,
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
    from lpie_model.runtime import open_runner

    options = EnhanceOptions(tile=tile, overlap=overlap, compare=compare, overwrite=overwrite,
                             input_space=input_space.value if input_space else "")
    sources = expand_inputs(images)
    plan(sources, out, options)  # refuse clashes before loading the model
    runner = open_runner(model, threads=threads, build=arch_build(arch))
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

"""The ``lpie-data`` command: thin Typer commands over the lpie_data library.

This module is the app and its small commands (inspect, preview, extract); the command groups
live next to it: ``prepare`` in `cli_prepare`, ``synth`` and ``psf`` in `cli_synth`, ``calibrate``
in `cli_calibrate`, and the flags every dataset job shares in `cli_jobs`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lpie_data.allocator import keep_freed_memory
from lpie_data.cli_calibrate import calibrate_app
from lpie_data.cli_prepare import prepare_app
from lpie_data.cli_synth import psf_app, synth
from lpie_data.console import (
    LpieGroup,
    console,
    handle_errors,
    human_bytes,
    progress_bar,
    quiet_tensorflow,
)
from lpie_data.valuespace import manifest_value_space

app = typer.Typer(
    cls=LpieGroup,
    no_args_is_help=True,
    help="Prepare, synthesise, inspect and preview lpie pair datasets (TFRecord shards).",
    pretty_exceptions_enable=False,
)
app.add_typer(prepare_app, name="prepare")
app.add_typer(psf_app, name="psf")
app.add_typer(calibrate_app, name="calibrate")


DatasetArg = Annotated[str, typer.Argument(help="Dataset folder.")]
SplitOpt = Annotated[str, typer.Option("--split", help="Split to read.")]
CountOpt = Annotated[int, typer.Option("--count", min=1, help="Number of pairs.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", help="Show TensorFlow's own logging.")]


@app.callback()
def _main(verbose: VerboseOpt = False) -> None:
    quiet_tensorflow(verbose)
    # Before any thread (progress bar, workers) allocates: threads started later share the
    # one malloc arena that keeps freed memory (lpie_data.allocator).
    keep_freed_memory()


@app.command("inspect")
@handle_errors
def inspect(
    path: DatasetArg,
    verify: Annotated[bool, typer.Option("--verify", help="Recompute every sha256 and parse "
                                         "every record.")] = False,
    write_tfds_info: Annotated[bool, typer.Option(
        "--write-tfds-info", help="(Re)write dataset_info.json and features.json, which "
        "tfds.builder_from_directory reads (datasets made before lpie wrote them).")] = False,
) -> None:
    """Show a dataset's splits, counts, sizes and value ranges; --verify checks every byte.

    Example: lpie-data inspect data/sidd --verify
    """

    from lpie_data.shards import read_manifest
    from lpie_data.shards import verify as verify_dataset

    m = read_manifest(path)
    console.print(f"[bold]{escape(path)}[/]  {m['name']}  made by 'lpie-data {m['command']}' "
                  f"(lpie {m['lpie_version']}, format {m['format_version']})", soft_wrap=True,
                  highlight=False)
    space, assumed = manifest_value_space(m)
    if space is None:
        space_text = "unknown (older manifest; see docs/value-spaces.md)"
    else:
        space_text = space + (" (assumed: older manifest)" if assumed else "")
    console.print(f"  value space: {space_text}", soft_wrap=True, highlight=False)
    for split, e in sorted(m["splits"].items()):
        console.print(
            f"  {split:>10}: {e['examples']:>7} pairs in {len(e['shards'])} shard(s), "
            f"{human_bytes(e['bytes'])}; input {e['input_dtype']} "
            f"\\[{e['input_range'][0]:.4g}, {e['input_range'][1]:.4g}], target "
            f"{e['target_dtype']} \\[{e['target_range'][0]:.4g}, {e['target_range'][1]:.4g}]",
            soft_wrap=True, highlight=False,
        )
    if verify:
        total = sum(e["examples"] for e in m["splits"].values())
        with progress_bar("verify", total=total) as update:
            done = [0]

            def step(n: int) -> None:
                done[0] += n
                update(done[0])

            counts = verify_dataset(path, progress=step)
        console.print(f"[green]verified[/]: {sum(counts.values())} records, every shard's "
                      "sha256 matches the manifest")
    if write_tfds_info:
        from lpie_data.tfds_info import write_tfds_info as write_info

        written = write_info(path)
        console.print(f"[green]wrote[/] {escape(' and '.join(written))} (for "
                      "tfds.builder_from_directory)", soft_wrap=True, highlight=False)


@app.command("preview")
@handle_errors
def preview(
    path: DatasetArg,
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="PNG file to write.")],
    split: SplitOpt = "train",
    count: CountOpt = 4,
    gain: Annotated[float, typer.Option("--gain", min=0.0,
                                        help="Amplification of the difference.")] = 4.0,
) -> None:
    """Write a contact sheet (8-bit sRGB PNG): input | target | amplified difference, one pair
    per row; images are converted to sRGB from the dataset's value space.

    Example: lpie-data preview data/sidd --split train --out sheet.png
    """
    from lpie_data.images import write_png
    from lpie_data.preview import contact_sheet

    sheet = contact_sheet(path, split, count=count, gain=gain)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, sheet)
    console.print(f"[green]wrote {out}[/] ({sheet.shape[1]}x{sheet.shape[0]})")


@app.command("extract")
@handle_errors
def extract(
    path: DatasetArg,
    out: Annotated[Path, typer.Option("--out", file_okay=False,
                                      help="Folder for the image files.")],
    split: SplitOpt = "train",
    count: CountOpt = 4,
    stored: Annotated[bool, typer.Option(
        "--stored", help="Write the stored values unchanged (8-bit / 16-bit PNG as stored, "
        ".npy for float data) instead of sRGB pictures.")] = False,
) -> None:
    """Write the first pairs of a split as image files: <key>_input / <key>_target.

    Default: sRGB pictures to look at (converted from the dataset's value space; 8-bit PNG for
    8-bit data, else 16-bit PNG). With --stored: the stored values unchanged (8-bit data as
    8-bit PNG, 16-bit as 16-bit PNG, float (linear HDR) data as .npy).

    Example: lpie-data extract demo/data --split validation --count 2 --out demo/inputs
    """
    from lpie_data.preview import extract_pairs

    written = extract_pairs(path, split, out, count, stored=stored)
    for f in written:
        console.print(f"  {f}")
    console.print(f"[green]wrote {len(written)} files to {out}[/]")


app.command("synth")(synth)  # defined in lpie_data.cli_synth


def main() -> None:
    app()

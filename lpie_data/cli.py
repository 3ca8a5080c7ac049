"""The ``lpie-data`` command: thin Typer commands over the lpie_data library."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from lpie_data.console import (
    console,
    handle_errors,
    human_bytes,
    progress_bar,
    quiet_tensorflow,
)

app = typer.Typer(
    no_args_is_help=True,
    help="Prepare, synthesise, inspect and preview lpie pair datasets (TFRecord shards).",
    pretty_exceptions_enable=False,
)
prepare_app = typer.Typer(no_args_is_help=True,
                          help="Turn a public dataset (SIDD, UDC SYNTH, GoPro) into pair shards.")
app.add_typer(prepare_app, name="prepare")


class Backend(StrEnum):
    loky = "loky"
    threading = "threading"
    dask = "dask"


OutOpt = Annotated[str, typer.Option("--out", help="Output dataset folder (or gs://, ram:// URL).")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", help="Parallel workers (-1: all cores).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite",
                                            help="Replace an existing dataset made differently.")]
ShardOpt = Annotated[int, typer.Option("--shard-mb", help="Target shard size in MiB.")]
BackendOpt = Annotated[Backend, typer.Option("--backend", help="joblib backend: loky "
                                             "(local processes), threading, or dask (cluster).")]
SchedulerOpt = Annotated[
    str | None, typer.Option("--scheduler", help="Dask scheduler address for --backend dask.")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", help="Show TensorFlow's own logging.")]


@app.callback()
def _main(verbose: VerboseOpt = False) -> None:
    quiet_tensorflow(verbose)


def run_and_report(
    *,
    out: str,
    name: str,
    command: str,
    arguments: dict[str, Any],
    items: Sequence[Any],
    produce: Callable[[Any], Iterable[Any]],
    jobs: int,
    backend: Backend,
    scheduler: str | None,
    shard_mb: int,
    overwrite: bool,
    extra_manifest: dict[str, Any] | None = None,
) -> Any:
    """Run a dataset job with a progress bar and print its summary (shared by all writers)."""
    from lpie_data.jobs import run_job

    with progress_bar(f"{command}", total=len(items)) as update:
        summary = run_job(
            out, name, command, arguments, items, produce, jobs=jobs, backend=backend.value,
            scheduler=scheduler, shard_bytes=shard_mb * 2**20, overwrite=overwrite,
            progress=update, extra_manifest=extra_manifest,
        )
    if summary.noop:
        console.print(f"[green]{out} is already complete[/] (same inputs and arguments): "
                      "nothing to do.")
    resumed = f", {summary.items_resumed} resumed" if summary.items_resumed else ""
    for split, s in sorted(summary.splits.items()):
        console.print(f"  {split:>10}: {s['examples']:>7} pairs  {human_bytes(s['bytes'])}")
    for note in summary.notes:
        console.print(f"  [yellow]note:[/] {note}")
    if not summary.noop:
        console.print(f"[green]wrote {out}[/] from {summary.items} items{resumed} "
                      f"in {summary.seconds:.1f} s")
    return summary


@prepare_app.command("sidd")
@handle_errors
def prepare_sidd(
    root: Annotated[Path, typer.Option("--root", help="SIDD_Medium_Srgb, its Data/ folder, "
                                       "or a SIDD-Small tree.")],
    out: OutOpt,
    tile: Annotated[int, typer.Option(help="Crop size in pixels (paper: 1000).")] = 1000,
    stride: Annotated[int | None, typer.Option(help="Crop step; below --tile overlaps "
                                               "(default: --tile).")] = None,
    val_dir: Annotated[Path | None, typer.Option("--val-dir", help="Folder with "
                       "ValidationNoisyBlocksSrgb.mat / ValidationGtBlocksSrgb.mat.")] = None,
    jobs: JobsOpt = -1,
    overwrite: OverwriteOpt = False,
    shard_mb: ShardOpt = 128,
    backend: BackendOpt = Backend.loky,
    scheduler: SchedulerOpt = None,
) -> None:
    """Cut SIDD sRGB noisy/clean pairs into tiles (train) and add the validation blocks.

    Example: lpie-data prepare sidd --root ~/data/SIDD_Medium_Srgb --out data/sidd --jobs 8
    """
    from lpie_data.sources import sidd

    stride = stride or tile
    items = sidd.work_items(root, tile, stride, val_dir)
    arguments = {"root": str(root.resolve()), "tile": tile, "stride": stride,
                 "val_dir": str(val_dir.resolve()) if val_dir else None}
    run_and_report(out=out, name=sidd.NAME, command="prepare sidd", arguments=arguments,
                   items=items, produce=sidd.produce, jobs=jobs, backend=backend,
                   scheduler=scheduler, shard_mb=shard_mb, overwrite=overwrite)


@app.command("inspect")
@handle_errors
def inspect(
    path: Annotated[str, typer.Argument(help="Dataset folder.")],
    verify: Annotated[bool, typer.Option("--verify", help="Recompute every sha256 and parse "
                                         "every record.")] = False,
) -> None:
    """Show a dataset's splits, counts, sizes and value ranges; --verify checks every byte.

    Example: lpie-data inspect data/sidd --verify
    """
    from lpie_data.shards import read_manifest
    from lpie_data.shards import verify as verify_dataset

    m = read_manifest(path)
    console.print(f"[bold]{path}[/]  {m['name']}  made by 'lpie-data {m['command']}' "
                  f"(lpie {m['lpie_version']}, format {m['format_version']})")
    for split, e in sorted(m["splits"].items()):
        console.print(
            f"  {split:>10}: {e['examples']:>7} pairs in {len(e['shards'])} shard(s), "
            f"{human_bytes(e['bytes'])}; input {e['input_dtype']} "
            f"[{e['input_range'][0]:.4g}, {e['input_range'][1]:.4g}], target "
            f"{e['target_dtype']} [{e['target_range'][0]:.4g}, {e['target_range'][1]:.4g}]"
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


@app.command("preview")
@handle_errors
def preview(
    path: Annotated[str, typer.Argument(help="Dataset folder.")],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")],
    split: Annotated[str, typer.Option("--split", help="Split to show.")] = "train",
    count: Annotated[int, typer.Option("--count", help="Number of pairs.")] = 4,
    gain: Annotated[float, typer.Option("--gain", help="Amplification of the difference.")] = 4.0,
) -> None:
    """Write a contact sheet: input | target | amplified difference, one pair per row.

    Example: lpie-data preview data/sidd --split train --out sheet.png
    """
    from lpie_data.images import write_png
    from lpie_data.preview import contact_sheet

    sheet = contact_sheet(path, split, count=count, gain=gain)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, sheet)
    console.print(f"[green]wrote {out}[/] ({sheet.shape[1]}x{sheet.shape[0]})")


def main() -> None:
    app()

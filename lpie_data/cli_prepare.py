"""``lpie-data prepare sidd|udc|gopro``: public datasets into pair shards (`lpie_data.prepare`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lpie_data.cli_jobs import JobFlags, OutOpt, job_command, print_summary
from lpie_data.console import console, handle_errors, progress_bar

prepare_app = typer.Typer(no_args_is_help=True,
                          help="Turn a public dataset (SIDD, UDC SYNTH, GoPro) into pair shards.")


@prepare_app.command("sidd")
@handle_errors
@job_command
def prepare_sidd(
    root: Annotated[Path, typer.Option("--root", help="SIDD_Medium_Srgb, its Data/ folder, "
                                       "or a SIDD-Small tree.")],
    out: OutOpt,
    tile: Annotated[int, typer.Option(help="Crop size in pixels (paper: 1000).")] = 1000,
    stride: Annotated[int | None, typer.Option(help="Crop step; below --tile overlaps "
                                               "(default: --tile).")] = None,
    val_dir: Annotated[Path | None, typer.Option("--val-dir", help="Folder with "
                       "ValidationNoisyBlocksSrgb.mat / ValidationGtBlocksSrgb.mat.")] = None,
    flags: JobFlags = JobFlags(),
) -> None:
    """Cut SIDD sRGB noisy/clean pairs into tiles (train) and add the validation blocks.

    Example: lpie-data prepare sidd --root ~/data/SIDD_Medium_Srgb --out data/sidd --jobs 8
    """
    from lpie_data.prepare import prepare_sidd as run

    with progress_bar("prepare sidd") as update:
        summary = run(root, out, tile=tile, stride=stride, val_dir=val_dir,
                      job=flags.options(update))
    print_summary(summary, out)
    if summary.noop:
        return
    # One work item per frame pair, and one for all the validation blocks.
    val = "validation" in summary.splits
    frames = summary.items - 1 if val else summary.items
    step = tile if stride is None else stride
    console.print(f"  from {frames} frame pairs (tile {tile}, stride {step})"
                  f"{' and the validation blocks' if val else ''}", soft_wrap=True)


class UdcToneMap(StrEnum):
    reinhard = "reinhard"
    none = "none"


class GoproBlur(StrEnum):
    blur = "blur"
    blur_gamma = "blur_gamma"


@prepare_app.command("udc")
@handle_errors
@job_command
def prepare_udc(
    root: Annotated[Path, typer.Option("--root", help="DISCNet's synthetic_data (holding GT/ "
                                       "and input/) or the MIPI 2022 folder (training/, "
                                       "validation/).")],
    out: OutOpt,
    patch: Annotated[int, typer.Option("--patch", help="Crop size; non-overlapping crops "
                                       "(paper: 400, four per 800x800 image).")] = 400,
    tonemap: Annotated[UdcToneMap, typer.Option(
        "--tonemap", help="reinhard: x/(x+0.25) in [0,1), stored as uint16; none: linear HDR "
        "stored as float16.")] = UdcToneMap.reinhard,
    psf_pos: Annotated[str, typer.Option(
        "--psf-pos", help="DISCNet PSF position (input/ZTE_new_<pos>/, 1-9) or 'all'.")] = "5",
    flags: JobFlags = JobFlags(),
) -> None:
    """Cut UDC SYNTH HDR .npy pairs (DISCNet or MIPI layout) into tone-mapped patches.

    Example: lpie-data prepare udc --root ~/data/synthetic_data --out data/udc --psf-pos all
    """
    from lpie_data.prepare import prepare_udc as run

    with progress_bar("prepare udc") as update:
        summary = run(root, out, patch=patch, tone_map=tonemap.value, psf_pos=psf_pos,
                      job=flags.options(update))
    print_summary(summary, out)


@prepare_app.command("gopro")
@handle_errors
@job_command
def prepare_gopro(
    root: Annotated[Path, typer.Option("--root", help="GOPRO_Large (train/, test/ of "
                                       "<sequence>/{blur,blur_gamma,sharp}/) or the flattened "
                                       "repack ({train,test}/{input,target}/).")],
    out: OutOpt,
    blur: Annotated[GoproBlur, typer.Option(
        "--blur", help="Input folder of GOPRO_Large: blur (modern benchmarks) or blur_gamma "
        "(the original paper).")] = GoproBlur.blur,
    flags: JobFlags = JobFlags(),
) -> None:
    """Store GoPro blurred/sharp pairs as whole 1280x720 frames, keyed <sequence>/<frame>.

    Example: lpie-data prepare gopro --root ~/data/GOPRO_Large --out data/gopro --jobs 8
    """
    from lpie_data.prepare import prepare_gopro as run

    with progress_bar("prepare gopro") as update:
        summary = run(root, out, blur=blur.value,
                      job=flags.options(update))
    print_summary(summary, out)

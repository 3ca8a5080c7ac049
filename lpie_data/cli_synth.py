"""``lpie-data synth`` (simulate training pairs) and ``lpie-data psf simulate|show``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lpie_data.cli_jobs import JobFlags, OutOpt, job_command, print_summary
from lpie_data.console import console, err_console, handle_errors, progress_bar

psf_app = typer.Typer(
    no_args_is_help=True,
    help="Point spread functions: simulate an under-display-camera PSF, show one.",
)


class SourceSpace(StrEnum):
    srgb = "srgb"
    linear = "linear"


@handle_errors
@job_command
def synth(
    out: OutOpt,
    psf: Annotated[list[Path] | None, typer.Option(
        "--psf", help="PSF file (.npy/.npz/.mat/.h5) or folder of them; repeatable. "
        "Default: the built-in simulated UDC PSF.")] = None,
    source: Annotated[list[str] | None, typer.Option(
        "--source", help="Folder of photos (PNG/JPEG/TIFF) or .npy HDR arrays, or an lpie "
        "dataset (the targets of its train split; DATASET:split for another, e.g. "
        "data/udc:test); repeatable. Default: built-in sample photos.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", exists=True, dir_okay=False,
        help="TOML file with a \\[synth] table (see docs/synthesis.md).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed.")] = 0,
    val_fraction: Annotated[float, typer.Option(
        "--val-fraction", min=0.0, max=0.99, help="Share of source images for validation.")] = 0.1,
    source_space: Annotated[SourceSpace | None, typer.Option(
        "--source-space", help="Photos are sRGB (linearised) or already linear; overrides "
        "the config.")] = None,
    flags: JobFlags = JobFlags(),
) -> None:
    """Simulate training pairs y = gamma(C(x * k + n)): blur by a PSF, noise, clip, tone map.

    Example: lpie-data synth --psf psfs/ --source photos/ --config synth.toml --out data/synth
    """
    import dataclasses

    from lpie_data.synth import SynthConfig, synth_config_from_toml, synthesize
    from lpie_data.synth.pipeline import mean_clipped

    cfg = synth_config_from_toml(config) if config else SynthConfig()
    if source_space is not None:
        cfg = dataclasses.replace(cfg, source_space=source_space.value)
    with progress_bar("synth") as update:
        summary = synthesize(out, sources=source or [], psfs=psf or [], config=cfg, seed=seed,
                             val_fraction=val_fraction,
                             job=flags.options(update, warn=False))
    clipped = mean_clipped(out)
    lines = [] if clipped is None else [
        f"clipped: {clipped:.1%} of the input pixels on average reached x_max (meta 'clipped')"]
    print_summary(summary, out, what="source images", lines=lines)


@psf_app.command("simulate")
@handle_errors
def psf_simulate(
    out: Annotated[Path, typer.Option("--out", help="Output .npy file (H x W x 3 float32).")],
    size: Annotated[int, typer.Option("--size", min=3, help="PSF side in sensor pixels.")] = 800,
    pitch: Annotated[float, typer.Option("--pitch", help="Display pixel pitch (um).")] = 80.0,
    opening: Annotated[float, typer.Option(
        "--opening", help="Side of the square transparent opening per display pixel (um).")] = 50.0,
    focal: Annotated[float, typer.Option("--focal", help="Lens focal length (mm).")] = 4.0,
    aperture: Annotated[float, typer.Option(
        "--aperture", help="Lens pupil diameter (mm) = focal / f-number.")] = 2.0,
    pixel: Annotated[float, typer.Option("--pixel", help="Sensor pixel pitch (um).")] = 1.0,
) -> None:
    """Simulate the diffraction PSF of a camera behind a display (Fraunhofer, R/G/B).

    Example: lpie-data psf simulate --out psf.npy --size 800 --pitch 80 --opening 50
    """
    from lpie_data.synth.psf import save_psf
    from lpie_data.synth.psf_sim import DisplayOptics, simulate_udc_psf

    optics = DisplayOptics(size=size, pitch_um=pitch, opening_um=opening, focal_mm=focal,
                           aperture_mm=aperture, pixel_um=pixel)
    kernel = simulate_udc_psf(optics)
    save_psf(out, kernel)
    c = size // 2
    core = kernel[c - 1 : c + 2, c - 1 : c + 2].sum(axis=(0, 1))
    spacing = ", ".join(f"{optics.lobe_spacing_px(w):.1f}" for w in optics.wavelengths_nm)
    console.print(f"[green]wrote {out}[/] ({size}x{size}x3 float32, each channel sums to 1)")
    console.print(f"  sidelobe spacing R, G, B: {spacing} px; energy in the central 3x3: "
                  + ", ".join(f"{v:.1%}" for v in core))


@psf_app.command("show")
@handle_errors
def psf_show(
    psf: Annotated[str, typer.Argument(help="PSF file (.npy/.npz/.mat/.h5), or 'builtin'.")],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")],
    decades: Annotated[float, typer.Option("--decades", min=1.0,
                                           help="Dynamic range shown (powers of 10).")] = 6.0,
    recentre: Annotated[bool, typer.Option(
        "--recentre", help="Show the PSF padded so that its centroid is at the array centre "
        "(as synth's psf_recentre = true uses it).")] = False,
) -> None:
    """Picture a PSF: log-scale image per colour channel plus the radial profile.

    Example: lpie-data psf show psf.npy --out psf.png
    """
    from lpie_data.images import write_png
    from lpie_data.synth.psf import load_psf
    from lpie_data.synth.psf_sim import builtin_psf
    from lpie_data.synth.psf_view import render_psf

    loaded = builtin_psf() if psf == "builtin" else load_psf(psf, recentre=recentre)
    if loaded.warning:
        err_console.print(f"[bold yellow]warning:[/] {escape(loaded.warning)}", highlight=False,
                          soft_wrap=True)
    if loaded.note:
        console.print(f"  [yellow]note:[/] {escape(loaded.note)}", highlight=False,
                      soft_wrap=True)
    picture = render_psf(loaded, decades=decades)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, picture)
    console.print(f"[green]wrote {out}[/] ({picture.shape[1]}x{picture.shape[0]})")

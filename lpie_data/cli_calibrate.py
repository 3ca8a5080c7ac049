"""``lpie-data calibrate``: fit the simulator's PSF and noise to a camera from real pairs.

Thin Typer commands over :mod:`lpie_data.calibrate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lpie_data.console import console, handle_errors

calibrate_app = typer.Typer(
    no_args_is_help=True,
    help="Fit the simulator to a camera: estimate its PSF and noise from aligned real pairs.",
)

SplitOpt = Annotated[str, typer.Option("--split", help="Split to read.")]
PairsOpt = Annotated[int | None, typer.Option(
    "--pairs", min=1, help="Use the first N pairs of the split (default: all; all are held "
    "in memory).")]


def _space_text(space: str, assumed: bool) -> str:
    text = space + (" (assumed: older manifest)" if assumed else "")
    if space == "srgb":
        text += ("; linearised with the inverse sRGB curve, an approximation of the camera's "
                 "pipeline")
    return text


@calibrate_app.command("noise")
@handle_errors
def noise(
    dataset: Annotated[str, typer.Argument(help="Dataset folder (lpie pair dataset).")],
    out: Annotated[Path, typer.Option("--out", help="noise.json to write (the picture goes "
                                      "next to it as .png).")],
    split: SplitOpt = "train",
    by: Annotated[str, typer.Option("--by", help="Comma-separated meta keys that group the "
                                    "pairs, e.g. phone,iso (default: one group).")] = "",
    psf: Annotated[Path | None, typer.Option(
        "--psf", exists=True, dir_okay=False, help="PSF the inputs are blurred by (e.g. from "
        "calibrate psf): residual y - x*k at intensity x*k.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="PNG picture to write "
                                              "(default: --out with .png).")] = None,
    pairs: PairsOpt = None,
) -> None:
    """Fit the noise-level function var(y - x | x) = beta1 x + beta2 per group and channel.

    Example: lpie-data calibrate noise data/sidd --by phone,iso --out noise.json
    """
    from lpie_data.calibrate import NoiseFitOptions, calibrate_noise

    keys = tuple(k.strip() for k in by.split(",") if k.strip())
    cal = calibrate_noise(dataset, out, split=split, psf=psf, plot=plot,
                          options=NoiseFitOptions(by=keys), limit=pairs)
    console.print(f"  value space: {_space_text(cal.value_space, cal.assumed)}",
                  soft_wrap=True, highlight=False)
    used = "x * k (re-blurred target, --psf)" if psf else "x (the target; pairs taken as unblurred)"
    console.print(f"  residual y - intensity, intensity = {used}", soft_wrap=True,
                  highlight=False)
    for g in cal.groups:
        name = ", ".join(f"{k}={v}" for k, v in g.group.items()) or "all pairs"
        rgb = " / ".join(f"{a:.4g}, {b:.4g}" for a, b in
                         zip(g.channel_beta1, g.channel_beta2, strict=True))
        console.print(f"  {escape(name)}: beta1 {g.beta1:.4g}, beta2 {g.beta2:.4g} "
                      f"(R / G / B: {rgb}); residual {g.residual:.1%}, {g.pixels} pixels "
                      f"from {g.pairs} pairs", soft_wrap=True, highlight=False)
    console.print(f"[green]wrote {escape(str(out))}[/] and "
                  f"{escape(str(plot or out.with_suffix('.png')))}", soft_wrap=True)


@calibrate_app.command("psf")
@handle_errors
def psf(
    dataset: Annotated[str, typer.Argument(help="Dataset folder whose inputs are the blurred "
                                           "targets (linear light is best).")],
    out: Annotated[Path, typer.Option("--out", help="PSF .npy to write (picture .png and "
                                      "report .json go next to it).")],
    split: SplitOpt = "train",
    size: Annotated[int | None, typer.Option("--size", min=1, help="PSF side in pixels (odd; "
                                             "may be as large as the pairs; default 65).")] = None,
    border: Annotated[int | None, typer.Option(
        "--border", min=0, help="Pixels left out at each side (default: the PSF radius, at "
        "most 1/8 of the pair).")] = None,
    smoothness: Annotated[float | None, typer.Option(
        "--smoothness", min=0.0, help="Weight of the smoothness prior (default 1e-5).")] = None,
    iterations: Annotated[int | None, typer.Option(
        "--iterations", min=1, help="Conjugate-gradient steps (default 40).")] = None,
    pairs: PairsOpt = None,
) -> None:
    """Estimate the PSF k per channel from pairs whose input is the blurred target (x * k).

    Example: lpie-data calibrate psf data/udc-linear --size 65 --out psf.npy
    """
    from lpie_data.calibrate import PsfFitOptions, calibrate_psf

    given = {"size": size, "border": border, "smoothness": smoothness, "iterations": iterations}
    options = PsfFitOptions(**{k: v for k, v in given.items() if v is not None})
    cal = calibrate_psf(dataset, out, split=split, options=options, limit=pairs)
    console.print(f"  value space: {_space_text(cal.value_space, cal.assumed)}",
                  soft_wrap=True, highlight=False)
    values = sorted(cal.fit.psnr.values())
    side = options.size
    console.print(f"  {side}x{side} PSF from {cal.pairs} pairs, border {cal.fit.border}, "
                  f"{cal.fit.pixels} pixels per channel; re-blurred targets against inputs: "
                  f"PSNR {values[0]:.1f} .. {values[-1]:.1f} dB (per pair in the report)",
                  soft_wrap=True, highlight=False)
    console.print(f"[green]wrote {', '.join(escape(f) for f in cal.files)}[/]", soft_wrap=True)

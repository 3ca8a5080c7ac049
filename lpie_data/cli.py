"""The ``lpie-data`` command: thin Typer commands over the lpie_data library."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from inspect import Parameter, signature
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from lpie_data.cli_calibrate import calibrate_app
from lpie_data.console import (
    LpieGroup,
    console,
    err_console,
    handle_errors,
    human_bytes,
    progress_bar,
    quiet_tensorflow,
)
from lpie_data.valuespace import manifest_value_space

if TYPE_CHECKING:
    from lpie_data.jobs import JobOptions

app = typer.Typer(
    cls=LpieGroup,
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
ShardOpt = Annotated[int, typer.Option("--shard-mb", min=1, help="Target shard size in MiB.")]
BackendOpt = Annotated[Backend, typer.Option("--backend", help="joblib backend: loky "
                                             "(local processes), threading, or dask (cluster).")]
SchedulerOpt = Annotated[
    str | None, typer.Option("--scheduler", help="Dask scheduler address for --backend dask.")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", help="Show TensorFlow's own logging.")]


@app.callback()
def _main(verbose: VerboseOpt = False) -> None:
    quiet_tensorflow(verbose)


def _warn(note: str) -> None:
    err_console.print(f"[bold yellow]warning:[/] {escape(note)}", highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class JobFlags:
    """The flags every dataset-job command shares (added by :func:`job_command`)."""

    jobs: int = -1
    overwrite: bool = False
    shard_mb: int = 128
    backend: Backend = Backend.loky
    scheduler: str | None = None

    def options(self, progress: Callable[[int, int], None] | None, *,
                warn: bool = True) -> JobOptions:
        """The library's JobOptions (``warn``: print notes about the inputs up front)."""
        from lpie_data.jobs import JobOptions

        return JobOptions(jobs=self.jobs, backend=self.backend.value, scheduler=self.scheduler,
                          shard_bytes=self.shard_mb * 2**20, overwrite=self.overwrite,
                          progress=progress, warn=_warn if warn else None)


_JOB_FLAGS = {"jobs": JobsOpt, "overwrite": OverwriteOpt, "shard_mb": ShardOpt,
              "backend": BackendOpt, "scheduler": SchedulerOpt}


def job_command(fn: Callable[..., None]) -> Callable[..., None]:
    """Give a dataset-job command the shared --jobs/--overwrite/--shard-mb/--backend/--scheduler
    flags; the command takes them as one ``flags: JobFlags`` argument."""
    own_signature = signature(fn, eval_str=True)
    own = [p for p in own_signature.parameters.values() if p.name != "flags"]
    defaults = JobFlags()
    shared = [Parameter(name, Parameter.KEYWORD_ONLY, annotation=annotation,
                        default=getattr(defaults, name))
              for name, annotation in _JOB_FLAGS.items()]

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> None:
        flags = JobFlags(**{name: kwargs.pop(name) for name in _JOB_FLAGS})
        fn(*args, flags=flags, **kwargs)

    params = [*own, *shared]
    command.__signature__ = own_signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return command


def print_summary(summary: Any, out: str, what: str = "items", lines: Sequence[str] = ()) -> None:
    """The short report after a dataset job: pairs and bytes per split, ``lines`` (e.g. the
    clipped share of synth pairs), notes, time."""
    if summary.noop:
        console.print(f"[green]{escape(out)} is already complete[/] (same inputs and arguments): "
                      "nothing to do.", soft_wrap=True)
    for split, s in sorted(summary.splits.items()):
        console.print(f"  {split:>10}: {s['examples']:>7} pairs  {human_bytes(s['bytes'])}")
    for line in lines:
        console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    for note in summary.notes:
        console.print(f"  [yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    if not summary.noop:
        resumed = f", {summary.items_resumed} resumed" if summary.items_resumed else ""
        console.print(f"[green]wrote {escape(out)}[/] from {summary.items} {what}{resumed} "
                      f"in {summary.seconds:.1f} s", soft_wrap=True)


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


@app.command("inspect")
@handle_errors
def inspect(
    path: Annotated[str, typer.Argument(help="Dataset folder.")],
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
    path: Annotated[str, typer.Argument(help="Dataset folder.")],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")],
    split: Annotated[str, typer.Option("--split", help="Split to show.")] = "train",
    count: Annotated[int, typer.Option("--count", min=1, help="Number of pairs.")] = 4,
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


# --- synth and psf (lpie_data.synth) ---------------------------------------------------------

psf_app = typer.Typer(
    no_args_is_help=True,
    help="Point spread functions: simulate an under-display-camera PSF, show one.",
)
app.add_typer(psf_app, name="psf")
app.add_typer(calibrate_app, name="calibrate")


class SourceSpace(StrEnum):
    srgb = "srgb"
    linear = "linear"


@app.command("extract")
@handle_errors
def extract(
    path: Annotated[str, typer.Argument(help="Dataset folder.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the image files.")],
    split: Annotated[str, typer.Option("--split", help="Split to read.")] = "train",
    count: Annotated[int, typer.Option("--count", min=1, help="Number of pairs.")] = 4,
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


@app.command("synth")
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


def main() -> None:
    app()

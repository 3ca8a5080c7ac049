"""The two calibrations end to end, as the commands run them: read, fit, write the files.

Each file is written through a temporary name and a rename; nothing is written when reading
or fitting fails.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from lpie_data import storage
from lpie_data.calibrate.noise import (
    NoiseCalibration,
    NoiseFitOptions,
    fit_noise,
)
from lpie_data.calibrate.noisefile import write_noise_file
from lpie_data.calibrate.pairs import load_linear_pairs
from lpie_data.calibrate.plots import png_bytes, render_noise
from lpie_data.calibrate.psf import PsfFit, PsfFitOptions, check_fit_memory, fit_psf
from lpie_data.errors import OutputError
from lpie_data.shards import read_manifest
from lpie_data.synth.psf import load_psf, make_psf, save_psf
from lpie_data.synth.psf_view import render_psf


def _sibling(out: Path, suffix: str) -> Path:
    return out.with_name(out.stem + suffix)


def calibrate_noise(
    dataset: str,
    out: str | Path,
    *,
    split: str = "train",
    psf: str | Path | None = None,
    options: NoiseFitOptions | None = None,
    plot: str | Path | None = None,
    limit: int | None = None,
) -> NoiseCalibration:
    """Fit the dataset's noise-level function and write ``out`` (noise.json) and the picture
    ``plot`` (default: ``out`` with ``.png``). ``psf``: a PSF file the pairs are blurred by.
    ``limit``: use the first pairs of the split only (all are held in memory)."""
    options = options or NoiseFitOptions()
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise OutputError(f"{out}: the noise file is JSON; name it *.json")
    kernel = load_psf(psf) if psf is not None else None
    pairs = load_linear_pairs(dataset, split, keys=options.by, limit=limit)
    calibration = fit_noise(pairs, options, kernel)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture = png_bytes(render_noise(calibration))
    write_noise_file(calibration, out)
    storage.write_atomic(str(plot or _sibling(out, ".png")), picture)
    return calibration


@dataclass(frozen=True)
class PsfCalibration:
    """What ``calibrate psf`` made: the fit, the dataset's value space, the files written."""

    fit: PsfFit
    value_space: str
    assumed: bool
    pairs: int
    files: tuple[str, ...]


def calibrate_psf(
    dataset: str,
    out: str | Path,
    *,
    split: str = "train",
    options: PsfFitOptions | None = None,
    limit: int | None = None,
) -> PsfCalibration:
    """Estimate the PSF of a dataset's pairs and write ``out`` (.npy, what ``synth --psf``
    reads), its picture (``.png``) and a report (``.json``: per-pair PSNR of the re-blurred
    targets against the inputs in linear light). ``limit``: use the first pairs only."""
    options = options or PsfFitOptions()
    out = Path(out)
    if out.suffix.lower() != ".npy":
        raise OutputError(f"{out}: PSFs are written as .npy; name the file *.npy")
    first = load_linear_pairs(dataset, split, limit=1)  # the pairs' size, before loading all
    count = read_manifest(dataset)["splits"].get(split, {}).get("examples", 1)
    check_fit_memory(dataset, min(count, limit) if limit else count, first.shape, options.size)
    pairs = load_linear_pairs(dataset, split, limit=limit)
    fit = fit_psf(pairs, options)
    psf = make_psf(fit.kernel, out.stem, str(out))
    picture = png_bytes(render_psf(psf))
    values = list(fit.psnr.values())
    report = {
        "dataset": dataset,
        "split": split,
        "value_space": pairs.space,
        "value_space_assumed": pairs.assumed,
        "size": options.size,
        "border": fit.border,
        "smoothness": options.smoothness,
        "iterations": options.iterations,
        "refine": options.refine,
        "pixels": fit.pixels,
        "clip": pairs.clip if math.isfinite(pairs.clip) else None,
        "psnr_db": {k: (round(v, 3) if math.isfinite(v) else str(v)) for k, v in fit.psnr.items()},
        "psnr_db_mean": round(sum(values) / len(values), 3) if all(map(math.isfinite, values))
        else None,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_psf(out, fit.kernel)
    png, js = _sibling(out, ".png"), _sibling(out, ".json")
    storage.write_atomic(str(png), picture)
    storage.write_atomic(str(js), (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    return PsfCalibration(fit, pairs.space, pairs.assumed, len(pairs.pairs),
                          (str(out), str(png), str(js)))

"""Benchmark of `lpie-data calibrate`: each fit on a 16-pair 800 x 800 dataset made here.

The dataset: 16 linear 800 x 800 textured images blurred by a simulated 65 x 65 under-display
PSF (or by an 801 x 801 one for ``--size 801``), shot + read noise, clipped at 1, tone map
none (made with ``synth`` in a temporary folder, not timed). Timed, once each:

- reading the split into linear light;
- ``calibrate noise`` (binned robust fit) without and with ``--psf``;
- ``calibrate psf`` at each ``--sizes`` (conjugate gradients, default iterations), with the
  number of FFT passes it makes and, as a floor measured in the same run, the time of one
  real FFT pass over all pairs at that transform size (forward + inverse, 3 channels).

Run: .venv/bin/python bench/calibrate.py [--sizes 65,801] [--pairs 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.fft
import scipy.ndimage as ndi

from lpie_data.calibrate import (
    NoiseFitOptions,
    PsfFitOptions,
    fit_noise,
    fit_psf,
    load_linear_pairs,
)
from lpie_data.jobs import JobOptions
from lpie_data.synth import SynthConfig, synthesize
from lpie_data.synth.blur import fft_shape_for
from lpie_data.synth.psf import load_psf, save_psf
from lpie_data.synth.psf_sim import DisplayOptics, simulate_udc_psf

SIZE = 800


def make_dataset(folder: Path, pairs: int, psf_size: int) -> tuple[str, Path]:
    src = folder / "src"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(pairs):
        img = sum(ndi.gaussian_filter(rng.random((SIZE, SIZE, 3), np.float32), (s, s, 0)) * w
                  for s, w in [(0.7, 1.0), (3.0, 2.0), (10.0, 3.0)])
        img = (img - img.min()) / (img.max() - img.min())
        np.save(src / f"{i:03d}.npy", (img**2).astype(np.float32))
    psf = folder / "psf.npy"
    save_psf(psf, simulate_udc_psf(DisplayOptics(size=psf_size)))
    cfg = SynthConfig(crop=SIZE, pairs_per_image=1, exposure=1.5, noise="fixed", beta1=5e-4,
                      beta2=5e-6, x_max=1.0, tone_map="none")
    synthesize(folder / "ds", sources=[src], psfs=[psf], config=cfg, job=JobOptions(jobs=1),
               val_fraction=0.0)
    return str(folder / "ds"), psf


def fft_floor(pairs: int, psf_size: int) -> float:
    """Seconds for one forward + inverse real FFT of every pair (3 channels) at the PSF fit's
    transform size: the unit of work of one pass of its operators."""
    shape = fft_shape_for((SIZE, SIZE), (psf_size, psf_size))
    x = np.random.default_rng(0).random((3, SIZE, SIZE), np.float32)
    scipy.fft.irfft2(scipy.fft.rfft2(x, s=shape, workers=-1), s=shape, workers=-1)
    t = time.perf_counter()
    for _ in range(pairs):
        scipy.fft.irfft2(scipy.fft.rfft2(x, s=shape, workers=-1), s=shape, workers=-1)
    return time.perf_counter() - t


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="65,801", help="PSF sizes to fit, comma-separated")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"lpie-data calibrate, {args.pairs} pairs of {SIZE}x{SIZE}; {platform.processor() or ''}"
          f" {os.cpu_count()} cores, numpy {np.__version__}, scipy {scipy.__version__}")
    print("| fit | seconds | one FFT pass (floor) | ratio |\n|---|---|---|---|", flush=True)
    rows = []

    def row(name: str, seconds: float, floor: float | None = None) -> None:
        rows.append({"fit": name, "seconds": seconds, "fft_pass_seconds": floor})
        extra = f"{floor:.2f} | {seconds / floor:.0f}x" if floor else "- | -"
        print(f"| {name} | {seconds:.2f} | {extra} |", flush=True)

    with tempfile.TemporaryDirectory(prefix="lpie-bench-calibrate-") as tmp:
        for n, psf_size in enumerate(sizes):
            ds, psf_file = make_dataset(Path(tmp) / f"d{n}", args.pairs, psf_size)
            pairs, t_read = timed(load_linear_pairs, ds)
            if n == 0:
                row("read split into linear light", t_read)
                _, t = timed(fit_noise, pairs, NoiseFitOptions())
                row("calibrate noise", t)
                _, t = timed(fit_noise, pairs, NoiseFitOptions(), load_psf(psf_file))
                row(f"calibrate noise --psf ({psf_size}x{psf_size})", t)
            opts = PsfFitOptions(size=psf_size)
            fit, t = timed(fit_psf, pairs, opts)
            floor = fft_floor(args.pairs, psf_size)
            passes = 2 * (opts.iterations + 2 * opts.refine) + 2
            row(f"calibrate psf --size {psf_size} ({opts.iterations} CG + {opts.refine} refine "
                f"steps, ~{passes} FFT passes; PSNR {min(fit.psnr.values()):.1f} dB)", t, floor)
            del pairs, fit
    if args.json:
        print(json.dumps(rows))

if __name__ == "__main__":
    main()

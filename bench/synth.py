"""Benchmark of `lpie-data synth`: 800 x 800 crops blurred by an 800 x 800 x 3 PSF.

Reports, on this machine:
- floor: the FFT convolution of the image with the PSF alone (reflect pad, real FFT of the
  padded image, product with the PSF spectrum computed beforehand, inverse FFT, crop;
  float32, fast sizes, the same FFT threads as the simulator);
- per pair: everything the simulator does for one pair (draws, blur with the source's
  context, noise, clip, tone map, conversion to the stored dtype), and its ratio to the
  floor (target <= 1.5);
- the common approach: scipy.signal.fftconvolve per channel on the reflect-padded image;
Timings are the best of ``--repeats`` runs, taken in turns with the floor; the median of the
per-run ratios is reported too.
- end to end: pairs/s of synthesize writing shards (one process).

The command, per pair (issue 13's row; bench/perpair.py has the method): ``lpie-data synth``
with 800 x 800 crops, the 800 x 800 x 3 built-in PSF, ``unprocessing`` noise, ``reinhard``,
uint16, on ``--sources`` .npy images of 1200 x 1200 (2 pairs each) against ``python
bench/floors.py fft`` (one 3-channel real-FFT convolution per pair at the padded size, PSF
spectrum computed once), both on the whole and on half the sources, interleaved; --jobs 1 and 2.
Target: --jobs 1 <= 1.20 x the floor.

Run: .venv/bin/python bench/synth.py [--repeat 5] [--sources 8]     # the command, per pair
     .venv/bin/python bench/synth.py --in-process [--repeats 10]     # the breakdown above
     .venv/bin/python bench/synth.py --quick                         # checks the script runs
     .venv/bin/python bench/synth.py --profile [--sources 8]         # CPU per stage, by thread
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.fft
import scipy.signal

from lpie_data.jobs import JobOptions
from lpie_data.synth import SynthConfig, builtin_psf, synthesize
from lpie_data.synth.blur import clear_spectrum_cache, psf_spectrum, to_channels_first
from lpie_data.synth.pipeline import synthesize_pair
from lpie_data.synth.psf import rotate_psf, save_psf
from lpie_data.synth.sampling import draw_pair_params, pair_rng
from lpie_data.synth.sources import find_sources, load_source
from lpie_data.synth.tonemap import encode_for_storage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perpair import (  # noqa: E402
    Command,
    floor_cmd,
    lpie_data,
    measure,
    remover,
    report,
    stage_profile,
)

SIZE = 800
SOURCE = 1200
PAIRS_PER_IMAGE = 2


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, taking turns (so a burst of load from other
    programs hits all of them alike); one warm-up call each first."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def test_image() -> np.ndarray:
    """An 800 x 800 linear crop of a real photo (the Hubble deep field, bright stars on black)."""
    source = next(s for s in find_sources([]) if s.key.endswith("hubble_deep_field"))
    return np.ascontiguousarray(load_source(source)[:SIZE, :SIZE])


def in_process(args: argparse.Namespace) -> None:
    """The per-pair breakdown in one process (floor, pair, fftconvolve, rotation, end to end)."""
    workers = os.cpu_count() or 1
    psf = builtin_psf()
    image = test_image()
    ph, pw = psf.kernel.shape[:2]
    cy, cx = ph // 2, pw // 2
    pads = ((ph - 1 - cy, cy), (pw - 1 - cx, cx))
    fft_shape = tuple(scipy.fft.next_fast_len(SIZE + p - 1, real=True) for p in (ph, pw))
    spectrum = psf_spectrum(psf, fft_shape, workers=workers)

    def floor() -> np.ndarray:
        padded = np.pad(to_channels_first(image), ((0, 0), *pads), mode="symmetric")
        freq = scipy.fft.rfft2(padded, s=fft_shape, workers=workers)
        freq *= spectrum
        full = scipy.fft.irfft2(freq, s=fft_shape, workers=workers)
        return full[:, ph - 1 : ph - 1 + SIZE, pw - 1 : pw - 1 + SIZE]

    def common() -> np.ndarray:
        out = []
        for c in range(3):
            padded = np.pad(image[:, :, c], pads, mode="symmetric")
            out.append(scipy.signal.fftconvolve(padded, psf.kernel[:, :, c], mode="valid"))
        return np.stack(out, axis=2)

    np.testing.assert_allclose(
        floor().transpose(1, 2, 0), common(), rtol=1e-3, atol=1e-5 * float(image.max())
    )

    config = SynthConfig(crop=SIZE, pairs_per_image=1, exposure=(1.0, 4.0), noise="unprocessing")
    source_chw = to_channels_first(image)
    counter = iter(range(10**6))

    def per_pair() -> None:
        rng = pair_rng(0, "bench", next(counter))
        params = draw_pair_params(rng, config, image.shape[:2], 1)
        inp, tgt = synthesize_pair(source_chw, params, psf, config.tone_map, rng, workers=workers)
        encode_for_storage(inp, config.tone_map)
        encode_for_storage(tgt, config.tone_map)

    times = interleaved({"floor": floor, "pair": per_pair}, args.repeats)
    common_times = interleaved({"floor": floor, "common": common}, max(3, args.repeats // 3))
    # best of n: the run least disturbed by other programs
    t_floor, t_pair = min(times["floor"]), min(times["pair"])
    t_common = min(common_times["common"])

    rotated = SynthConfig(crop=SIZE, pairs_per_image=1, psf_rotation=2.0)

    def per_pair_rotated() -> None:
        rng = pair_rng(0, "bench", next(counter))
        params = draw_pair_params(rng, rotated, image.shape[:2], 1)
        k = rotate_psf(psf, params.psf_rotation)
        inp, tgt = synthesize_pair(source_chw, params, k, rotated.tone_map, rng,
                                   workers=workers, cache=False)
        encode_for_storage(inp, rotated.tone_map)
        encode_for_storage(tgt, rotated.tone_map)

    t_rotated = min(interleaved({"rotated": per_pair_rotated}, 3)["rotated"])

    # end to end: 6 sources of 800 x 800 (.npy), 2 pairs each, written as shards, one process
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for i in range(6):
            np.save(src / f"{i}.npy", np.roll(image, 100 * i, axis=1))
        save_psf(Path(tmp) / "psf.npy", psf.kernel)
        cfg = SynthConfig(crop=SIZE, pairs_per_image=2)
        clear_spectrum_cache()
        t = time.perf_counter()
        summary = synthesize(Path(tmp) / "out", sources=[src], psfs=[Path(tmp) / "psf.npy"],
                             config=cfg, job=JobOptions(jobs=1), val_fraction=0.0)
        t_e2e = time.perf_counter() - t
        pairs = sum(s["examples"] for s in summary.splits.values())

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.system()}",
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "fft_threads": workers,
        "image": f"{SIZE}x{SIZE}x3 float32",
        "psf": f"{ph}x{pw}x3",
        "fft_shape": list(fft_shape),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "floor_ms": round(t_floor * 1e3, 1),
        "per_pair_ms": round(t_pair * 1e3, 1),
        "ratio_to_floor": round(t_pair / t_floor, 2),
        "ratio_to_floor_median": round(
            statistics.median(p / f for p, f in zip(times["pair"], times["floor"], strict=True)), 2
        ),
        "pairs_per_s": round(1.0 / t_pair, 2),
        "per_pair_with_psf_rotation_ms": round(t_rotated * 1e3, 1),
        "fftconvolve_per_channel_ms": round(t_common * 1e3, 1),
        "speedup_vs_fftconvolve": round(t_common / t_pair, 2),
        "end_to_end_pairs_per_s": round(pairs / t_e2e, 2),
        "end_to_end_pairs": pairs,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:>28}: {value}")


def command(args: argparse.Namespace) -> None:
    """``lpie-data synth`` per pair against the FFT floor, as fresh commands (bench/perpair.py)."""
    size, source = (SIZE, SOURCE) if not args.quick else (200, 300)
    base = Path(tempfile.mkdtemp(prefix="bench-synth-", dir=args.dir))
    try:
        psf = builtin_psf()
        kernel = psf.kernel if not args.quick else psf.kernel[::8, ::8]
        save_psf(base / "psf.npy", kernel / kernel.sum(axis=(0, 1)))
        image = test_image()
        half_sources = args.sources // 2
        for tree, count in (("whole", args.sources), ("half", half_sources)):
            (base / tree).mkdir()
            for i in range(count):
                crop = np.roll(image, 97 * i, axis=1)
                grow = max(0, source - SIZE)
                tiled = np.pad(crop, ((0, grow), (0, grow), (0, 0)),
                               mode="symmetric")[:source, :source]
                np.save(base / tree / f"{i:03d}.npy", np.ascontiguousarray(tiled))
        (base / "synth.toml").write_text(
            f"[synth]\ncrop = {size}\npairs_per_image = {PAIRS_PER_IMAGE}\n"
            'noise = "unprocessing"\ntone_map = "reinhard"\n')
        pairs, half_pairs = args.sources * PAIRS_PER_IMAGE, half_sources * PAIRS_PER_IMAGE
        commands = [Command("floor",
                            floor_cmd("fft", str(base / "psf.npy"), str(pairs), str(size)),
                            floor_cmd("fft", str(base / "psf.npy"), str(half_pairs), str(size)))]
        for jobs in (1, 2):
            out = base / f"out{jobs}"
            argv = [*lpie_data(), "synth", "--config", str(base / "synth.toml"), "--psf",
                    str(base / "psf.npy"), "--val-fraction", "0", "--jobs", str(jobs), "--out",
                    str(out), "--source"]
            commands.append(Command(f"jobs{jobs}", [*argv, str(base / "whole")],
                                    [*argv, str(base / "half")], remover(out)))
        measure(commands, args.repeat)
        result = report(commands, pairs, half_pairs, "floor", 1.20, {
            "command": "synth", "crop": size, "psf": "x".join(map(str, kernel.shape)),
            "noise": "unprocessing", "tone_map": "reinhard", "stored": "uint16",
            "sources": f"{args.sources} x {source}x{source}x3 float32 .npy"})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result, indent=2))


def profile(args: argparse.Namespace) -> None:
    """Where ``synth --jobs 1`` spends its time per pair, stage by stage and thread by thread
    (the library call the command makes, in this process; bench/perpair.py's stage_profile)."""
    import lpie_data.fingerprint
    import lpie_data.parts
    import lpie_data.runwriter
    blur = sys.modules["lpie_data.synth.blur"]  # lpie_data.synth.blur is also a function
    import lpie_data.synth.pipeline as pipeline
    from lpie_data.synth.config import synth_config_from_toml

    base = Path(tempfile.mkdtemp(prefix="bench-synth-profile-", dir=args.dir))
    try:
        psf = builtin_psf()
        save_psf(base / "psf.npy", psf.kernel / psf.kernel.sum(axis=(0, 1)))
        image = test_image()
        (base / "src").mkdir()
        for i in range(args.sources):
            tiled = np.pad(np.roll(image, 97 * i, axis=1), ((0, SOURCE - SIZE),) * 2 + ((0, 0),),
                           mode="symmetric")
            np.save(base / "src" / f"{i:03d}.npy", np.ascontiguousarray(tiled))
        (base / "synth.toml").write_text(
            f"[synth]\ncrop = {SIZE}\npairs_per_image = {PAIRS_PER_IMAGE}\n"
            'noise = "unprocessing"\ntone_map = "reinhard"\n')
        config = synth_config_from_toml(base / "synth.toml")

        def run() -> None:
            lpie_data.fingerprint._file_hash.cache_clear()  # a fresh command hashes its inputs
            shutil.rmtree(base / "out", ignore_errors=True)
            synthesize(base / "out", sources=[base / "src"], psfs=[base / "psf.npy"],
                       config=config, val_fraction=0.0, job=JobOptions(jobs=1))

        result = stage_profile(run, [
            (pipeline, "load_source"), (pipeline, "blur_crop"), (blur, "fill_window"),
            (pipeline, "draws_normals_only"), (pipeline, "get_tone_map"),
            (pipeline, "apply_noise"), (pipeline, "clipped_fraction"),
            (pipeline, "encode_for_storage"), (lpie_data.runwriter.RunWriter, "write"),
            (lpie_data.parts, "inputs_digest"), (lpie_data.jobs, "inputs_digest"),
        ], args.sources * PAIRS_PER_IMAGE)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="command runs of each kind")
    parser.add_argument("--sources", type=int, default=8, help="source images (2 pairs each)")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument("--quick", action="store_true",
                        help="small crops and PSF, 4 sources, 1 repetition: checks the script")
    parser.add_argument("--in-process", action="store_true",
                        help="instead: the breakdown in one process")
    parser.add_argument("--repeats", type=int, default=10, help="--in-process repetitions")
    parser.add_argument("--json", action="store_true", help="--in-process: print JSON only")
    parser.add_argument("--profile", action="store_true",
                        help="instead: CPU per pair of each stage of --jobs 1, by thread")
    args = parser.parse_args()
    if args.quick:
        args.sources, args.repeat = 4, 1
    if args.profile:
        profile(args)
    elif args.in_process:
        in_process(args)
    else:
        command(args)


if __name__ == "__main__":
    main()

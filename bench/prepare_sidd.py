"""Benchmark `lpie-data prepare sidd` against the floor: decoding every source PNG once.

Generates (once, cached in ``--cache``, default /tmp/lpie-bench-sidd) a SIDD-Medium tree of real
size: ``--pairs`` frame pairs of 3000 x 5328 (the Galaxy S6 size), 8-bit RGB PNG, with smooth
content plus noise (GT: light noise; NOISY: GT + heavier noise) so that PNG sizes and decode
times are realistic. Then, in the same run and on the same files, it times:

- floor: decode every NOISY and GT PNG once, in this process, with the decoder prepare uses
  (``lpie_data.images.read_png8_rgb``);
- floor_2proc: the same decoding spread over 2 joblib worker processes (what the machine can
  give a parallel run at that moment, worker start-up included);
- prepare: what ``lpie-data prepare sidd --tile 1000`` runs, called as library functions in this
  process: ``lpie_data.prepare_sidd``, i.e. ``sidd.work_items`` (find pairs, check headers) +
  ``jobs.run_job`` (decode, tile,
  encode, part files, shards, sha256, manifest), with ``--jobs 1`` and ``--jobs 2``; each run
  writes a fresh OUT.

Each is timed ``--repeat`` times (the four interleaved), median reported, with the sources in
the page cache; wall time and CPU time (this process + its finished worker processes) are both
reported, since CPU time is less disturbed by other load on the machine. Target:
prepare --jobs 1 <= 1.3 x floor, and --jobs 2 faster than --jobs 1.

    python bench/prepare_sidd.py --pairs 8 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from lpie_data import JobOptions, prepare_sidd
from lpie_data.images import read_png8_rgb

HEIGHT, WIDTH = 3000, 5328  # Galaxy S6 Edge frames


def _smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth float32 H x W x 3 content in [0, 1]: a coarse random field, bicubic-upsampled."""
    coarse = (rng.random((h // 150 + 2, w // 150 + 2, 3)) * 255).astype(np.uint8)
    big = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    return (0.7 * big.astype(np.float32) / 255 + 0.3 * yy).astype(np.float32)


def make_tree(cache: Path, pairs: int) -> Path:
    """The SIDD-Medium tree under ``cache`` (reused when complete)."""
    root = cache / f"SIDD_Medium_Srgb-{pairs}" / "SIDD_Medium_Srgb"
    done = root / ".complete"
    if done.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(0)
    phones = ["S6"] * pairs
    for i in range(pairs):
        folder = f"{i + 1:04d}_{i % 10 + 1:03d}_{phones[i]}_00{100 * (i + 1):03d}_00100_4400_N"
        d = root / "Data" / folder
        d.mkdir(parents=True)
        base = _smooth(rng, HEIGHT, WIDTH)
        gt = base + rng.normal(0, 1.5 / 255, base.shape).astype(np.float32)
        noisy = gt + rng.normal(0, 8 / 255, base.shape).astype(np.float32)
        for kind, arr in (("GT", gt), ("NOISY", noisy)):
            img = np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{folder[:4]}_{kind}_SRGB_010.PNG", format="PNG")
    done.write_text("")
    return root


def floor(root: Path) -> None:
    for p in sorted(root.glob("Data/*/*.PNG")):
        read_png8_rgb(p)


def _decode(path: Path) -> tuple[int, ...]:
    return read_png8_rgb(path).shape


def floor_parallel(root: Path, jobs: int) -> None:
    """The floor spread over ``jobs`` joblib (loky) worker processes: what the machine can
    give a parallel run right now, worker start-up included."""
    import joblib

    joblib.Parallel(n_jobs=jobs)(joblib.delayed(_decode)(p)
                                 for p in sorted(root.glob("Data/*/*.PNG")))


def prepare(root: Path, out: Path, jobs: int) -> None:
    prepare_sidd(root, out, tile=1000, job=JobOptions(jobs=jobs))


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _stop_workers() -> None:
    """End joblib's reusable worker processes, so their CPU time is counted and every
    --jobs 2 run pays for starting its workers, as a command-line run does."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def timed(fn: Callable[[], None], before: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``fn``."""
    before()
    c0, t0 = _cpu(), time.perf_counter()
    fn()
    _stop_workers()
    return time.perf_counter() - t0, _cpu() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/lpie-bench-sidd"))
    ap.add_argument("--work", type=Path, default=None, help="Where OUT goes (default: a temp "
                    "folder next to the cache).")
    args = ap.parse_args()

    t0 = time.perf_counter()
    root = make_tree(args.cache, args.pairs)
    made = time.perf_counter() - t0
    pngs = sorted(root.glob("Data/*/*.PNG"))
    src_bytes = sum(p.stat().st_size for p in pngs)
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=args.work or args.cache))
    out = work / "out"

    def clean() -> None:
        if out.exists():
            shutil.rmtree(out)

    floor(root)  # warm the page cache and the decoder once
    load_before = os.getloadavg()[0]
    runs: dict[str, Callable[[], None]] = {
        "floor": lambda: floor(root),
        "jobs1": lambda: prepare(root, out, 1),
        "floor_2proc": lambda: floor_parallel(root, 2),
        "jobs2": lambda: prepare(root, out, 2),
    }
    results: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in runs}
    for _ in range(args.repeat):  # interleaved, so a change in machine load hits all four
        for k, fn in runs.items():
            wall_s, cpu_s = timed(fn, clean)
            results[k][0].append(wall_s)
            results[k][1].append(cpu_s)
    out_bytes = sum(p.stat().st_size for p in out.iterdir())
    tiles = json.loads((out / "manifest.json").read_text())["splits"]["train"]["examples"]
    shutil.rmtree(work)

    wall = {k: statistics.median(v[0]) for k, v in results.items()}
    cpu = {k: statistics.median(v[1]) for k, v in results.items()}
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}",
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "pairs": args.pairs, "size": f"{HEIGHT}x{WIDTH}", "source_png_bytes": src_bytes,
        "tiles": tiles, "out_bytes": out_bytes, "tree_generation_s": round(made, 1),
        "wall_s": {k: [round(t, 2) for t in v[0]] for k, v in results.items()},
        "cpu_s": {k: [round(t, 2) for t in v[1]] for k, v in results.items()},
        "wall_over_floor": {k: round(wall[k] / wall["floor"], 3)
                            for k in ("jobs1", "floor_2proc", "jobs2")},
        "cpu_over_floor": {k: round(cpu[k] / cpu["floor"], 3)
                           for k in ("jobs1", "floor_2proc", "jobs2")},
    }
    print(json.dumps(report, indent=2))
    print(f"median wall: floor {wall['floor']:.2f} s | prepare --jobs 1 {wall['jobs1']:.2f} s "
          f"({wall['jobs1'] / wall['floor']:.2f}x, target <= 1.3x) | --jobs 2 "
          f"{wall['jobs2']:.2f} s ({wall['jobs2'] / wall['floor']:.2f}x; the floor in 2 processes: "
          f"{wall['floor_2proc']:.2f} s)")
    print(f"median CPU:  floor {cpu['floor']:.2f} s | prepare --jobs 1 {cpu['jobs1']:.2f} s "
          f"({cpu['jobs1'] / cpu['floor']:.2f}x) | --jobs 2 {cpu['jobs2']:.2f} s")

if __name__ == "__main__":
    main()

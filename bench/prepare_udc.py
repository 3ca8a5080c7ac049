"""Benchmark `lpie-data prepare udc` against the floor: just reading the sources (np.load).

Generates a DISCNet-layout tree of real size (default 16 pairs of 800 x 800 x 3 float32, HDR
values in [0, 500]), then times, in the same run and on the same files:

- floor: ``np.load`` of every input and GT file;
- write floor: the floor plus writing as many bytes as the dataset holds, once (what any
  prepare that writes its output must spend at least);
- prepare: planning (header checks) + the whole job (tone map, encode, parts, shards, manifest)
  with ``--jobs 1`` and ``--jobs 2``.

The three are interleaved ``--repeat`` times and the fastest of each counts (the machine may be
shared). Wall and, for floor and --jobs 1 (same process), CPU seconds are reported. First with the
files in the page cache ("warm"), then, unless ``--no-cold``, after evicting the sources from the
page cache with ``posix_fadvise(DONTNEED)`` before every run ("cold": what a first pass over a
dataset larger than RAM sees). Target: prepare --jobs 1 <= 1.3 x floor.

    python bench/prepare_udc.py --pairs 16 --repeat 5
    python bench/prepare_udc.py --profile    # where a --jobs 1 run spends its CPU time
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lpie_data import JobOptions, prepare_udc
from lpie_data.sources import udc


def make_tree(base: Path, pairs: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    root = base / "synthetic_data"
    for i in range(pairs):
        gt = (500.0 * rng.random((size, size, 3), dtype=np.float32) ** 6).astype(np.float32)
        blurred = np.clip(0.5 * gt + 0.5 * np.roll(gt, 7, axis=1), 0, 500).astype(np.float32)
        for folder, arr in (("GT/train", gt), ("input/ZTE_new_5/train", blurred)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            np.save(root / folder / f"{i:04d}.npy", arr)
    return root


def evict(root: Path) -> None:
    """Drop the sources from the page cache (needs no privileges: files we can open)."""
    for p in root.rglob("*.npy"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def floor(root: Path) -> None:
    for p in sorted(root.rglob("*.npy")):
        np.load(p)


def write_floor(root: Path, out: Path, out_bytes: int) -> None:
    """The floor plus writing as many bytes as the dataset holds, once (no tone map, no
    encoding, no hashing): what any prepare that writes its output must at least spend."""
    floor(root)
    block = np.zeros(8 * 2**20, np.uint8)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bytes", "wb") as f:
        for start in range(0, out_bytes, block.size):
            f.write(block[: min(block.size, out_bytes - start)])


def prepare(root: Path, out: Path, jobs: int, tone_map: str) -> None:
    prepare_udc(root, out, patch=400, tone_map=tone_map, job=JobOptions(jobs=jobs))


def clock(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def measure(root: Path, out: Path, repeat: int, tone_map: str, out_bytes: int,
            before: Callable[[], None]) -> dict[str, float]:
    """Floor and prepare (jobs 1, 2) interleaved in every repetition, so that load from other
    processes on the machine hits all of them alike; the fastest repetition of each counts."""
    runs: dict[str, list[tuple[float, float]]] = {"floor": [], "write_floor": [], "jobs1": [],
                                                  "jobs2": []}
    for _ in range(repeat):
        for name in runs:
            shutil.rmtree(out, ignore_errors=True)
            before()
            if name == "floor":
                runs[name].append(clock(lambda: floor(root)))
            elif name == "write_floor":
                runs[name].append(clock(lambda: write_floor(root, out, out_bytes)))
            else:
                jobs = int(name[-1])
                runs[name].append(clock(lambda jobs=jobs: prepare(root, out, jobs, tone_map)))
    row = {f"{name}_s": min(w for w, _ in r) for name, r in runs.items()}
    row["floor_cpu_s"] = min(c for _, c in runs["floor"])
    row["jobs1_cpu_s"] = min(c for _, c in runs["jobs1"])
    for jobs in (1, 2):
        row[f"jobs{jobs}_x_floor"] = row[f"jobs{jobs}_s"] / row["floor_s"]
    row["jobs1_cpu_x_floor"] = row["jobs1_cpu_s"] / row["floor_cpu_s"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tonemap", default="reinhard", choices=sorted(udc.ENCODINGS))
    ap.add_argument("--no-cold", action="store_true", help="Skip the evicted-cache runs.")
    ap.add_argument("--dir", type=Path, default=None, help="Work folder (default: a temp dir).")
    ap.add_argument("--profile", action="store_true",
                    help="Instead: profile one --jobs 1 run (CPU clock) and print the top lines.")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-udc-", dir=args.dir))
    try:
        root = make_tree(base, args.pairs, args.size)
        out = base / "out"
        if args.profile:
            floor(root)
            profiler = cProfile.Profile(time.process_time)
            profiler.runcall(prepare, root, out, 1, args.tonemap)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
            return
        src_mb = sum(p.stat().st_size for p in root.rglob("*.npy")) / 2**20
        results = {"pairs": args.pairs, "size": args.size, "tonemap": args.tonemap,
                   "source_mib": round(src_mb, 1), "load_average": os.getloadavg()[0]}
        floor(root)  # warm-up: imports, page cache, joblib's worker pool
        prepare(root, out, 2, args.tonemap)
        out_bytes = sum(p.stat().st_size for p in out.iterdir())
        modes = [("warm", lambda: None)] + ([] if args.no_cold else [("cold", lambda: evict(root))])
        for mode, before in modes:
            row = measure(root, out, args.repeat, args.tonemap, out_bytes, before)
            results[mode] = {k: round(v, 3) for k, v in row.items()}
        results["out_mib"] = round(out_bytes / 2**20, 1)
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark `lpie-data prepare gopro` against the floor: just decoding the source PNGs.

Generates a GOPRO_Large-layout tree of real size (default 16 pairs of 1280 x 720 8-bit RGB
PNGs; noisy content, the slowest to decode), then times, in the same run and on the same files:

- floor: decoding every blur and sharp PNG (Pillow, as the worker does);
- prepare: planning (header checks) + the whole job (decode, encode, parts, shards, manifest)
  with ``--jobs 1`` and ``--jobs 2``.

The three are interleaved ``--repeat`` times with the files in the page cache and the fastest
of each counts (the machine may be shared). Wall and, for floor and --jobs 1 (same process), CPU
seconds are reported. Target: prepare --jobs 1 <= 1.3 x floor.

    python bench/prepare_gopro.py --pairs 16 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from lpie_data import JobOptions, prepare_gopro


def make_tree(base: Path, pairs: int, width: int, height: int) -> Path:
    """Noisy frames: a smooth picture plus sensor-like noise (what real blur frames compress
    like is in between; pure noise would be the worst case)."""
    rng = np.random.default_rng(0)
    root = base / "GOPRO_Large"
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(pairs):
        seq = root / "train" / f"GOPR{372 + i // 8:04d}_07_00"
        picture = np.stack([(xx * (i + 1)) % 256, (yy * 2) % 256, (xx + yy) % 256], axis=-1)
        for folder, sigma in (("blur", 12.0), ("sharp", 8.0)):
            (seq / folder).mkdir(parents=True, exist_ok=True)
            noisy = picture + rng.normal(0, sigma, picture.shape)
            img = np.clip(noisy, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(seq / folder / f"{47 + i:06d}.png")
    return root


def floor(root: Path) -> None:
    for p in sorted(root.rglob("*.png")):
        with Image.open(p) as im:
            im.load()
            np.asarray(im)


def prepare(root: Path, out: Path, jobs: int) -> None:
    prepare_gopro(root, out, job=JobOptions(jobs=jobs))


def clock(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def measure(root: Path, out: Path, repeat: int) -> dict[str, float]:
    """Floor and prepare (jobs 1, 2) interleaved in every repetition, so that load from other
    processes on the machine hits all of them alike; the fastest repetition of each counts."""
    runs: dict[str, list[tuple[float, float]]] = {"floor": [], "jobs1": [], "jobs2": []}
    for _ in range(repeat):
        for name in runs:
            shutil.rmtree(out, ignore_errors=True)
            if name == "floor":
                runs[name].append(clock(lambda: floor(root)))
            else:
                jobs = int(name[-1])
                runs[name].append(clock(lambda jobs=jobs: prepare(root, out, jobs)))
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
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="Work folder (default: a temp dir).")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-gopro-", dir=args.dir))
    try:
        root = make_tree(base, args.pairs, args.width, args.height)
        out = base / "out"
        src_mb = sum(p.stat().st_size for p in root.rglob("*.png")) / 2**20
        load = os.getloadavg()[0]
        floor(root)  # warm-up: imports, page cache, joblib's worker pool
        prepare(root, out, 2)
        row = measure(root, out, args.repeat)
        print(json.dumps({"pairs": args.pairs, "size": f"{args.width}x{args.height}",
                          "source_mib": round(src_mb, 1), "load_average": load,
                          "warm": {k: round(v, 3) for k, v in row.items()}}, indent=2))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

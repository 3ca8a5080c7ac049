"""Benchmark `lpie-data prepare sidd` against the floor: decoding every source PNG once.

Generates (once, cached in ``--cache``, default /tmp/lpie-bench-sidd) a SIDD-Medium tree of real
size: ``--pairs`` frame pairs of 3000 x 5328 (the Galaxy S6 size), 8-bit RGB PNG, with smooth
content plus noise (GT: light noise; NOISY: GT + heavier noise) so that PNG sizes and decode
times are realistic. Then, in the same run and on the same files, it times:

- floor: decode every NOISY and GT PNG once, in this process, with the decoder prepare uses
  (``lpie_data.images.read_png8_rgb``);
- prepare: what ``lpie-data prepare sidd --tile 1000`` runs, called as library functions in this
  process: ``sidd.work_items`` (find pairs, check headers) + ``jobs.run_job`` (decode, tile,
  encode, part files, shards, sha256, manifest), with ``--jobs 1`` and ``--jobs 2``; each run
  writes a fresh OUT.

Each is timed ``--repeat`` times, median reported, with the sources in the page cache. Target:
prepare --jobs 1 <= 1.3 x floor, and --jobs 2 faster than --jobs 1.

    python bench/prepare_sidd.py --pairs 8 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from lpie_data.images import read_png8_rgb
from lpie_data.jobs import run_job
from lpie_data.sources import sidd

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
    for p in sorted((root / "Data").rglob("*.PNG")):
        read_png8_rgb(p)


def prepare(root: Path, out: Path, jobs: int) -> None:
    items = sidd.work_items(root, 1000, 1000, None)
    arguments = {"root": str(root.resolve()), "tile": 1000, "stride": 1000, "val_dir": None}
    run_job(str(out), sidd.NAME, "prepare sidd", arguments, items, sidd.produce, jobs=jobs)


def timed(fn: Callable[[], None], repeat: int, before: Callable[[], None]) -> list[float]:
    times = []
    for _ in range(repeat):
        before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


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
    pngs = sorted((root / "Data").rglob("*.PNG"))
    src_bytes = sum(p.stat().st_size for p in pngs)
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=args.work or args.cache))
    out = work / "out"

    def clean() -> None:
        if out.exists():
            shutil.rmtree(out)

    floor(root)  # warm the page cache and the decoder once
    results = {"floor": timed(lambda: floor(root), args.repeat, lambda: None)}
    for jobs in (1, 2):
        results[f"jobs{jobs}"] = timed(lambda j=jobs: prepare(root, out, j), args.repeat, clean)
    out_bytes = sum(p.stat().st_size for p in out.iterdir())
    tiles = json.loads((out / "manifest.json").read_text())["splits"]["train"]["examples"]
    shutil.rmtree(work)

    med = {k: statistics.median(v) for k, v in results.items()}
    report = {
        "machine": f"{platform.processor() or platform.machine()}, "
                   f"{__import__('os').cpu_count()} CPUs, Python {platform.python_version()}",
        "pairs": args.pairs, "size": f"{HEIGHT}x{WIDTH}", "source_png_bytes": src_bytes,
        "tiles": tiles, "out_bytes": out_bytes, "tree_generation_s": round(made, 1),
        "times_s": {k: [round(t, 2) for t in v] for k, v in results.items()},
        "median_s": {k: round(v, 2) for k, v in med.items()},
        "jobs1_over_floor": round(med["jobs1"] / med["floor"], 3),
        "jobs2_over_floor": round(med["jobs2"] / med["floor"], 3),
    }
    print(json.dumps(report, indent=2))
    print(f"floor {med['floor']:.2f} s | prepare --jobs 1 {med['jobs1']:.2f} s "
          f"({report['jobs1_over_floor']:.2f}x, target <= 1.3x) | --jobs 2 {med['jobs2']:.2f} s "
          f"({report['jobs2_over_floor']:.2f}x)")


if __name__ == "__main__":
    main()

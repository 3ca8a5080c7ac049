"""Benchmark `lpie-data prepare sidd` against its floor: decoding every source PNG once.

Generates (once, cached in ``--cache``, default /tmp/lpie-bench-sidd) a SIDD-Medium tree of real
size: ``--pairs`` frame pairs of 3000 x 5328 (the Galaxy S6 size), 8-bit RGB PNG, with smooth
content plus noise (GT: light noise; NOISY: GT + heavier noise) so that PNG sizes and decode
times are realistic, and a tree with the first half of its scenes (hard links). Then, in the same
run, interleaved, each as a fresh command (bench/perpair.py has the method):

- floor: ``python bench/floors.py decode ROOT``: ``imageio.v3.imread`` of every PNG;
- jobs1 / jobs2: ``lpie-data prepare sidd --root ROOT --out OUT --tile 1000 --jobs 1 / 2``.

Per pair = (whole tree - half tree) / (pairs - half pairs): start-up excluded. Target (issue 13):
--jobs 1 <= 0.80 x the floor; --jobs 2 reported as a speed-up over --jobs 1.

    python bench/prepare_sidd.py --pairs 8 --repeat 3
    python bench/prepare_sidd.py --quick        # a small tree: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perpair import Command, floor_cmd, link_tree, lpie_data, measure, remover, report  # noqa: E402

HEIGHT, WIDTH = 3000, 5328  # Galaxy S6 Edge frames


def _smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth float32 H x W x 3 content in [0, 1]: a coarse random field, bicubic-upsampled."""
    coarse = (rng.random((h // 150 + 2, w // 150 + 2, 3)) * 255).astype(np.uint8)
    big = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    return (0.7 * big.astype(np.float32) / 255 + 0.3 * yy).astype(np.float32)


def make_tree(cache: Path, pairs: int, height: int = HEIGHT, width: int = WIDTH) -> Path:
    """The SIDD-Medium tree under ``cache`` (reused when complete)."""
    root = cache / f"SIDD_Medium_Srgb-{pairs}-{height}x{width}" / "SIDD_Medium_Srgb"
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
        base = _smooth(rng, height, width)
        gt = base + rng.normal(0, 1.5 / 255, base.shape).astype(np.float32)
        noisy = gt + rng.normal(0, 8 / 255, base.shape).astype(np.float32)
        for kind, arr in (("GT", gt), ("NOISY", noisy)):
            img = np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{folder[:4]}_{kind}_SRGB_010.PNG", format="PNG")
    done.write_text("")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tile", type=int, default=1000)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/lpie-bench-sidd"))
    ap.add_argument("--work", type=Path, default=None, help="Where OUT goes (default: a temp "
                    "folder next to the cache).")
    ap.add_argument("--quick", action="store_true",
                    help="4 pairs of 1000 x 1500, tile 500, 1 repetition: checks the script.")
    args = ap.parse_args()
    size = (HEIGHT, WIDTH)
    if args.quick:
        args.pairs, args.repeat, args.tile, size = 4, 1, 500, (1000, 1500)

    t0 = time.perf_counter()
    whole = make_tree(args.cache, args.pairs, *size)
    made = time.perf_counter() - t0
    half_pairs = args.pairs // 2
    scenes = sorted(p.name for p in (whole / "Data").iterdir() if p.is_dir())[:half_pairs]
    half = whole.parent / "half" / "SIDD_Medium_Srgb"
    link_tree(whole, half, lambda p: p.parent.name in scenes)
    args.cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=args.work or args.cache))
    try:
        commands = [Command("floor", floor_cmd("decode", str(whole)),
                            floor_cmd("decode", str(half)))]
        for jobs in (1, 2):
            out = work / f"out{jobs}"
            argv = [*lpie_data(), "prepare", "sidd", "--tile", str(args.tile), "--jobs",
                    str(jobs), "--out", str(out), "--root"]
            commands.append(Command(f"jobs{jobs}", [*argv, str(whole)], [*argv, str(half)],
                                    remover(out)))
        measure(commands, args.repeat)
        pngs = sorted(whole.glob("Data/*/*.PNG"))
        result = report(commands, args.pairs, half_pairs, "floor", 0.80, {
            "command": "prepare sidd", "size": f"{size[0]}x{size[1]}", "tile": args.tile,
            "source_png_mib": round(sum(p.stat().st_size for p in pngs) / 2**20, 1),
            "tree_generation_s": round(made, 1)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

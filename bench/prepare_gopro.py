"""Benchmark `lpie-data prepare gopro` against its floor: decoding every source PNG once.

Generates a GOPRO_Large-layout tree of real size (default 16 pairs of 1280 x 720 8-bit RGB
PNGs; noisy content, the slowest to decode) and a tree with the first half of the frames (hard
links). Then, in the same run, interleaved, each as a fresh command (bench/perpair.py):

- floor: ``python bench/floors.py decode ROOT``: ``imageio.v3.imread`` of every blur and sharp
  PNG;
- jobs1 / jobs2: ``lpie-data prepare gopro --root ROOT --out OUT --jobs 1 / 2``.

Per pair = (whole tree - half tree) / (pairs - half pairs): start-up excluded. Target (issue 13):
--jobs 1 <= 0.80 x the floor; --jobs 2 reported as a speed-up over --jobs 1.

    python bench/prepare_gopro.py --pairs 32 --repeat 5
    python bench/prepare_gopro.py --quick       # a small tree: checks the script runs
    python bench/prepare_gopro.py --profile     # CPU per pair of each stage of --jobs 1, by thread
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perpair import (  # noqa: E402
    Command,
    floor_cmd,
    link_tree,
    lpie_data,
    measure,
    remover,
    report,
    stage_profile,
)

FIRST_FRAME = 47


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
            Image.fromarray(img).save(seq / folder / f"{FIRST_FRAME + i:06d}.png")
    return root


def profile(root: Path, out: Path, pairs: int) -> dict:
    """Where `prepare gopro --jobs 1` spends its time per pair, stage by stage and thread by
    thread (the library call the command makes, in this process)."""
    import lpie_data.fingerprint
    import lpie_data.jobs
    import lpie_data.joiner
    import lpie_data.parts
    import lpie_data.pngfile
    import lpie_data.runwriter
    from lpie_data import JobOptions, prepare_gopro

    def run() -> None:
        lpie_data.fingerprint._file_hash.cache_clear()  # a fresh command hashes its inputs
        shutil.rmtree(out, ignore_errors=True)
        prepare_gopro(root, out, job=JobOptions(jobs=1))

    return stage_profile(run, [
        (lpie_data.pngfile, "read_bytes"), (lpie_data.pngfile, "decode_png"),
        (lpie_data.runwriter.RunWriter, "write"), (lpie_data.jobs, "inputs_digest"),
        (lpie_data.parts, "inputs_digest"),
        (lpie_data.runwriter, "frame_pieces"), (lpie_data.parts, "value_range"),
        (lpie_data.joiner.SplitJoiner, "add"), (lpie_data.joiner.SplitJoiner, "finish"),
    ], pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="Work folder (default: a temp dir).")
    ap.add_argument("--quick", action="store_true",
                    help="4 pairs of 320 x 180, 1 repetition: checks the script runs.")
    ap.add_argument("--profile", action="store_true",
                    help="Instead: CPU per pair of each stage of --jobs 1, by thread.")
    args = ap.parse_args()
    if args.quick:
        args.pairs, args.width, args.height, args.repeat = 4, 320, 180, 1
    base = Path(tempfile.mkdtemp(prefix="bench-gopro-", dir=args.dir))
    try:
        whole = make_tree(base / "whole", args.pairs, args.width, args.height)
        if args.profile:
            print(json.dumps(profile(whole, base / "out", args.pairs), indent=2))
            return
        half_pairs = args.pairs // 2
        half = base / "half" / "GOPRO_Large"
        link_tree(whole, half, lambda p: int(p.stem) < FIRST_FRAME + half_pairs)
        commands = [Command("floor", floor_cmd("decode", str(whole)),
                            floor_cmd("decode", str(half)))]
        for jobs in (1, 2):
            out = base / f"out{jobs}"
            argv = [*lpie_data(), "prepare", "gopro", "--jobs", str(jobs), "--out", str(out),
                    "--root"]
            commands.append(Command(f"jobs{jobs}", [*argv, str(whole)], [*argv, str(half)],
                                    remover(out)))
        measure(commands, args.repeat)
        src_mib = sum(p.stat().st_size for p in whole.rglob("*.png")) / 2**20
        result = report(commands, args.pairs, half_pairs, "floor", 0.80, {
            "command": "prepare gopro", "size": f"{args.width}x{args.height}",
            "source_png_mib": round(src_mib, 1)})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Benchmark `lpie-data prepare udc` against its floor: reading the sources once and writing
the dataset's bytes once.

Generates a DISCNet-layout tree of real size (default 16 pairs of 800 x 800 x 3 float32, HDR
values in [0, 500]) and a tree with the first half of the pairs (hard links). Then, in the same
run, interleaved, each as a fresh command (bench/perpair.py):

- floor: ``python bench/floors.py udc ROOT OUT BYTES``: ``np.load`` of every input and GT file,
  then writing as many bytes as that tree's dataset holds, once;
- jobs1 / jobs2: ``lpie-data prepare udc --root ROOT --out OUT --jobs 1 / 2`` (reinhard).

Per pair = (whole tree - half tree) / (pairs - half pairs): start-up excluded. Target (issue 13):
--jobs 1 <= 1.30 x the floor; --jobs 2 reported as a speed-up over --jobs 1.

    python bench/prepare_udc.py --pairs 64 --repeat 5
    python bench/prepare_udc.py --quick         # a small tree: checks the script runs
    python bench/prepare_udc.py --profile       # CPU per pair of each stage of --jobs 1, by thread
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perpair import (  # noqa: E402
    Command,
    floor_cmd,
    link_tree,
    lpie_data,
    measure,
    remover,
    report,
    run_once,
    stage_profile,
)


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


def _dataset_bytes(argv: list[str], out: Path) -> int:
    shutil.rmtree(out, ignore_errors=True)
    run_once(argv)
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    shutil.rmtree(out, ignore_errors=True)
    return size


def profile(root: Path, out: Path, tone_map: str, pairs: int) -> dict:
    """Where `prepare udc --jobs 1` spends its time per pair, stage by stage and thread by
    thread (the library call the command makes, in this process); then cProfile's top lines
    (this thread only: the writer; loading and tone mapping run on two other threads)."""
    import lpie_data.fingerprint
    import lpie_data.jobs
    import lpie_data.joiner
    import lpie_data.parts
    import lpie_data.runwriter
    import lpie_data.sources.udc as udc
    from lpie_data import JobOptions, prepare_udc

    encode = udc.ENCODINGS[tone_map]

    def run() -> None:
        lpie_data.fingerprint._file_hash.cache_clear()  # a fresh command hashes its inputs
        shutil.rmtree(out, ignore_errors=True)
        prepare_udc(root, out, patch=400, tone_map=tone_map, job=JobOptions(jobs=1))

    udc.ENCODINGS[tone_map] = lambda x: udc.ENCODINGS_TIMED(x)  # type: ignore[attr-defined]
    udc.ENCODINGS_TIMED = encode  # type: ignore[attr-defined]
    try:
        result = stage_profile(run, [
            (udc, "load_hdr"), (udc, "ENCODINGS_TIMED"),
            (lpie_data.runwriter.RunWriter, "write"), (lpie_data.jobs, "inputs_digest"),
            (lpie_data.parts, "inputs_digest"),
            (lpie_data.runwriter, "frame_pieces"), (lpie_data.parts, "value_range"),
            (lpie_data.joiner.SplitJoiner, "add"), (lpie_data.joiner.SplitJoiner, "finish"),
        ], pairs)
    finally:
        udc.ENCODINGS[tone_map] = encode
        del udc.ENCODINGS_TIMED
    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(run)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=64,
                    help="Pairs in the whole tree (64: 32 pairs of difference resolve the "
                    "per-pair cost; 16 did not).")
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tonemap", default="reinhard", choices=["reinhard", "none"])
    ap.add_argument("--dir", type=Path, default=None, help="Work folder (default: a temp dir).")
    ap.add_argument("--quick", action="store_true",
                    help="4 pairs of 400 x 400, 1 repetition: checks the script runs.")
    ap.add_argument("--profile", action="store_true",
                    help="Instead: CPU per pair of each stage of --jobs 1, by thread.")
    args = ap.parse_args()
    if args.quick:
        args.pairs, args.size, args.repeat = 4, 400, 1
    base = Path(tempfile.mkdtemp(prefix="bench-udc-", dir=args.dir))
    try:
        whole = make_tree(base / "whole", args.pairs, args.size)
        if args.profile:
            print(json.dumps(profile(whole, base / "out", args.tonemap, args.pairs), indent=2))
            return
        half_pairs = args.pairs // 2
        half = base / "half" / "synthetic_data"
        link_tree(whole, half, lambda p: int(p.stem) < half_pairs)
        commands, trees = [], {"whole": whole, "half": half}
        for jobs in (1, 2):
            out = base / f"out{jobs}"
            argv = [*lpie_data(), "prepare", "udc", "--tonemap", args.tonemap, "--jobs",
                    str(jobs), "--out", str(out), "--root"]
            commands.append(Command(f"jobs{jobs}", [*argv, str(whole)], [*argv, str(half)],
                                    remover(out)))
        nbytes = {k: _dataset_bytes([*commands[0].whole[:-1], str(t)], base / "out1")
                  for k, t in trees.items()}
        floor_out = base / "floor-out"
        commands.insert(0, Command(
            "floor", floor_cmd("udc", str(whole), str(floor_out), str(nbytes["whole"])),
            floor_cmd("udc", str(half), str(floor_out), str(nbytes["half"])),
            remover(floor_out)))
        measure(commands, args.repeat)
        src_mib = sum(p.stat().st_size for p in whole.rglob("*.npy")) / 2**20
        result = report(commands, args.pairs, half_pairs, "floor", 1.30, {
            "command": f"prepare udc --tonemap {args.tonemap}",
            "size": f"{args.size}x{args.size}x3 float32", "source_mib": round(src_mib, 1),
            "dataset_mib": round(nbytes["whole"] / 2**20, 1)})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Where a TFLite model's time goes, by XNNPACK kernel: `perf record` of repeated inferences.

The Python LiteRT interpreter has no per-op profile; Linux `perf` sees XNNPACK's microkernels by
name. This script runs each model N times under `perf record`, then groups the CPU samples by
kernel family (dense convolutions, depthwise, copies, ADD, ...), one column per model:

    python bench/tflite_kernels.py /tmp/tfl/plain-256x256.tflite /tmp/tfl/export-256x256.tflite \
        /tmp/tfl/export-int8-256x256.tflite --runs 300 --threads 2

(the files `bench/tflite_latency.py compare DIR` writes). Needs `perf` (linux-tools) and
permission to use it (root, or kernel.perf_event_paranoid <= 1).

    python bench/tflite_kernels.py --invoke MODEL --runs N --threads T
        only runs the inferences (what perf records; also usable with other profilers)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Kernel family -> regex over the symbol name; the first that matches counts.
GROUPS = {
    "dense convolutions (GEMM / IGEMM)": r"_i?gemm",
    "depthwise convolutions": r"dwconv",
    "copies (concatenation, memmove)": r"memmove|memcpy|_copy_|transpose",
    "ADD": r"vadd",
    "ELU / sigmoid / int8 lookup tables": r"velu|vsigmoid|_lut_|unary_ukernel",
    "MUL": r"vmul",
    "mean / max reductions": r"rsum|rmax|reduce",
    "bilinear resize, max pool": r"ibilinear|maxpool",
    "int8 <-> float conversions": r"vcvt",
}


def invoke(model: Path, runs: int, threads: int) -> float:
    """Run ``model`` ``runs`` times on seeded random input (5 warm-up runs first); seconds per
    run."""
    from lpie_model.runtime import LiteRTRunner

    it = LiteRTRunner(model, threads)
    it.set_random_input()
    for _ in range(5):
        it.invoke()
    t = time.perf_counter()
    for _ in range(runs):
        it.invoke()
    return (time.perf_counter() - t) / runs


def profile(model: Path, runs: int, threads: int, folder: Path) -> dict[str, float]:
    """Share (%) of ``model``'s CPU samples per kernel group (and ``other``)."""
    data = folder / f"{model.stem}.perf"
    subprocess.run(["perf", "record", "-q", "-F", "2000", "-o", str(data), "--",
                    sys.executable, __file__, "--invoke", str(model), "--runs", str(runs),
                    "--threads", str(threads)], check=True, stdout=subprocess.DEVNULL)
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort",
                             "symbol", "-q", "--stdio"], check=True, capture_output=True,
                            text=True).stdout
    shares = dict.fromkeys([*GROUPS, "other"], 0.0)
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[[.k]\]\s+(\S+)", line)
        if not m:
            continue
        share, symbol = float(m[1]), m[2]
        group = next((g for g, rx in GROUPS.items() if re.search(rx, symbol)), "other")
        shares[group] += share
    return shares


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", type=Path, nargs="*")
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--invoke", type=Path, default=None, help="only run this model")
    args = p.parse_args()
    if args.invoke is not None:
        print(f"{args.invoke}: {invoke(args.invoke, args.runs, args.threads) * 1e3:.2f} ms")
        return
    if not args.models:
        p.error("give one or more .tflite files")
    if shutil.which("perf") is None:
        raise SystemExit("perf not found: install linux-tools (perf) to profile by kernel")
    with tempfile.TemporaryDirectory(prefix="lpie-kernels-") as tmp:
        columns = {m.stem: profile(m, args.runs, args.threads, Path(tmp)) for m in args.models}
    print(f"CPU samples by kernel group, {args.runs} inferences, {args.threads} thread(s)\n")
    print("| kernel group | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for group in [*GROUPS, "other"]:
        print(f"| {group} | " + " | ".join(f"{c[group]:.1f} %" for c in columns.values()) + " |")


if __name__ == "__main__":
    main()

"""TFLite latency of LPIENet export variants: a plain build against this project's export.

Two steps, so that timing can run on a machine without TensorFlow (only ai-edge-litert + numpy):

    # 1. export the variants (needs TensorFlow): fixed-size models per size and variant
    python bench/tflite_latency.py make build/latency --sizes 256x256,800x800,1080x1920
    # 2. time them: interleaved rounds, each model at each thread count, median and min
    python bench/tflite_latency.py time build/latency --threads 1,2 --json latency.json
    # 3. a Markdown table from one or more JSON results
    python bench/tflite_latency.py table latency.json

Variants (base network, seeded random weights; speed does not depend on the weight values):
    plain      the straightforward build: attention's spatial conv on concat[mean, max],
               gate in the pixel domain, fp32; the "plain build" of docs/benchmarks.md (33 ms at
               256x256 on this project's 2-core machine at the interpreter's default threads)
    split      the training graph as is (attention conv split into mean and max parts), fp32
    export     what `lpie-model export --precision fp32 --size HxW` writes (concat attention,
               gate on space-to-depth blocks), fp32
    export-fp16, export-int8, split-int8   the same at other precisions (int8 calibrated on
               4 sample-photo fits: enough for timing, not for quality)

Every variant computes the same function; `make` checks each fp32/fp16 file against Keras.

The issue-17 comparison in one run (plain build made in the same run, latency ratios at equal
thread counts from interleaved rounds, peak-memory ratios from one inference per fresh process):

    python bench/tflite_latency.py compare build/compare --threads 2 --json compare.json
    python bench/tflite_latency.py compare build/compare --quick      # small sizes, a smoke run

`compare` exports plain fp32, export fp32 and export int8 (calibrated on 8 crops through the
crop-sized twin) per fixed size, plus one dynamic-size fp32 export (memory only, resized to each
size), and prints ratios against the plain fp32 build.

int8 benches (bench/tflite_int8.py): `elu` times the int8 export (ELU in int8) against the same
file with the quantizer's float ELU islands, and `oneconv` one 3x3 conv in fp32 and int8:

    python bench/tflite_latency.py elu build/elu --sizes 256x256,800x800 --threads 2
    python bench/tflite_latency.py oneconv --threads 2
    python bench/tflite_latency.py parts --threads 1,2     # an ELU's and the clip's int8 cost
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

VARIANTS = ("plain", "split", "export", "export-fp16", "export-int8", "split-int8")


def make(folder: Path, sizes: list[tuple[int, int]], variants: list[str]) -> None:
    import keras
    import numpy as np

    from lpie_model import convert as cv
    from lpie_model import runtime as rt
    from lpie_model import samples as smp
    from lpie_model.deploy import rebuild_for_shape
    from lpie_model.lpienet import build_lpienet

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = build_lpienet("base")
    photos = [img for _, img in smp.sample_photos()]
    for h, w in sizes:
        x = smp.fit_to_size(photos[0], (h, w))
        want = model(x[None]).numpy()[0]
        calibration = [smp.fit_to_size(photos[i % 3], (h, w)) for i in range(4)]
        for variant in variants:
            if variant == "plain":
                net = rebuild_for_shape(model, h, w, fused_attention=True)
                content = cv.convert_keras(net, size=(h, w))
            elif variant == "split":
                content = cv.convert(model, size=(h, w), optimize=False)
            elif variant == "split-int8":
                content = cv.convert(
                    model, precision="int8", size=(h, w), calibration=calibration, optimize=False
                )
            else:
                precision = {"export": "fp32", "export-fp16": "fp16", "export-int8": "int8"}[
                    variant
                ]
                content = cv.convert(
                    model,
                    precision=precision,
                    size=(h, w),
                    calibration=calibration if precision == "int8" else None,
                )
            path = folder / f"{variant}-{h}x{w}.tflite"
            path.write_bytes(content)
            got = rt.LiteRTRunner(content)(x)
            diff = float(np.abs(got - want).max())
            print(
                f"{path.name}: {len(content)} bytes, max|TFLite - Keras| = {diff:.2e}", flush=True
            )


def time_folder(
    folder: Path,
    threads: list[int | None],
    rounds: int,
    runs: int,
    warmup: int,
    cpus: list[int] | None,
    pattern: str = "*.tflite",
) -> dict:
    from lpie_model.latency import WARMUP_MIN_S
    from lpie_model.runtime import LiteRTRunner

    if cpus:
        os.sched_setaffinity(0, cpus)
    files = sorted(folder.glob(pattern))
    keys = [(path, t) for path in files for t in threads]
    times: dict[tuple[str, int | None], list[float]] = {(p.name, t): [] for p, t in keys}
    # Interleaved rounds: every model runs in every round, so that a slow spell on a shared
    # machine hits all variants alike instead of one. Interpreters are made per round (each
    # 4K fp32 model holds gigabytes), with `warmup` untimed runs each time.
    for r in range(rounds):
        for path, t in keys:
            it = LiteRTRunner(path, t or 0)  # None: the interpreter's default threads
            it.set_random_input()
            # At least `warmup` runs and WARMUP_MIN_S seconds (as lpie-model benchmark): two
            # runs at 256x256 are ~40 ms, far less than the ~1 s that multi-threaded runs were
            # seen to need here before reaching their steady speed.
            t_start, done = time.perf_counter(), 0
            while done < warmup or time.perf_counter() - t_start < WARMUP_MIN_S:
                it.invoke()
                done += 1
            for _ in range(runs):
                t0 = time.perf_counter()
                it.invoke()
                times[(path.name, t)].append(time.perf_counter() - t0)
            del it
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    cpu = platform.processor()
    try:
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "machine": {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "pinned_cpus": cpus,
            "load_avg_at_end": os.getloadavg(),
        },
        "rounds": rounds,
        "runs_per_round": runs,
        "results": [
            {
                "file": name,
                "threads": t,
                "median_s": statistics.median(v),
                "min_s": min(v),
                "n": len(v),
            }
            for (name, t), v in times.items()
        ],
    }


def table(paths: list[Path]) -> str:
    lines = []
    for path in paths:
        data = json.loads(path.read_text())
        m = data["machine"]
        lines.append(
            f"\n{path.name}: {m['cpu']}, {m['cores']} cores, pinned {m['pinned_cpus']}, "
            f"load at end {[round(v, 1) for v in m['load_avg_at_end']]}\n"
        )
        lines.append("| model | threads | median (s) | min (s) |")
        lines.append("| --- | ---: | ---: | ---: |")
        for r in sorted(data["results"], key=lambda r: (r["file"], str(r["threads"]))):
            lines.append(
                f"| {r['file']} | {r['threads'] or 'default'} | {r['median_s']:.4f} | "
                f"{r['min_s']:.4f} |"
            )
    return "\n".join(lines)


COMPARE_SIZES = "256x256,800x800,1080x1920"
QUICK_SIZES = "64x64,128x192"
COMPARE_VARIANTS = ("plain", "export", "export-int8")


def make_compare(folder: Path, sizes: list[tuple[int, int]]) -> None:
    """Plain fp32, export fp32 and export int8 per size, and one dynamic fp32 export."""
    import keras

    from lpie_model import convert as cv
    from lpie_model import samples as smp
    from lpie_model.deploy import rebuild_for_shape
    from lpie_model.lpienet import build_lpienet

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = build_lpienet("base")
    photos = [img for _, img in smp.sample_photos()]
    crops = smp.calibration_crops(photos, count=8, crop=(256, 256), per_image=3)
    for h, w in sizes:
        files = {
            "plain": cv.convert_keras(
                rebuild_for_shape(model, h, w, fused_attention=True), size=(h, w)
            ),
            "export": cv.convert(model, size=(h, w)),
            "export-int8": cv.convert(model, precision="int8", size=(h, w), calibration=crops),
        }
        for variant, content in files.items():
            (folder / f"{variant}-{h}x{w}.tflite").write_bytes(content)
            print(f"{variant}-{h}x{w}.tflite: {len(content)} bytes", flush=True)
    (folder / "dynamic").mkdir(exist_ok=True)
    (folder / "dynamic" / "fp32.tflite").write_bytes(cv.convert(model))


def peak_memory(path: Path, threads: int | None, size: tuple[int, int] | None = None) -> float:
    """Peak resident memory growth (MiB) of one inference of `path` in a fresh process."""
    import subprocess

    cmd = [sys.executable, __file__, "_mem", str(path), str(threads or 0)]
    if size is not None:
        cmd += [str(size[0]), str(size[1])]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return float(out.strip().splitlines()[-1])


def _mem_worker(argv: list[str]) -> None:
    from lpie_model.latency import peak_memory_kib
    from lpie_model.runtime import LiteRTRunner

    base = peak_memory_kib() or 0
    it = LiteRTRunner(argv[0], int(argv[1]))  # 0: the interpreter's default threads
    if len(argv) >= 4:
        it.prepare((1, int(argv[2]), int(argv[3]), 3))
    it.set_random_input()
    it.invoke()
    print(((peak_memory_kib() or 0) - base) / 1024)


def compare(
    folder: Path, sizes: list[tuple[int, int]], threads: int, rounds: int, runs: int, warmup: int
) -> dict:
    """Latency (interleaved) and peak-memory ratios against the plain fp32 build, per size."""
    timed = time_folder(folder, [threads], rounds, runs, warmup, None)
    median = {r["file"]: r["median_s"] for r in timed["results"]}
    rows = []
    for h, w in sizes:
        tag = f"{h}x{w}"
        mem = {v: peak_memory(folder / f"{v}-{tag}.tflite", threads) for v in COMPARE_VARIANTS}
        mem["dynamic"] = peak_memory(folder / "dynamic" / "fp32.tflite", threads, (h, w))
        lat = {v: median[f"{v}-{tag}.tflite"] for v in COMPARE_VARIANTS}
        rows.append(
            {
                "size": tag,
                "latency_s": lat,
                "latency_ratio": {v: lat[v] / lat["plain"] for v in lat},
                "peak_mib": mem,
                "peak_ratio": {v: mem[v] / mem["plain"] for v in mem},
            }
        )
    return {"machine": timed["machine"], "threads": threads, "rounds": rounds, "rows": rows}


def compare_table(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"{m['cpu']}, {m['cores']} cores, {result['threads']} thread(s), {result['rounds']} "
        f"interleaved rounds, load at end {[round(v, 1) for v in m['load_avg_at_end']]}",
        "",
        "| size | plain fp32 (s) | export fp32 (s, x plain) | export int8 (s, x plain fp32) | "
        "peak MiB plain | export fp32 (x plain) | export int8 (x plain) | dynamic fp32 (x plain) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        lat, lr, mem, mr = r["latency_s"], r["latency_ratio"], r["peak_mib"], r["peak_ratio"]
        lines.append(
            f"| {r['size']} | {lat['plain']:.4f} | {lat['export']:.4f} ({lr['export']:.2f}x) | "
            f"{lat['export-int8']:.4f} ({lr['export-int8']:.2f}x) | {mem['plain']:.0f} | "
            f"{mem['export']:.0f} ({mr['export']:.2f}x) | "
            f"{mem['export-int8']:.0f} ({mr['export-int8']:.2f}x) | "
            f"{mem['dynamic']:.0f} ({mr['dynamic']:.2f}x) |"
        )
    return "\n".join(lines)


def _sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        h, w = part.lower().split("x")
        out.append((int(h), int(w)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make", help="export the variants (needs TensorFlow)")
    p.add_argument("folder", type=Path)
    p.add_argument("--sizes", default="256x256,800x800,1080x1920")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p = sub.add_parser("time", help="time every .tflite file in a folder")
    p.add_argument("folder", type=Path)
    p.add_argument("--threads", default="default,1,2", help="comma list; 'default' = not set")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=3, help="timed runs per model per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--cpus", default=None, help="pin to these CPU ids, e.g. 0,1")
    p.add_argument("--glob", default="*.tflite", help="which files of the folder")
    p.add_argument("--json", type=Path, default=None)
    p = sub.add_parser("compare", help="plain vs export: latency and peak-memory ratios")
    p.add_argument("folder", type=Path)
    p.add_argument("--sizes", default=None, help=f"default {COMPARE_SIZES}")
    p.add_argument("--quick", action="store_true", help=f"small sizes ({QUICK_SIZES}), 2 rounds")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-make", action="store_true", help="reuse the files already in FOLDER")
    p.add_argument("--json", type=Path, default=None)
    p = sub.add_parser("elu", help="int8 with ELU in int8 vs float ELU islands (A/B)")
    p.add_argument("folder", type=Path)
    p.add_argument("--sizes", default="256x256,800x800")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--no-make", action="store_true", help="reuse the files already in FOLDER")
    p.add_argument("--json", type=Path, default=None)
    p = sub.add_parser("oneconv", help="one 3x3 conv, fp32 vs int8 (A/B)")
    p.add_argument("--folder", type=Path, default=Path("build/oneconv"))
    p.add_argument("--size", default="800x800")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", type=Path, default=None)
    p = sub.add_parser("parts", help="int8 cost of an ELU and of the output clip (A/B)")
    p.add_argument("--folder", type=Path, default=Path("build/parts"))
    p.add_argument("--size", default="800x800")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--json", type=Path, default=None)
    p = sub.add_parser("table", help="Markdown table of JSON results")
    p.add_argument("json", type=Path, nargs="+")
    args = parser.parse_args()
    if args.cmd == "compare":
        sizes = _sizes(args.sizes or (QUICK_SIZES if args.quick else COMPARE_SIZES))
        if not args.no_make:
            make_compare(args.folder, sizes)
        rounds = 2 if args.quick else args.rounds
        result = compare(args.folder, sizes, args.threads, rounds, args.runs, args.warmup)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(compare_table(result))
    elif args.cmd in ("elu", "oneconv", "parts"):
        import tflite_int8 as i8

        if args.cmd == "elu":
            sizes = _sizes(args.sizes)
            if not args.no_make:
                i8.make_elu(args.folder, sizes)
            result = i8.elu(args.folder, sizes, args.threads, args.rounds, args.runs)
            text = i8.elu_table(result)
        elif args.cmd == "parts":
            threads = [int(t) for t in args.threads.split(",")]
            result = i8.parts(args.folder, _sizes(args.size)[0], threads, args.rounds, args.runs)
            text = i8.parts_table(result)
        else:
            size = _sizes(args.size)[0]
            result = i8.oneconv(
                args.folder, size, args.channels, args.threads, args.rounds, args.runs
            )
            text = i8.oneconv_table(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(text)
    elif args.cmd == "make":
        make(args.folder, _sizes(args.sizes), args.variants.split(","))
    elif args.cmd == "time":
        threads = [None if t == "default" else int(t) for t in args.threads.split(",")]
        cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else None
        result = time_folder(
            args.folder, threads, args.rounds, args.runs, args.warmup, cpus, args.glob
        )
        text = json.dumps(result, indent=2)
        if args.json:
            args.json.write_text(text + "\n")
        print(table_from(result))
    else:
        print(table(args.json))


def table_from(result: dict) -> str:
    rows = ["| model | threads | median (s) | min (s) |", "| --- | ---: | ---: | ---: |"]
    for r in sorted(result["results"], key=lambda r: (r["file"], str(r["threads"]))):
        rows.append(
            f"| {r['file']} | {r['threads'] or 'default'} | {r['median_s']:.4f} | "
            f"{r['min_s']:.4f} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_mem":
        _mem_worker(sys.argv[2:])
    else:
        main()

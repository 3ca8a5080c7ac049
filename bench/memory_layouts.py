"""The export's memory layouts against the plain build: fp32 CPU time, wall time and peak memory.

    python bench/memory_layouts.py build/layouts --sizes 256x256,800x800 --rounds 20
    python bench/memory_layouts.py build/layouts --quick          # 64x64, 3 rounds: a smoke run

Per fixed size, three fp32 files of the base network (seeded weights): `plain` (Keras ->
TFLiteConverter of the same layers, concat attention, no rewrites), `fast` (`lpie-model export
--memory fast`: gate on space-to-depth blocks) and `low` (`--memory low`: also the
full-resolution convs on blocks). All three run in one process, interleaved round by round
(2 threads), so that a busy spell on a shared machine hits all alike; CPU time (all threads)
is reported next to wall time because wall time means little on a loaded machine. Peak
memory: growth of one inference in a fresh process (load-independent). Also prints each file's
multiply-adds and `indirection_bytes`. Ratios are against `plain`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

LAYOUTS = ("plain", "fast", "low")


def make(folder: Path, size: tuple[int, int]) -> dict[str, Path]:
    """Writes plain / fast / low fp32 files for `size`; returns their paths."""
    import keras

    from lpie_model import convert as cv
    from lpie_model.deploy import rebuild_for_shape
    from lpie_model.lpienet import build_lpienet

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = build_lpienet("base")
    h, w = size
    paths = {name: folder / f"{name}-{h}x{w}.tflite" for name in LAYOUTS}
    plain = rebuild_for_shape(model, h, w, fused_attention=True)
    paths["plain"].write_bytes(cv.convert_keras(plain, size=size))
    for name in ("fast", "low"):
        paths[name].write_bytes(cv.convert(model, size=size, memory=name))
    return paths


def time_interleaved(paths: dict[str, Path], rounds: int, threads: int) -> dict[str, dict]:
    """Median wall and CPU seconds per file over `rounds` interleaved invocations."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreters = {}
    for name, path in paths.items():
        it = Interpreter(model_path=str(path), num_threads=threads)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], np.random.default_rng(0).random(d["shape"], dtype=np.float32))
        for _ in range(3):
            it.invoke()
        interpreters[name] = it
    wall: dict[str, list[float]] = {n: [] for n in paths}
    cpu: dict[str, list[float]] = {n: [] for n in paths}
    for _ in range(rounds):
        for name, it in interpreters.items():
            t, c = time.perf_counter(), time.process_time()
            it.invoke()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return {
        n: {"wall_s": statistics.median(wall[n]), "cpu_s": statistics.median(cpu[n])}
        for n in paths
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sizes", default="256x256,800x800")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="64x64, 3 rounds")
    args = parser.parse_args()
    from lpie_model.benchmark import indirection_bytes
    from lpie_model.convert import parse_size
    from lpie_model.latency import measure_tflite

    sizes = "64x64" if args.quick else args.sizes
    rounds = 3 if args.quick else args.rounds
    print("| size | layout | wall (s, x plain) | CPU (s, x plain) | peak MiB (x plain) "
          "| indirection MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for text in sizes.split(","):
        size = parse_size(text)
        paths = make(args.folder, size)
        times = time_interleaved(paths, rounds, args.threads)
        peak = {}
        for name, path in paths.items():
            r = measure_tflite(path, threads=args.threads, runs=1, warmup=0)
            peak[name] = (r["peak_kib"] - r["base_kib"]) / 1024
        base = times["plain"]
        for name, path in paths.items():
            t = times[name]
            print(
                f"| {text} | {name} | {t['wall_s']:.4f} ({t['wall_s'] / base['wall_s']:.2f}x) | "
                f"{t['cpu_s']:.4f} ({t['cpu_s'] / base['cpu_s']:.2f}x) | "
                f"{peak[name]:.0f} ({peak[name] / peak['plain']:.2f}x) | "
                f"{indirection_bytes(path.read_bytes()) / 2**20:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""TFLite latency and peak memory of one .tflite model, measured in a fresh subprocess.

`measure_tflite(path)` runs `python -m lpie_model.latency` so that the peak memory (`VmHWM` of
/proc/self/status, Linux) belongs to that model alone: the median of `runs` timed invocations
(XNNPACK on CPU) after `warmup` untimed ones, and after at least `WARMUP_MIN_S` seconds of untimed
runs. `machine_description` says where it was measured.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lpie_data.errors import ConfigError, DataError

WARMUP_MIN_S = 2.0


def peak_memory_kib() -> int | None:
    """This process's peak resident set size in KiB (VmHWM), or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def time_tflite(
    path: str | Path,
    *,
    threads: int | None,
    runs: int,
    warmup: int,
    size: tuple[int, int] | None = None,
) -> dict:
    """Times one .tflite model in this process (see `measure_tflite` for isolation).

    `size` (H, W) resizes a dynamic-size model's input first. Returns {"times_s": [...],
    "median_s", "min_s", "load_s", "base_kib", "peak_kib"} (memory: VmHWM before loading / after).
    """
    from lpie_model.runtime import LiteRTRunner

    base = peak_memory_kib()
    t0 = time.perf_counter()
    runner = LiteRTRunner(path, threads if threads is not None else 0)
    if size is not None:
        runner.prepare((1, size[0], size[1], 3))
    runner.set_random_input()
    load = time.perf_counter() - t0
    # At least `warmup` runs and WARMUP_MIN_S seconds: multi-threaded runs were seen here to
    # need about a second of work before they reach their steady speed (about 1.5x faster).
    t0 = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - t0 < WARMUP_MIN_S:
        runner.invoke()
        done += 1
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        runner.invoke()
        times.append(time.perf_counter() - t)
    return {
        "times_s": times,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "load_s": load,
        "base_kib": base,
        "peak_kib": peak_memory_kib(),
    }


def measure_tflite(
    path: str | Path,
    *,
    threads: int | None = None,
    runs: int = 5,
    warmup: int = 2,
    size: tuple[int, int] | None = None,
) -> dict:
    """`time_tflite` in a fresh Python subprocess (clean peak-memory accounting).

    Raises:
        ConfigError: bad runs/warmup. DataError: the subprocess failed (stderr tail in message).
    """
    if runs < 1 or warmup < 0:
        raise ConfigError(f"runs must be >= 1 and warmup >= 0, got {runs}, {warmup}")
    cmd = [
        sys.executable,
        "-m",
        "lpie_model.latency",
        str(path),
        str(threads or 0),
        str(runs),
        str(warmup),
    ]
    if size is not None:
        cmd += [str(size[0]), str(size[1])]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise DataError(f"{path}: benchmark run failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_description() -> dict[str, Any]:
    """CPU model, core count and library versions, for the record."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for pkg in ("ai-edge-litert", "tensorflow", "keras"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:  # not installed
            versions[pkg] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), **versions}


def _worker(argv: Sequence[str]) -> None:
    """Subprocess entry: `python -m lpie_model.latency MODEL THREADS RUNS WARMUP [H W]`.

    Prints `time_tflite`'s result as one JSON line.
    """
    path, threads, runs, warmup = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    size = (int(argv[4]), int(argv[5])) if len(argv) >= 6 else None
    result = time_tflite(path, threads=threads or None, runs=runs, warmup=warmup, size=size)
    print(json.dumps(result))


if __name__ == "__main__":
    _worker(sys.argv[1:])

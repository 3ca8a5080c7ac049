"""Per-pair timing of a command against its floor, start-up excluded, as issue 13 defines it.

Every measured thing is a command line run in a fresh process, as a user runs it, once on the
whole tree and once on a tree with half the pairs (hard links to the same files, so the page
cache is shared). The per-pair time is

    (time on the whole tree - time on the half tree) / (pairs in whole - pairs in half)

so interpreter start-up, imports, worker start-up and the per-job fixed work cancel out. The
floor is timed the same way (a command that only decodes / reads / convolves). Repetitions are
interleaved (whole and half of every command, then the next repetition), so a burst of load from
other programs hits every command alike; the median of the per-repetition differences counts.
CPU seconds (the process and its reaped children, worker processes included) are reported beside
wall seconds.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
FLOORS = str(BENCH / "floors.py")


@dataclass
class Command:
    """A command measured on the whole and the half tree; ``clean`` runs before each run
    (e.g. removes the output folder), untimed."""

    name: str
    whole: Sequence[str]
    half: Sequence[str]
    clean: Callable[[], None] = lambda: None
    wall: dict[str, list[float]] = field(default_factory=lambda: {"whole": [], "half": []})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {"whole": [], "half": []})


def lpie_data() -> list[str]:
    """The ``lpie-data`` command users run (the script next to this Python, else ``-m``)."""
    script = Path(sys.executable).with_name("lpie-data")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lpie_data.cli"]


def floor_cmd(*args: str) -> list[str]:
    return [sys.executable, FLOORS, *args]


PAGE_REPORTING = Path("/sys/module/page_reporting/parameters")
DAMON = Path("/sys/kernel/mm/damon/admin/kdamonds")
_START: dict[str, int | None] = {"reported_kib": None}  # when the last `measure` began


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def host_memory(reported_kib_before: int | None = None) -> dict:
    """What the host does with this VM's memory, where Linux shows it (empty elsewhere):
    free page reporting (freed blocks handed back to the host; the next touch of each page
    faults there) and DAMON schemes (idle memory paged out). Either moves the ratio of two
    commands that take different amounts of fresh memory from run to run
    (docs/benchmarks.md, fourth and fifth passes)."""
    out: dict = {}
    reported = _reported_kib()
    if _read(PAGE_REPORTING / "page_reporting_order") is not None:
        out["free_page_reporting"] = {
            "order": _read(PAGE_REPORTING / "page_reporting_order"),
            "min_free_ms": _read(PAGE_REPORTING / "min_free_ms"),
            "reported_mib_during_run": (
                round((reported - reported_kib_before) / 1024)
                if reported is not None and reported_kib_before is not None else None),
        }
    actions = sorted({a for k in (DAMON.glob("*") if DAMON.exists() else ())
                      if _read(k / "state") == "on"
                      for a in (_read(f) for f in k.glob("contexts/*/schemes/*/action")) if a})
    if actions:
        out["damon_schemes"] = actions
    if out:
        out["note"] = ("the host reclaims this VM's memory: ratios near the target move run "
                       "to run here; repeat the bench or use a machine without it")
    return out


def _reported_kib() -> int | None:
    value = _read(PAGE_REPORTING / "reported_kib")
    return int(value) if value is not None and value.isdigit() else None


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(argv: Sequence[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``argv`` (its output is discarded; failure raises)."""
    c0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr[-2000:]}")
    return wall, _children_cpu() - c0


def measure(commands: Sequence[Command], repeat: int, warmup: bool = True) -> None:
    """Run every command on both trees ``repeat`` times, interleaved; fills wall / cpu."""
    _START["reported_kib"] = _reported_kib()
    if warmup:  # page cache, .pyc files, first-touch costs
        for c in commands:
            c.clean()
            run_once(c.half)
    for _ in range(repeat):
        for c in commands:
            for size in ("whole", "half"):
                c.clean()
                # Start clean: the writeback of an earlier run's dirty pages (hundreds of MB)
                # otherwise lands in whichever run comes next (seen: one 491 MB write took
                # 0.2 s or 1.3 s).
                os.sync()
                wall, cpu = run_once(c.whole if size == "whole" else c.half)
                c.wall[size].append(wall)
                c.cpu[size].append(cpu)
    for c in commands:
        c.clean()


def per_pair(c: Command, pairs: int, half_pairs: int, kind: str = "wall") -> float:
    """Median over repetitions of (whole - half) / (pairs - half_pairs), seconds per pair."""
    runs = c.wall if kind == "wall" else c.cpu
    diffs = [(w - h) / (pairs - half_pairs) for w, h in zip(runs["whole"], runs["half"],
                                                            strict=True)]
    return statistics.median(diffs)


def report(commands: Sequence[Command], pairs: int, half_pairs: int, floor: str,
           target: float, extra: dict | None = None) -> dict:
    """A JSON-able summary: per-pair ms of each command, ratios to the floor, --jobs 2
    speed-up, the spread of the per-repetition differences, and the machine."""
    by = {c.name: c for c in commands}
    out: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}, Python "
                   f"{platform.python_version()}",
        "load_average_1min": round(os.getloadavg()[0], 2),
        "pairs_whole": pairs, "pairs_half": half_pairs,
        "repeat": len(commands[0].wall["whole"]),
        **(extra or {}),
    }
    host = host_memory(_START["reported_kib"])
    if host:
        out["host_memory"] = host
    for kind in ("wall", "cpu"):
        ms = {c.name: per_pair(c, pairs, half_pairs, kind) * 1e3 for c in commands}
        out[f"{kind}_ms_per_pair"] = {k: round(v, 2) for k, v in ms.items()}
        out[f"{kind}_x_floor"] = {k: round(v / ms[floor], 3) for k, v in ms.items()
                                  if k != floor}
        out[f"{kind}_start_up_s"] = {  # the half-tree time less its pairs: fixed costs
            c.name: round(statistics.median(c.wall["half"] if kind == "wall" else c.cpu["half"])
                          - ms[c.name] / 1e3 * half_pairs, 2) for c in commands}
    spread = {}
    for c in commands:
        diffs = [(w - h) / (pairs - half_pairs) * 1e3
                 for w, h in zip(c.wall["whole"], c.wall["half"], strict=True)]
        spread[c.name] = [round(min(diffs), 2), round(max(diffs), 2)]
    out["wall_ms_per_pair_min_max"] = spread
    if "jobs1" in by and "jobs2" in by:
        out["jobs2_speedup"] = round(per_pair(by["jobs1"], pairs, half_pairs)
                                     / per_pair(by["jobs2"], pairs, half_pairs), 2)
    out["target"] = f"jobs1 <= {target}x {floor} (wall, per pair)"
    # A floor at or below zero per pair means the runs' noise swamped it: nothing is met.
    ratio = out["wall_x_floor"].get("jobs1", float("inf"))
    out["met"] = out["wall_ms_per_pair"][floor] > 0 and 0 < ratio <= target
    return out


def link_tree(src: Path, dst: Path, keep: Callable[[Path], bool]) -> None:
    """``dst``: a copy of the folder tree ``src`` whose kept files are hard links (shared page
    cache); the others, and folders left empty, are left out."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_file() and keep(path):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)


def remover(path: Path) -> Callable[[], None]:
    return lambda: shutil.rmtree(path, ignore_errors=True)


def stage_profile(run: Callable[[], object], stages: Sequence[tuple[object, str]],
                  pairs: int) -> dict:
    """CPU and wall time per pair of each stage of an in-process ``run()``, by thread.

    ``stages``: (object, attribute) of functions to time (module functions or methods). Each
    call is timed with ``time.thread_time`` in the thread that makes it, so the work of
    helper threads (decoding the second frame, producing the next item), which cProfile does
    not see, is counted too. Run twice: the second run counts (imports and page cache warm;
    ``run`` should clear in-process caches a fresh command would not have).
    """
    import threading
    from collections import defaultdict

    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    originals = []
    for obj, attr in stages:
        fn = getattr(obj, attr)
        originals.append((obj, attr, fn))

        def timed(*a: object, _fn: Callable = fn, _name: str = attr, **k: object) -> object:
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return _fn(*a, **k)
            finally:
                t = totals[f"{_name} [{threading.current_thread().name.split('_')[0]}]"]
                t[0] += time.perf_counter() - w0
                t[1] += time.thread_time() - c0
                t[2] += 1

        setattr(obj, attr, timed)
    try:
        run()
        totals.clear()
        c0, w0 = time.process_time(), time.perf_counter()
        run()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    finally:
        for obj, attr, fn in originals:
            setattr(obj, attr, fn)
    return {"pairs": pairs, "run_wall_ms_per_pair": round(wall / pairs * 1e3, 2),
            "run_cpu_ms_per_pair": round(cpu / pairs * 1e3, 2),
            "stages_cpu_ms_per_pair [thread]": {
                k: round(v[1] / pairs * 1e3, 2) for k, v in
                sorted(totals.items(), key=lambda kv: -kv[1][1])},
            "stages_wall_ms_per_pair [thread]": {
                k: round(v[0] / pairs * 1e3, 2) for k, v in
                sorted(totals.items(), key=lambda kv: -kv[1][1])}}

"""run_job: resume after a failure, no-op reruns, refusals, and the same bytes for any --jobs."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from lpie_data.errors import DataError, OutputError
from lpie_data.jobs import WORK_DIR, JobOptions, WorkItem, run_job
from lpie_data.records import Example


def produce(item: WorkItem):
    """Test producer. args = (log_dir, seed, gate): appends the item key to a log file in
    ``log_dir`` (so tests see what ran, across processes) and fails while ``gate`` exists."""
    log_dir, seed, gate = item.args
    with open(Path(log_dir) / f"{os.getpid()}.log", "a") as f:
        f.write(item.key + "\n")
    if gate and Path(gate).exists():
        raise DataError(f"{gate}: injected failure")
    rng = np.random.default_rng(seed)
    for i in range(3):
        a = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
        yield Example(f"{item.key}/{i}", a, 255 - a, {"source": item.key, "box": [0, 0, 12, 20]})


def _items(log_dir: Path, n: int = 6, gate: Path | None = None, bad: int = 3) -> list[WorkItem]:
    return [WorkItem(f"item{i}", "train" if i < n - 1 else "validation",
                     (str(log_dir), i, str(gate) if (gate and i == bad) else None))
            for i in range(n)]


def _ran(log_dir: Path) -> list[str]:
    return sorted(line for p in log_dir.glob("*.log") for line in p.read_text().split())


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def _run(out, items, **kw):
    kw.setdefault("jobs", 1)
    return run_job(str(out), "toy", "toy make", {"x": 1}, items, produce, JobOptions(**kw))


@pytest.fixture
def logs(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    return d


def test_resume_after_failure_equals_uninterrupted(tmp_path, logs):
    ref = tmp_path / "ref"
    _run(ref, _items(logs))
    gate = tmp_path / "broken"
    gate.write_text("")
    out = tmp_path / "out"
    (logs / "first").mkdir()
    items = _items(logs / "first", gate=gate, bad=3)
    with pytest.raises(DataError, match="broken: injected failure"):
        _run(out, items)
    assert not (out / "manifest.json").exists()
    assert not any(".tfrecord-" in n for n in os.listdir(out))
    assert _ran(logs / "first") == ["item0", "item1", "item2", "item3"]

    gate.unlink()  # "fix the file"
    (logs / "second").mkdir()
    items = _items(logs / "second", gate=gate, bad=3)
    updates = []
    summary = _run(out, items, progress=lambda done, total: updates.append((done, total)))
    assert summary.items_resumed == 3 and not summary.noop
    assert _ran(logs / "second") == ["item3", "item4", "item5"]  # finished items not redone
    assert updates[0] == (3, 6) and updates[-1] == (6, 6)
    assert not (out / WORK_DIR).exists()
    # The log dir is part of the items' args but not of the bytes: same shards, same manifest
    # apart from nothing (args do not enter the manifest, only their keys).
    assert _files(out) == _files(ref)


def test_rerun_is_noop(tmp_path, logs):
    out = tmp_path / "out"
    _run(out, _items(logs))
    before = {n: os.stat(out / n).st_mtime_ns for n in os.listdir(out)}
    (logs / "again").mkdir()
    summary = _run(out, _items(logs / "again"))
    assert summary.noop
    assert summary.splits == {"train": {"examples": 15, "bytes": summary.splits["train"]["bytes"]},
                              "validation": {"examples": 3,
                                             "bytes": summary.splits["validation"]["bytes"]}}
    assert _ran(logs / "again") == []
    assert {n: os.stat(out / n).st_mtime_ns for n in os.listdir(out)} == before


def test_other_arguments_refused_unless_overwrite(tmp_path, logs):
    out = tmp_path / "out"
    _run(out, _items(logs))
    with pytest.raises(OutputError, match="other arguments or inputs.*--overwrite"):
        run_job(str(out), "toy", "toy make", {"x": 2}, _items(logs), produce, JobOptions(jobs=1))
    with pytest.raises(OutputError, match="other arguments"):
        _run(out, _items(logs, n=4))  # other inputs
    with pytest.raises(OutputError, match="other arguments"):
        _run(out, _items(logs), shard_bytes=1000)
    (out / "stray.tfrecord-00000-of-00009").write_bytes(b"old")
    run_job(str(out), "toy", "toy make", {"x": 2}, _items(logs, n=4), produce,
            JobOptions(jobs=1, overwrite=True))
    fresh = tmp_path / "fresh"
    run_job(str(fresh), "toy", "toy make", {"x": 2}, _items(logs, n=4), produce, JobOptions(jobs=1))
    assert _files(out) == _files(fresh)


def test_partial_run_with_other_arguments_refused(tmp_path, logs):
    gate = tmp_path / "broken"
    gate.write_text("")
    out = tmp_path / "out"
    with pytest.raises(DataError):
        _run(out, _items(logs, gate=gate))
    with pytest.raises(OutputError, match="other arguments"):
        run_job(str(out), "toy", "toy make", {"x": 3}, _items(logs), produce, JobOptions(jobs=1))


def test_foreign_folder_refused(tmp_path, logs):
    out = tmp_path / "out"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(OutputError, match="not empty and is not an lpie dataset"):
        _run(out, _items(logs))
    with pytest.raises(OutputError, match="not empty and is not an lpie dataset"):
        _run(out, _items(logs), overwrite=True)  # never deletes foreign files
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        _run(tmp_path / "file", _items(logs))
    assert (out / "holiday.jpg").exists()


def test_same_bytes_whatever_jobs(tmp_path, logs):
    one, two = tmp_path / "one", tmp_path / "two"
    _run(one, _items(logs, n=7), jobs=1, shard_bytes=3000)
    _run(two, _items(logs, n=7), jobs=2, shard_bytes=3000)
    assert len(_files(one)) > 3
    assert _files(one) == _files(two)
    m = json.loads((two / "manifest.json").read_text())
    assert "jobs" not in m["arguments"]


def test_worker_failure_in_parallel_names_the_file(tmp_path, logs):
    gate = tmp_path / "bad.png"
    gate.write_text("")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="bad.png: injected failure"):
        _run(out, _items(logs, gate=gate, bad=1), jobs=2)
    assert not (out / "manifest.json").exists()


def test_unknown_backend(tmp_path, logs):
    with pytest.raises(OutputError, match="unknown backend 'spark'; valid: loky, threading"):
        _run(tmp_path / "o", _items(logs), backend="spark")


def test_worker_side_hash_gives_the_same_dataset(tmp_path, logs, monkeypatch):
    ref = tmp_path / "ref"
    _run(ref, _items(logs))
    import lpie_data.parts

    monkeypatch.setattr(lpie_data.parts, "HASH_IN_WORKER_BYTES", 0)  # workers hash every part
    out = tmp_path / "out"
    _run(out, _items(logs))
    assert _files(out) == _files(ref)


def test_part_without_its_record_file_is_redone(tmp_path, logs):
    gate = tmp_path / "broken"
    gate.write_text("")
    out = tmp_path / "out"
    shards = {"shard_bytes": 10_000}  # two items (~4.8 KB each) per shard
    with pytest.raises(DataError):
        _run(out, _items(logs, gate=gate, bad=3), **shards)
    # --jobs 1 writes items into run files that become the shards: item1's bytes are in the
    # file its sidecar names, with item0's. Losing it (e.g. in a crash) redoes both; item2, in
    # the next run file, is kept.
    sides = {i: json.loads((out / WORK_DIR / f"part-{i:06d}.json").read_text()) for i in range(3)}
    assert sides[0]["file"] == sides[1]["file"] != sides[2]["file"]
    (out / WORK_DIR / sides[1]["file"]).unlink()
    gate.unlink()
    (logs / "second").mkdir()
    summary = _run(out, _items(logs / "second", gate=gate, bad=3), **shards)
    assert summary.items_resumed == 1
    assert _ran(logs / "second") == ["item0", "item1", "item3", "item4", "item5"]
    ref = tmp_path / "ref"
    _run(ref, _items(tmp_path), **shards)
    assert _files(out) == _files(ref)


def test_stale_work_folder_removed_on_noop_rerun(tmp_path, logs):
    out = tmp_path / "out"
    _run(out, _items(logs))
    (out / WORK_DIR).mkdir()  # as left by a run killed after writing its manifest
    (out / WORK_DIR / "part-000000.rec").write_bytes(b"x")
    assert _run(out, _items(logs)).noop
    assert not (out / WORK_DIR).exists()


def test_default_jobs_is_one_worker_per_two_cores(tmp_path, logs, monkeypatch):
    from joblib import cpu_count

    from lpie_data.jobs import default_jobs

    assert [default_jobs(c) for c in (1, 2, 3, 4, 16)] == [1, 1, 1, 2, 8]
    assert default_jobs() == max(1, cpu_count() // 2)
    assert JobOptions().jobs is None and JobOptions().workers == default_jobs()
    assert JobOptions(jobs=-1).workers == -1 and JobOptions(jobs=3).workers == 3
    # The summary says how many workers made the items: the default, capped by the items.
    monkeypatch.setattr("lpie_data.jobs.default_jobs", lambda: 2)
    assert _run(tmp_path / "auto", _items(logs, n=3), jobs=None, shard_bytes=3000).workers == 2
    assert _run(tmp_path / "one", _items(logs, n=3), jobs=1, shard_bytes=3000).workers == 1
    assert _run(tmp_path / "many", _items(logs, n=3), jobs=8).workers == 3
    assert _files(tmp_path / "auto") == _files(tmp_path / "one")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_thread_and_worker_defaults_follow_the_cores_this_process_may_use():
    """A process pinned to one core (a Slurm job's share, taskset) counts one core, not the
    machine's: one worker, one FFT thread, one decoding thread, one interpreter thread."""
    import subprocess
    import sys

    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from lpie_data.cores import usable_cores; from lpie_data.jobs import default_jobs\n"
        "from lpie_data.pngfile import decode_threads\n"
        "from lpie_data.synth.pipeline import _fft_workers\n"
        "print(usable_cores(), default_jobs(), decode_threads(), _fft_workers(1, 'loky'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                            "LOKY_MAX_CPU_COUNT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    assert out == ["1", "1", "1", "1"]

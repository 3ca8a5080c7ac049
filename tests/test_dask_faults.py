"""A Dask worker process killed (SIGKILL) in the middle of a job: the cluster's nanny restarts
it, the scheduler gives its unfinished items to a worker again, and the job ends with exactly
the bytes of a ``--jobs 1`` run (``prepare sidd`` and ``synth``)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures.cluster import local_dask_cluster
from test_scaleout import dataset_files, make_sidd, prepare
from typer.testing import CliRunner

from lpie_data.cli import app
from lpie_data.jobs import WORK_DIR, JobOptions, run_job
from lpie_data.sources import sidd

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.multiprocess
runner = CliRunner()


@pytest.fixture()
def cluster():
    """Scheduler + 2 worker processes (each under a nanny, which restarts a dead worker)."""
    with local_dask_cluster() as cluster:
        yield cluster


def worker_pids(cluster) -> dict[str, int]:
    return {addr: ws.pid for addr, ws in dict(cluster.scheduler.workers).items()}


def kill_a_busy_worker(cluster) -> int:
    """SIGKILL a worker process that holds unfinished items; returns its PID."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for ws in list(cluster.scheduler.workers.values()):
            if ws.processing:
                os.kill(ws.pid, signal.SIGKILL)
                return ws.pid
        time.sleep(0.005)
    raise AssertionError("no worker was busy")


def wait_for_restart(cluster, dead: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        pids = set(worker_pids(cluster).values())
        if len(pids) == 2 and dead not in pids:
            return
        assert time.monotonic() < deadline, f"no replacement worker for PID {dead}: {pids}"
        time.sleep(0.1)


def slow_sidd(item):
    """sidd.produce, 0.3 s slower: items are still running when the kill lands."""
    time.sleep(0.3)
    yield from sidd.produce(item)


def test_prepare_sidd_survives_a_killed_worker(cluster, tmp_path: Path) -> None:
    root = make_sidd(tmp_path)
    r = prepare(root, str(tmp_path / "local"), "--jobs", "1")
    assert r.exit_code == 0, r.output
    killed: list[int] = []

    def kill_after_first(done: int, total: int) -> None:
        if done == 1 and not killed:
            killed.append(kill_a_busy_worker(cluster))

    arguments = {"root": str(root.resolve()), "tile": 32, "stride": 32, "val_dir": None}
    items, _ = sidd.work_items(root, 32, 32)
    job = JobOptions(backend="dask", scheduler=cluster.scheduler_address,
                     progress=kill_after_first)
    summary = run_job(str(tmp_path / "dask"), sidd.NAME, "prepare sidd", arguments, items,
                      slow_sidd, job)
    assert killed and summary.items == 4
    wait_for_restart(cluster, killed[0])
    local, remote = dataset_files(str(tmp_path / "local")), dataset_files(str(tmp_path / "dask"))
    assert remote == local and len(local) == 2
    assert not (tmp_path / "dask" / WORK_DIR).exists()


def test_synth_survives_a_killed_worker(cluster, tmp_path: Path) -> None:
    cfg = tmp_path / "synth.toml"
    cfg.write_text("[synth]\ncrop = 64\npairs_per_image = 2\n")
    common = ["synth", "--config", str(cfg), "--seed", "5"]
    r = runner.invoke(app, [*common, "--out", str(tmp_path / "local"), "--jobs", "1"])
    assert r.exit_code == 0, r.output

    out = tmp_path / "dask"
    killed: list[int] = []

    def kill_when_first_part_lands() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            work = out / WORK_DIR
            if work.is_dir() and any(p.suffix == ".rec" for p in work.iterdir()):
                killed.append(kill_a_busy_worker(cluster))
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=kill_when_first_part_lands, daemon=True)
    watcher.start()
    r = runner.invoke(app, [*common, "--out", str(out), "--backend", "dask", "--scheduler",
                            cluster.scheduler_address])
    watcher.join(timeout=5)
    assert r.exit_code == 0, r.output
    assert killed, "the kill did not land before the job ended"
    wait_for_restart(cluster, killed[0])
    local, remote = dataset_files(str(tmp_path / "local")), dataset_files(str(out))
    assert remote == local and len(local) >= 3
    assert np.all([name in remote for name in local])

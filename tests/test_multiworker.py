"""Multi-worker training for real: two ``lpie-model train`` processes on this machine, joined
by TF_CONFIG on free loopback ports, under ``strategy = "multiworker"``.

- Two workers (one CPU replica each, global batch 4 = 2 x 2) end where one worker with the same
  global batch ends, within a stated tolerance; the chief alone writes the run folder.
- One worker is SIGKILLed mid-run; the survivor stops with a one-line error; both restart with
  ``--resume`` and finish from the last checkpoint, each epoch once in metrics.csv.
- A ``[synth]`` recipe: the chief writes RUN/data, the other worker waits for its manifest.
- One-line errors: malformed TF_CONFIG, a port in use, a worker that never joins.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_data_pipeline import write_dataset
from test_train import checkpoint_values, read_rows, tiny_recipe, without_time

from lpie_data.errors import ConfigError, DataError
from lpie_model.recipe import recipe_from_dict
from lpie_model.strategies import STRATEGIES, read_tf_config
from lpie_model.train import train

ROOT = Path(__file__).resolve().parent.parent
#: Two replicas sum their gradients in another order than one device does.
WEIGHTS_RTOL, WEIGHTS_ATOL = 1e-3, 5e-4
LOSS_ATOL, PSNR_ATOL = 1e-4, 1e-3


def free_ports(n: int) -> list[int]:
    """Ports free right now on loopback (chosen by the kernel)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def write_toml(path: Path, recipe: dict) -> Path:
    """A recipe dict as TOML (the few value types these recipes use)."""
    def value(v: object) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, float) and not np.isfinite(v):
            return str(v)  # inf, -inf, nan: TOML's spelling
        return json.dumps(v)

    lines = []
    for table in ("model", "data", "train", "synth"):
        items = {k: v for k, v in (recipe.get(table) or {}).items()
                 if k != "datasets" and v is not None}
        if items:
            lines.append(f"[{table}]")
            lines += [f"{k} = {value(v)}" for k, v in items.items()]
    for ds in (recipe.get("data") or {}).get("datasets", []):
        lines.append("[[data.datasets]]")
        lines += [f"{k} = {value(v)}" for k, v in ds.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_worker(recipe: Path, run: Path, ports: list[int], index: int, log: Path,
                 *extra: str, tmp: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "TF_CONFIG": tf_config(ports, index), "TF_CPP_MIN_LOG_LEVEL": "2"}
    if tmp is not None:  # the worker's temporary files (tempfile honours TMPDIR)
        env["TMPDIR"] = str(tmp)
    code = "import sys; from lpie_model.cli import main; sys.argv[0] = 'lpie-model'; main()"
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-c", code, "train", str(recipe), "--out",
                                 str(run), *extra], stdout=f, stderr=subprocess.STDOUT,
                                env=env, cwd=ROOT)


def finish(procs: list[subprocess.Popen], logs: list[Path], timeout: float = 600) -> list[int]:
    codes = []
    for p, log in zip(procs, logs, strict=True):
        try:
            codes.append(p.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            pytest.fail(f"worker did not finish in {timeout} s:\n{log.read_text()[-3000:]}")
    return codes


def event_file_pids(run: Path) -> set[int]:
    """PIDs of the processes that wrote TensorBoard event files (they are in the names:
    events.out.tfevents.<time>.<host>.<pid>.<n>.v2)."""
    names = [p.name for p in (run / "logs").rglob("events.out.tfevents.*")]
    return {int(re.fullmatch(r"events\.out\.tfevents\.\d+\..+\.(\d+)\.\d+\.v2", n)[1])
            for n in names}


@pytest.fixture(scope="module")
def ramps(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_dataset(tmp_path_factory.mktemp("mw") / "ramps", train=8, val=2)


@pytest.mark.multiprocess
def test_two_workers_match_one_and_resume_after_a_sigkill(tmp_path: Path, ramps: str) -> None:
    recipe = tiny_recipe(ramps, epochs=3, steps_per_epoch=4, strategy="multiworker",
                         join_timeout=120.0).to_dict()
    toml = write_toml(tmp_path / "mw.toml", recipe)
    run = tmp_path / "run"
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    ports = free_ports(2)
    procs = [start_worker(toml, run, ports, i, logs[i]) for i in range(2)]
    chief_pids = {procs[0].pid}

    # Kill worker 1 as soon as the chief has checkpointed epoch 1: the run is mid-way (epoch 2
    # needs both workers for every step).
    deadline = time.monotonic() + 600
    while not (run / "checkpoints" / "ckpt-1.index").exists():
        assert time.monotonic() < deadline, logs[0].read_text()[-3000:]
        for p, log in zip(procs, logs, strict=True):
            assert p.poll() is None, log.read_text()[-3000:]
        time.sleep(0.02)
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    epochs_at_kill = [r["epoch"] for r in read_rows(run)]
    assert epochs_at_kill in (["1"], ["1", "2"])
    # The survivor notices (peer health checks every few seconds) and stops with one line.
    try:
        code = procs[0].wait(timeout=120)
    except subprocess.TimeoutExpired:
        procs[0].kill()
        procs[0].wait()
        pytest.fail("the surviving worker did not stop:\n" + logs[0].read_text()[-3000:])
    assert code == 1, logs[0].read_text()[-3000:]
    assert "another worker of the cluster stopped" in logs[0].read_text()
    assert "--resume" in logs[0].read_text()

    ports = free_ports(2)
    procs = [start_worker(toml, run, ports, i, logs[i], "--resume") for i in range(2)]
    chief_pids.add(procs[0].pid)
    assert finish(procs, logs) == [0, 0], logs[0].read_text()[-3000:] + logs[1].read_text()
    resumed = logs[0].read_text().split("resuming after epoch ")[1].split(":")[0]
    # From the last checkpoint: epoch 1's, or epoch 2's if the chief could still finish it.
    assert len(epochs_at_kill) <= int(resumed) <= 2
    rows = read_rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]  # each epoch once
    assert "2 replica(s)" in logs[1].read_text()
    # Only the chief writes: TensorBoard files name their writer's PID.
    assert event_file_pids(run) and event_file_pids(run) <= chief_pids

    # One worker, same global batch (default strategy), in this process.
    recipe["train"]["strategy"] = "default"
    one = tmp_path / "one"
    train(recipe_from_dict(recipe), one)
    ref = read_rows(one)
    for a, b in zip(without_time(rows), without_time(ref), strict=True):
        assert a["epoch"] == b["epoch"] and a["lr"] == b["lr"]
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), abs=LOSS_ATOL)
        assert float(a["val_psnr"]) == pytest.approx(float(b["val_psnr"]), abs=PSNR_ATOL)
    got, want = checkpoint_values(run, 3), checkpoint_values(one, 3)
    assert got.keys() == want.keys()
    for name in got:
        np.testing.assert_allclose(got[name], want[name], rtol=WEIGHTS_RTOL, atol=WEIGHTS_ATOL,
                                   err_msg=name)


SYNTH = {
    "model": {"widths": [8, 16, 8]},
    "synth": {"crop": 32, "pairs_per_image": 2, "noise": "fixed"},
    "data": {"batch_size": 4, "crop_schedule": [[1, 24]], "shuffle_buffer": 4,
             "synth_val_fraction": 0.3},
    "train": {"epochs": 1, "steps_per_epoch": 2, "tensorboard_images": 0, "log_every": 1,
              "strategy": "multiworker", "join_timeout": 300.0},
}


@pytest.mark.multiprocess
def test_synth_recipe_under_multiworker_chief_writes_the_data(tmp_path: Path) -> None:
    toml = write_toml(tmp_path / "synth.toml", SYNTH)
    run = tmp_path / "run"
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    ports = free_ports(2)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    other = start_worker(toml, run, ports, 1, logs[1], tmp=tmp)  # starts first: it must wait
    time.sleep(1)
    chief = start_worker(toml, run, ports, 0, logs[0], tmp=tmp)
    assert finish([chief, other], logs) == [0, 0], logs[0].read_text() + logs[1].read_text()
    # The other worker's private checkpoints went with it (Trainer.close).
    assert not list(tmp.glob("lpie-worker-ckpt-*"))
    assert "waiting for the chief to write" in logs[1].read_text()
    assert f"{run / 'data' / 'manifest.json'}" in logs[1].read_text().replace("\n", "")
    assert (run / "data" / "manifest.json").is_file()
    assert [r["epoch"] for r in read_rows(run)] == ["1"]


def test_other_workers_wait_for_the_synth_dataset_with_a_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_CONFIG", tf_config(free_ports(2), 1))
    recipe = recipe_from_dict({**SYNTH, "train": {**SYNTH["train"], "join_timeout": 1.0}})
    t0 = time.monotonic()
    with pytest.raises(DataError) as e:
        train(recipe, tmp_path / "run")
    assert 1.0 <= time.monotonic() - t0 < 30
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("waited 1 s (train.join_timeout) for the chief's [synth] dataset: "
                              f"{tmp_path / 'run' / 'data' / 'manifest.json'} did not appear")
    assert not (tmp_path / "run").exists()  # a non-chief writes nothing


@pytest.mark.parametrize(("text", "message"), [
    ("", "needs the TF_CONFIG environment variable"),
    ("{cluster: 1}", "TF_CONFIG: not valid JSON"),
    ("[1, 2]", "TF_CONFIG: expected a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', "TF_CONFIG: 'cluster' must map job names"),
    ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: cluster.worker must be a non-empty list of 'host:port' strings"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}}', "TF_CONFIG: 'task' must give this worker's"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
     "task type 'ps' is not a job of the cluster (worker)"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "task index 2 is outside cluster.worker (0..1)"),
])
def test_malformed_tf_config_is_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        read_tf_config(text)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_malformed_tf_config_stops_the_cli_before_anything_is_written(
        tmp_path: Path, ramps: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lpie_model.cli import app

    toml = write_toml(tmp_path / "r.toml",
                      tiny_recipe(ramps, strategy="multiworker").to_dict())
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"index": 0}}')
    result = CliRunner().invoke(app, ["train", str(toml), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "TF_CONFIG: 'task' must give this worker's type and index" in result.output
    assert not (tmp_path / "run").exists()


def test_a_port_in_use_is_named(ramps: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = free_ports(1)[0]
        monkeypatch.setenv("TF_CONFIG", json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{other}", f"127.0.0.1:{port}"]},
            "task": {"type": "worker", "index": 1}}))
        recipe = tiny_recipe(ramps, strategy="multiworker")
        with pytest.raises(ConfigError) as e:
            STRATEGIES["multiworker"](recipe)
    assert str(e.value).startswith(f"TF_CONFIG: port {port} of this worker (worker:1, "
                                   f"127.0.0.1:{port}) is already in use")


@pytest.mark.multiprocess
def test_a_worker_that_never_joins_times_out(tmp_path: Path, ramps: str) -> None:
    recipe = tiny_recipe(ramps, strategy="multiworker", join_timeout=3.0).to_dict()
    toml = write_toml(tmp_path / "r.toml", recipe)
    ports = free_ports(2)
    log = tmp_path / "w0.log"
    proc = start_worker(toml, tmp_path / "run", ports, 0, log)
    assert finish([proc], [log], timeout=300) == [1]
    text = " ".join(log.read_text().split())
    assert ("not every worker joined within train.join_timeout = 3 s (this is worker:0; "
            f"cluster: worker:0 (127.0.0.1:{ports[0]}), worker:1 (127.0.0.1:{ports[1]}); "
            f"never answered: worker:1 (127.0.0.1:{ports[1]})); start the same command"
            ) in text, text[-3000:]

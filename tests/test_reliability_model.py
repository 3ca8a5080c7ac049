"""Faults in training runs: lost or damaged checkpoints, damaged run files and shards, kills."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train import read_rows, tiny_recipe, without_time, write_recipe

from lpie_data.errors import DataError, OutputError
from lpie_model.train import TrainEvent, train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ramps(tmp_path_factory: pytest.TempPathFactory) -> str:
    from test_data_pipeline import write_dataset

    return write_dataset(tmp_path_factory.mktemp("rel") / "ramps", train=8, val=2)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, ramps: str) -> Path:
    """A finished 3-epoch run (checkpoints ckpt-2 and ckpt-3 kept)."""
    run = tmp_path_factory.mktemp("rel") / "finished"
    train(tiny_recipe(ramps, epochs=3), run)
    return run


def _copy(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst)
    return dst


def _bytes(run: Path) -> dict[str, bytes]:
    return {n: (run / n).read_bytes() for n in ("best.weights.h5", "metrics.csv", "summary.json")}


def test_resume_without_checkpoints_is_refused_and_keeps_the_run(tmp_path, ramps, finished):
    run = _copy(finished, tmp_path / "run")
    shutil.rmtree(run / "checkpoints")
    before = _bytes(run)
    with pytest.raises(OutputError, match=r"run: cannot resume: no checkpoint in .*summary.json "
                                          r"says 3 epochs were done"):
        train(tiny_recipe(ramps, epochs=4), run, resume=True)
    assert _bytes(run) == before


def test_damaged_latest_checkpoint_falls_back_to_the_older_one(tmp_path, ramps, finished):
    run = _copy(finished, tmp_path / "run")
    (run / "checkpoints" / "checkpoint").unlink()  # the index file is not needed either
    data = run / "checkpoints" / "ckpt-3.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    events: list[TrainEvent] = []
    result = train(tiny_recipe(ramps, epochs=3), run, resume=True, progress=events.append)
    assert result.resumed_from == 2 and result.epochs_done == 3
    notes = next(e for e in events if e.kind == "start").info["notes"]
    assert "ckpt-3: damaged checkpoint, skipped" in notes[0]
    # Training is deterministic: redoing epoch 3 gives the uninterrupted run's results.
    assert without_time(read_rows(run)) == without_time(read_rows(finished))
    assert (run / "best.weights.h5").read_bytes() == (finished / "best.weights.h5").read_bytes()


def test_every_checkpoint_damaged_is_refused(tmp_path, ramps, finished):
    run = _copy(finished, tmp_path / "run")
    for p in (run / "checkpoints").glob("ckpt-*.index"):
        p.write_bytes(b"garbage")
    with pytest.raises(OutputError, match="cannot resume: every checkpoint is damaged"):
        train(tiny_recipe(ramps, epochs=4), run, resume=True)


def test_an_older_checkpoint_never_replaces_a_better_best(tmp_path, ramps, finished):
    run = _copy(finished, tmp_path / "run")
    # The best epoch was saved after the last usable checkpoint: summary.json records it.
    summary = json.loads((run / "summary.json").read_text())
    summary.update(best_val_psnr=99.0, best_epoch=3)
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "checkpoints" / "ckpt-3.index").unlink()
    best = (run / "best.weights.h5").read_bytes()
    result = train(tiny_recipe(ramps, epochs=4), run, resume=True)
    assert result.resumed_from == 2 and result.best_val_psnr == 99.0 and result.best_epoch == 3
    assert (run / "best.weights.h5").read_bytes() == best


@pytest.mark.parametrize("name", ["recipe.json", "summary.json", "metrics.csv"])
def test_damaged_run_files_are_named(tmp_path, ramps, finished, name):
    run = _copy(finished, tmp_path / "run")
    (run / name).write_bytes(b'{"epo' if name.endswith(".json") else b"epoch,crop\nx,1\n")
    with pytest.raises(OutputError, match=rf"run/{name}: damaged"):
        train(tiny_recipe(ramps, epochs=4), run, resume=True)


def test_a_damaged_shard_is_named(tmp_path, ramps):
    data = Path(shutil.copytree(ramps, tmp_path / "ramps"))
    shard = sorted(data.glob("*-train.tfrecord-*"))[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"{shard.name}: damaged record"):
        train(tiny_recipe(str(data), epochs=1), tmp_path / "run")


def test_sigkill_of_a_real_train_then_resume(tmp_path, ramps):
    recipe = write_recipe(tmp_path / "r.toml", f"""
        [model]
        widths = [8, 16, 8]
        [data]
        batch_size = 4
        crop_schedule = [[1, 24]]
        shuffle_buffer = 4
        [[data.datasets]]
        path = "{ramps}"
        [train]
        epochs = 3
        steps_per_epoch = 3
        tensorboard_images = 0
        """)
    cmd = [str(Path(sys.executable).parent / "lpie-model"), "train", recipe, "--out",
           str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "run" / "checkpoints" / "ckpt-1.index"
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in read_rows(tmp_path / "run")] == ["1", "2", "3"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"


def _bomb_png(path: Path, side: int = 60000) -> None:
    """A PNG whose header claims side x side RGB pixels (a decompression bomb), with no data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _bomb_jpeg(path: Path) -> None:
    """A real JPEG whose SOF header is patched to claim 65000 x 65000 pixels."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, format="JPEG")
    raw = bytearray(buf.getvalue())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5: sof + 9] = (65000).to_bytes(2, "big") * 2
    path.write_bytes(bytes(raw))


def test_enhance_goes_on_after_decompression_bombs(tmp_path):
    import keras
    import numpy as np
    from typer.testing import CliRunner

    from lpie_data.images import write_png
    from lpie_model.cli import app

    inp = keras.Input((None, None, 3))
    model = tmp_path / "conv.keras"
    keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same")(inp)).save(model)
    photos = tmp_path / "photos"
    photos.mkdir()
    _bomb_png(photos / "a_bomb.png")
    _bomb_jpeg(photos / "b_bomb.jpg")
    write_png(photos / "c_good.png", np.full((24, 32, 3), 128, np.uint8))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["enhance", str(model), str(photos), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "a_bomb.png" in result.output and "b_bomb.jpg" in result.output
    assert "2 of 3 image(s) failed" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["c_good.png"]


def test_an_out_that_cannot_be_created_is_one_line(tmp_path, ramps):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"file/run: cannot create the run folder"):
        train(tiny_recipe(ramps, epochs=1), tmp_path / "file" / "run")


def test_a_second_train_into_a_running_run_fails_at_once(tmp_path, ramps, finished):
    from lpie_data.jobs import output_lock

    run = _copy(finished, tmp_path / "run")
    before = _bytes(run)
    with output_lock(str(run), "lpie-model train"):
        with pytest.raises(OutputError, match=rf"run: in use by another run \(pid {os.getpid()} "
                                              r".*'lpie-model train'"):
            train(tiny_recipe(ramps, epochs=4), run, resume=True)
    assert _bytes(run) == before

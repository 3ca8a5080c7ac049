"""Faults in dataset jobs: changed sources, damaged state files, locks, full disks, kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures.udc_gopro import make_gopro_nested

from lpie_data.errors import DataError, OutputError
from lpie_data.jobs import WORK_DIR, JobOptions, WorkItem, output_lock, run_job
from lpie_data.outdir import LOCK_FILE
from lpie_data.records import Example

REPO = Path(__file__).resolve().parents[1]


def produce(item: WorkItem):
    """Test producer: args = (source file, gate); the examples come from the source's bytes.
    Fails while the gate file exists."""
    source, gate = item.args
    if gate and Path(gate).exists():
        raise DataError(f"{gate}: injected failure")
    seed = int.from_bytes(Path(source).read_bytes()[:8].ljust(8, b"\0"), "little")
    rng = np.random.default_rng(seed)
    for i in range(2):
        a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        yield Example(f"{item.key}/{i}", a, 255 - a, {"source": item.key, "box": [0, 0, 16, 16]})


def _sources(folder: Path, n: int = 4) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"src{i}.bin"
        if not p.exists():
            p.write_bytes(bytes([i + 1]) * 8)
        paths.append(p)
    return paths


def _items(paths: list[Path], gate: Path | None = None, bad: int = 2) -> list[WorkItem]:
    return [WorkItem(f"item{i}", "train", (str(p), str(gate) if gate and i == bad else None))
            for i, p in enumerate(paths)]


def _interrupted_run(tmp_path: Path, paths: list[Path]) -> tuple[Path, Path]:
    """A run into tmp_path/out that fails at item2 while the gate file exists: (out, gate)."""
    gate = tmp_path / "gate"
    gate.write_text("")
    out = tmp_path / "out"
    with pytest.raises(DataError):
        _run(out, _items(paths, gate=gate))
    return out, gate


def _run(out: Path, items: list[WorkItem], **kw):
    kw.setdefault("jobs", 1)
    return run_job(str(out), "toy", "toy make", {"x": 1}, items, produce, JobOptions(**kw))


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def _touch_changed(path: Path, data: bytes) -> None:
    path.write_bytes(data)  # same size, new content, a new modification time


# Item 3: a source changed in place is never kept stale.

def test_finished_dataset_with_a_changed_source_is_refused(tmp_path):
    paths = _sources(tmp_path / "src")
    out = tmp_path / "out"
    _run(out, _items(paths))
    assert _run(out, _items(paths)).noop
    paths[1].write_bytes(paths[1].read_bytes())  # rewritten as it was (cp without -p): kept
    assert _run(out, _items(paths)).noop
    _touch_changed(paths[1], b"\x09" * 8)
    with pytest.raises(OutputError, match=r"out: its input files changed .*--overwrite"):
        _run(out, _items(paths))
    _run(out, _items(paths), overwrite=True)
    fresh = tmp_path / "fresh"
    _run(fresh, _items(paths))
    assert _files(out) == _files(fresh)


def test_source_changed_during_an_interrupted_run_is_redone(tmp_path):
    paths = _sources(tmp_path / "src")
    out, gate = _interrupted_run(tmp_path, paths)
    _touch_changed(paths[0], b"\x07" * 8)  # item0's part exists but is now stale
    gate.unlink()
    summary = _run(out, _items(paths))
    assert summary.items_resumed == 1  # item1 only
    assert any("item0: its input files changed" in n for n in summary.notes)
    fresh = tmp_path / "fresh"
    _run(fresh, _items(paths))
    assert _files(out) == _files(fresh)


def test_input_digest_is_xxh3_of_each_file_content(tmp_path):
    import hashlib

    import xxhash

    from lpie_data.fingerprint import inputs_digest

    path = _sources(tmp_path / "src", n=1)[0]
    item = _items([path])[0]
    line = f"{path}\t8\t{xxhash.xxh3_128(path.read_bytes()).hexdigest()}\n"
    assert inputs_digest(item) == "xxh3_128:" + hashlib.sha256(line.encode()).hexdigest()
    line = f"{path}\t8\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n"
    assert inputs_digest(item, "sha256") == hashlib.sha256(line.encode()).hexdigest()


def test_dataset_with_sha256_digests_of_an_older_lpie_is_still_checked(tmp_path):
    """Datasets made before XXH3 recorded SHA-256 digests (no ``job.inputs_hash``): a rerun
    compares with those, so a touched but unchanged source is no change, an edited one is."""
    from lpie_data.fingerprint import combined_digest, inputs_digest

    paths = _sources(tmp_path / "src")
    out = tmp_path / "out"
    _run(out, _items(paths))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["job"]["inputs_hash"] == "xxh3_128"
    del manifest["job"]["inputs_hash"]
    manifest["job"]["inputs_sha256"] = combined_digest(
        [inputs_digest(it, "sha256") for it in _items(paths)])
    (out / "manifest.json").write_text(json.dumps(manifest))
    paths[1].write_bytes(paths[1].read_bytes())  # newer, same content: rehashed with SHA-256
    assert _run(out, _items(paths)).noop
    _touch_changed(paths[1], b"\x09" * 8)
    with pytest.raises(OutputError, match=r"out: its input files changed"):
        _run(out, _items(paths))


def test_run_resumed_over_sha256_sidecars_of_an_older_lpie(tmp_path):
    """Sidecars of an interrupted run made by an older lpie hold SHA-256 digests: unchanged
    inputs are kept, changed ones redone, and the manifest records one hash for all."""
    from lpie_data.fingerprint import inputs_digest

    paths = _sources(tmp_path / "src")
    out, gate = _interrupted_run(tmp_path, paths)
    items = _items(paths)
    for side in (out / WORK_DIR).glob("part-*.json"):
        data = json.loads(side.read_text())
        item = next(it for it in items if it.key == data["item"])
        data["inputs"] = inputs_digest(item, "sha256")
        side.write_text(json.dumps(data))
    _touch_changed(paths[0], b"\x07" * 8)
    gate.unlink()
    summary = _run(out, _items(paths))
    assert summary.items_resumed == 1  # item1: unchanged under its SHA-256 digest
    fresh = tmp_path / "fresh"
    _run(fresh, _items(paths))
    assert _files(out) == _files(fresh)


def test_fifo_input_is_refused_up_front(tmp_path):
    paths = _sources(tmp_path / "src")
    fifo = tmp_path / "src" / "frame.png"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"frame.png: not a regular file"):
        _run(tmp_path / "out", _items([*paths, fifo]))


# Item 4: damaged state files.

def test_damaged_manifest_is_named_and_overwrite_gets_past(tmp_path):
    paths = _sources(tmp_path / "src")
    out = tmp_path / "out"
    _run(out, _items(paths))
    (out / "manifest.json").write_text('{"format": "lpie-pa')
    with pytest.raises(OutputError, match=r"manifest.json: damaged manifest \(JSONDecodeError"):
        _run(out, _items(paths))
    _run(out, _items(paths), overwrite=True)
    assert json.loads((out / "manifest.json").read_text())["splits"]["train"]["examples"] == 8


def test_damaged_job_file_is_named(tmp_path):
    paths = _sources(tmp_path / "src")
    out, gate = _interrupted_run(tmp_path, paths)
    (out / WORK_DIR / "job.json").write_bytes(b"\x00\x00")
    gate.unlink()
    with pytest.raises(OutputError, match=r"job.json: damaged job file"):
        _run(out, _items(paths))
    _run(out, _items(paths), overwrite=True)


def test_damaged_part_file_is_redone_with_a_note(tmp_path):
    paths = _sources(tmp_path / "src")
    out, gate = _interrupted_run(tmp_path, paths)
    # --jobs 1 writes items into run files that become shards; the sidecar names the file
    record_file = json.loads((out / WORK_DIR / "part-000001.json").read_text())["file"]
    (out / WORK_DIR / "part-000000.json").write_text("{trunc")
    with open(out / WORK_DIR / record_file, "r+b") as f:  # cut short by a crash
        f.truncate(100)
    (out / ".toy-train.tfrecord-00000-of-00001.tmp").write_bytes(b"left by a kill")
    gate.unlink()
    summary = _run(out, _items(paths))
    assert summary.items_resumed == 0
    assert any("part-000000.json: damaged part file" in n for n in summary.notes)
    assert any(f"{record_file}: 100 bytes, the sidecar" in n and "part-000001.json" in n
               for n in summary.notes)
    fresh = tmp_path / "fresh"
    _run(fresh, _items(paths))
    assert _files(out) == _files(fresh)  # the leftover .tmp is gone too


# Item 6: an --out that cannot be created.

@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_out_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(OutputError, match=r"ro/out: cannot create the folder"):
        _run(ro / "out", _items(_sources(tmp_path / "src")))


def test_out_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"file/out: cannot create the folder"):
        _run(tmp_path / "file" / "out", _items(_sources(tmp_path / "src")))


# Item 7: two runs into one --out.

def test_second_run_fails_at_once_naming_the_holder(tmp_path):
    paths = _sources(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    with output_lock(str(out), "lpie-data prepare sidd"):
        with pytest.raises(OutputError, match=rf"out: in use by another run \(pid {os.getpid()} "
                                              r"on .*'lpie-data prepare sidd' started 20"):
            _run(out, _items(paths))
        assert sorted(os.listdir(out)) == [LOCK_FILE]  # nothing written, no .tmp
    summary = _run(out, _items(paths))  # the lock went with its holder
    assert summary.splits["train"]["examples"] == 8
    assert LOCK_FILE not in os.listdir(out)


def test_lock_held_by_another_process(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code = ("import sys, time; from lpie_data.jobs import output_lock\n"
            "with output_lock(sys.argv[1], 'holder'):\n"
            "    print('locked', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=rf"in use by another run \(pid {holder.pid} "):
            _run(out, _items(_sources(tmp_path / "src")))
    finally:
        holder.kill()
        holder.wait()
    _run(out, _items(_sources(tmp_path / "src")))  # a killed holder leaves no lock


# Item 5: a full disk while the shards are joined.

FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    sys.path.insert(0, sys.argv[2])
    from test_reliability_data import _items, _run, _sources
    from pathlib import Path
    from lpie_data.errors import LpieError
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
    try:
        _run(Path(sys.argv[1]), _items(_sources(Path(sys.argv[1]).parent / "src")))
    except LpieError as e:
        print(e)
        sys.exit(1)
""")


def test_full_disk_while_joining_is_clean_and_resumes(tmp_path):
    out = tmp_path / "out"
    paths = _sources(tmp_path / "src")
    # Each part (2 records of ~1.6 KB) fits under the limit; the joined shard (4 parts) does not.
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(out), str(REPO / "tests"),
                           "8000"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "toy-train.tfrecord-00000-of-00001: cannot write the shard (File too large)" in \
        proc.stdout
    assert "Traceback" not in proc.stderr
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    assert not (out / "manifest.json").exists()
    summary = _run(out, _items(paths))  # space freed: the rerun finishes from the parts
    assert summary.items_resumed == 4
    fresh = tmp_path / "fresh"
    _run(fresh, _items(paths))
    assert _files(out) == _files(fresh)


# Kills: SIGKILL a real `lpie-data` run and rerun the same command.

def _cli(root: Path, out: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "lpie-data"), "prepare", "gopro", "--root", str(root),
            "--out", str(out), "--jobs", "1"]


def test_sigkill_mid_run_then_rerun_gives_the_same_bytes(tmp_path):
    root = make_gopro_nested(tmp_path / "GOPRO_Large")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ref = tmp_path / "ref"
    subprocess.run(_cli(root, ref), check=True, capture_output=True, env=env, timeout=300)
    out = tmp_path / "out"
    proc = subprocess.Popen(_cli(root, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first_part = out / WORK_DIR / "part-000000.json"
    deadline = time.monotonic() + 120
    while not first_part.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not (out / "manifest.json").exists():  # killed mid-run, as intended
        assert (out / LOCK_FILE).exists()  # its lock file stays, but no lock with it
    rerun = subprocess.run(_cli(root, out), capture_output=True, text=True, env=env,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert _files(out) == _files(ref)


@pytest.mark.parametrize("option", [["--shard-mb", "0"], ["--shard-mb", "-3"]])
def test_nonsensical_numbers_are_refused_by_name(tmp_path, option):
    from typer.testing import CliRunner

    from lpie_data.cli import app

    result = CliRunner().invoke(app, ["prepare", "sidd", "--root", str(tmp_path), "--out",
                                      str(tmp_path / "out"), *option])
    assert result.exit_code == 2
    assert option[0] in result.output and "Invalid value" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["../elsewhere.tfrecord", "/etc/passwd", "gs://b/x", ".."])
def test_manifest_entry_outside_the_folder_is_refused(tmp_path, name):
    from lpie_data.shards import read_manifest

    out = tmp_path / "out"
    _run(out, _items(_sources(tmp_path / "src")))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][0]["file"] = name
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"manifest.json: shard .* is not a file name inside"):
        read_manifest(str(out))


def test_misnamed_sidd_scene_folder_is_reported(tmp_path):
    import shutil

    from fixtures.sidd import make_sidd_tree
    from typer.testing import CliRunner

    from lpie_data.cli import app

    top = make_sidd_tree(tmp_path, size=(40, 40))
    first = sorted((top / "Data").iterdir())[0]
    shutil.copytree(first, top / "Data" / "scene-renamed-by-hand")
    result = CliRunner().invoke(app, ["prepare", "sidd", "--root", str(top), "--out",
                                      str(tmp_path / "out"), "--tile", "32", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "skipped 1 folder(s) not named like a SIDD scene" in result.output
    assert "scene-renamed-by-hand" in result.output


def test_gopro_16bit_frame_is_named_in_words(tmp_path):
    import struct
    import zlib

    from lpie_data.sources import gopro

    base = make_gopro_nested(tmp_path)
    frame = sorted(base.glob("train/*/blur/*.png"))[0]
    ihdr = struct.pack(">IIBBBBB", 64, 64, 16, 2, 0, 0, 0)
    frame.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                      + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))
    with pytest.raises(DataError, match=rf"{frame.name}: expected an 8-bit RGB PNG, found "
                                        r"16-bit RGB$"):
        gopro.work_items(base)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_psf_show_on_a_text_file_says_what_is_wrong(tmp_path, suffix):
    from typer.testing import CliRunner

    from lpie_data.cli import app

    text = tmp_path / f"notes{suffix}"
    text.write_text("hello world\n")
    result = CliRunner().invoke(app, ["psf", "show", str(text), "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    assert f"notes{suffix}: not a NumPy" in result.output and "pickle" not in result.output


def test_quiet_tensorflow_silences_python_level_warnings(capsys):
    import logging
    import warnings

    from lpie_data.console import quiet_tensorflow

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_tensorflow(False)
        warnings.warn_explicit("Skipping variable loading", UserWarning, "saving_lib.py", 1,
                               module="keras.src.saving.saving_lib")
        warnings.warn_explicit("ours", UserWarning, "x.py", 1, module="lpie_model.export")
    assert [str(w.message) for w in caught] == ["ours"]
    assert not logging.getLogger("absl").isEnabledFor(logging.WARNING)

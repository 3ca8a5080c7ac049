"""Scale-out: jobs on a real local Dask cluster give the bytes of a local run; datasets written
to and read from a non-local tf.io.gfile filesystem (TensorFlow's in-memory ``ram://``)."""

import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from fixtures.cluster import local_dask_cluster
from PIL import Image
from typer.testing import CliRunner

from lpie_data import storage
from lpie_data.backends import run_items
from lpie_data.cli import app
from lpie_data.errors import DataError, OutputError
from lpie_data.jobs import JobOptions, run_job
from lpie_data.prepare import prepare_sidd
from lpie_data.shards import MANIFEST, read_manifest
from lpie_data.sources import sidd

distributed = pytest.importorskip("distributed")

runner = CliRunner()
FOLDERS = ("0001_001_S6_00100_00060_3200_L", "0002_001_GP_00800_00400_5500_N")


def make_sidd(base: Path) -> Path:
    """A SIDD_Medium_Srgb tree: two scene folders, two frames each, 64x96 8-bit RGB PNGs."""
    root = base / "SIDD_Medium_Srgb"
    rng = np.random.default_rng(7)
    for folder in FOLDERS:
        scene = root / "Data" / folder
        scene.mkdir(parents=True)
        for frame in ("010", "011"):
            gt = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
            noisy = np.clip(gt.astype(int) + rng.integers(-20, 21, gt.shape), 0, 255)
            Image.fromarray(gt).save(scene / f"{folder[:4]}_GT_SRGB_{frame}.PNG", format="PNG")
            Image.fromarray(noisy.astype(np.uint8)).save(
                scene / f"{folder[:4]}_NOISY_SRGB_{frame}.PNG", format="PNG")
    return root


@pytest.fixture(scope="module")
def cluster():
    """A real dask.distributed cluster on loopback: scheduler + 2 worker processes x 1 thread."""
    with local_dask_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def sidd_root(tmp_path_factory):
    return make_sidd(tmp_path_factory.mktemp("sidd"))


def ram_url(name: str) -> str:
    return f"ram://lpie-test-{name}-{uuid.uuid4().hex[:8]}"


def dataset_files(path: str) -> dict[str, bytes]:
    """Every shard and the manifest of a dataset (local or gfile URL), by file name."""
    names = [n for n in storage.listdir(path) if n == MANIFEST or ".tfrecord-" in n]
    files = {}
    for name in names:
        with storage.open_file(storage.join(path, name), "rb") as f:
            files[name] = f.read()
    return files


def prepare(root: Path, out: str, *extra: str):
    return runner.invoke(app, ["prepare", "sidd", "--root", str(root), "--out", out,
                               "--tile", "32", *extra])


@pytest.fixture(scope="module")
def local_sidd(sidd_root, tmp_path_factory):
    """`prepare sidd` run locally in this process: the reference bytes."""
    out = tmp_path_factory.mktemp("local") / "sidd"
    r = prepare(sidd_root, str(out), "--jobs", "1")
    assert r.exit_code == 0, r.output
    return dataset_files(str(out))


def clients_on(cluster) -> set[str]:
    """Ids of the clients that processes outside the cluster keep connected to its scheduler
    (once closes have settled); workers' own clients and the scheduler's are left out."""
    deadline = time.monotonic() + 10
    while True:
        ids = {c for c in cluster.scheduler.clients
               if c != "fire-and-forget" and not c.startswith("Client-worker-")}
        if not ids or time.monotonic() > deadline:
            return ids
        time.sleep(0.05)


def test_prepare_sidd_on_dask_is_byte_identical(cluster, sidd_root, local_sidd, tmp_path):
    out = tmp_path / "sidd-dask"
    r = prepare(sidd_root, str(out), "--backend", "dask", "--scheduler",
                cluster.scheduler_address)
    assert r.exit_code == 0, r.output
    files = dataset_files(str(out))
    assert files == local_sidd and len(files) == 2  # one train shard + manifest.json
    manifest = read_manifest(str(out))
    assert manifest["splits"]["train"]["examples"] == 4 * 2 * 3  # 4 frames x 2x3 tiles
    assert not (out / ".lpie-work").exists()
    assert clients_on(cluster) == set()


def test_dask_progress_callback_and_client_closed(cluster, sidd_root, local_sidd, tmp_path):
    calls: list[tuple[int, int]] = []
    job = JobOptions(backend="dask", scheduler=cluster.scheduler_address,
                     progress=lambda done, total: calls.append((done, total)))
    summary = prepare_sidd(sidd_root, tmp_path / "out", tile=32, job=job)
    assert summary.items == 4 and summary.splits["train"]["examples"] == 24
    assert calls == [(i, 4) for i in range(5)]
    assert dataset_files(str(tmp_path / "out")) == local_sidd
    assert clients_on(cluster) == set()


def test_dask_worker_error_names_the_file_and_closes_client(cluster, tmp_path):
    root = make_sidd(tmp_path)
    bad = root / "Data" / FOLDERS[1] / "0002_NOISY_SRGB_011.PNG"
    bad.write_bytes(bad.read_bytes()[:120])  # header intact, pixel data truncated
    r = prepare(root, str(tmp_path / "out"), "--backend", "dask", "--scheduler",
                cluster.scheduler_address)
    assert r.exit_code == 1
    assert str(bad) in r.stderr and "truncated" in r.stderr
    assert clients_on(cluster) == set()


def test_dask_needs_a_reachable_scheduler(sidd_root, tmp_path):
    import dask

    items, _ = sidd.work_items(sidd_root, 32, 32)
    with pytest.raises(OutputError, match="--scheduler"):
        run_job(str(tmp_path / "a"), "sidd", "prepare sidd", {}, items, sidd.produce,
                JobOptions(backend="dask"))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(OutputError, match="cannot connect to the Dask scheduler"):
        run_job(str(tmp_path / "b"), "sidd", "prepare sidd", {}, items, sidd.produce,
                JobOptions(backend="dask", scheduler=address))


def _can_unshare_mounts() -> bool:
    if not shutil.which("unshare") or not shutil.which("mount"):
        return False
    return subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare_mounts(), reason="needs mount namespaces (unshare -m)")
def test_dask_workers_that_do_not_see_out_are_refused(sidd_root, tmp_path):
    """A worker whose filesystem hides OUT (a tmpfs mounted over it in a private mount
    namespace, like a host without the shared disk) is named before any work is sent."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    scheduler = distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0")
    script = (f"mount -t tmpfs none '{hidden}' && exec '{sys.executable}' -m "
              f"distributed.cli.dask_worker {scheduler.scheduler_address} --nthreads 1 --no-nanny")
    worker = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with pytest.raises(OutputError, match=r"Dask worker\(s\) tcp://.* do not see .*hidden"):
            prepare_sidd(sidd_root, hidden / "out", tile=32,
                         job=JobOptions(backend="dask", scheduler=scheduler.scheduler_address))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        scheduler.close()


def _broken(item):
    raise ZeroDivisionError("division by zero")
    yield  # a generator, like every produce


def test_unexpected_worker_exception_names_the_item(tmp_path):
    from lpie_data.jobs import WorkItem

    todo = [(0, WorkItem("scene/010", "train"))]
    with pytest.raises(DataError, match=r"'scene/010' failed: ZeroDivisionError"):
        list(run_items(lambda produce, item, i, work: len(list(produce(item))), _broken, todo,
                       str(tmp_path), jobs=1, backend="threading"))


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_prepare_sidd_to_ram_and_read_back(backend, sidd_root, local_sidd):
    from lpie_data import iter_pairs, pair_dataset

    out = ram_url(backend)
    r = prepare(sidd_root, out, "--jobs", "2", "--backend", backend)
    assert r.exit_code == 0, r.output
    assert dataset_files(out) == local_sidd
    assert not storage.exists(storage.join(out, ".lpie-work"))

    r = runner.invoke(app, ["inspect", out, "--verify"])
    assert r.exit_code == 0, r.output
    assert "verified" in r.output and "24 records" in r.output

    pairs = list(iter_pairs(out, "train"))
    assert len(pairs) == 24 and pairs[0].input.shape == (32, 32, 3)
    first = next(iter(pair_dataset(out, "train")))
    assert first["key"].numpy().decode() == pairs[0].key
    np.testing.assert_array_equal(first["input"].numpy(), pairs[0].input)
    np.testing.assert_array_equal(first["target"].numpy(), pairs[0].target)


@pytest.mark.filterwarnings("ignore:.*tasks have been successfully executed:UserWarning")
def test_ram_output_from_dask_workers_resumes(cluster, sidd_root, local_sidd):
    """Dask workers cannot see this process's ram://: they send their parts back, which are
    stored as they arrive, so an interrupted run resumes and still ends byte-identical."""
    out = ram_url("dask")

    class Stop(Exception):
        pass

    def stop_after_first(done, total):
        if done >= 1:
            raise Stop

    with pytest.raises(Stop):
        prepare_sidd(sidd_root, out, tile=32, job=JobOptions(
            backend="dask", scheduler=cluster.scheduler_address, progress=stop_after_first))
    assert clients_on(cluster) == set()
    summary = prepare_sidd(sidd_root, out, tile=32,
                           job=JobOptions(backend="dask", scheduler=cluster.scheduler_address))
    assert summary.items_resumed >= 1
    assert dataset_files(out) == local_sidd


def test_synth_on_dask_is_byte_identical(cluster, tmp_path):
    cfg = tmp_path / "synth.toml"
    cfg.write_text("[synth]\ncrop = 32\npairs_per_image = 1\n")
    yy, xx = np.mgrid[-7:8, -7:8]
    psf = np.exp(-(yy**2 + xx**2) / np.array([4.0, 6.0, 8.0])[:, None, None])
    psf = (psf / psf.sum(axis=(1, 2), keepdims=True)).transpose(1, 2, 0).astype(np.float32)
    np.save(tmp_path / "psf.npy", psf)  # small: keeps the blur cheap
    common = ["synth", "--config", str(cfg), "--psf", str(tmp_path / "psf.npy"), "--seed", "3"]
    r = runner.invoke(app, [*common, "--out", str(tmp_path / "local"), "--jobs", "1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*common, "--out", str(tmp_path / "dask"), "--backend", "dask",
                            "--scheduler", cluster.scheduler_address])
    assert r.exit_code == 0, r.output
    local, remote = dataset_files(str(tmp_path / "local")), dataset_files(str(tmp_path / "dask"))
    assert local == remote and len(local) >= 3  # train + validation shards, manifest


def test_remote_paths_fail_with_the_path_named(sidd_root):
    r = prepare(sidd_root, "nosuchfs://bucket/sidd", "--jobs", "1")
    assert r.exit_code == 1
    assert "nosuchfs://bucket/sidd: TensorFlow has no filesystem for nosuchfs://" in r.stderr
    assert "ram://" in r.stderr  # lists what is available

    missing = ram_url("missing")
    r = runner.invoke(app, ["inspect", missing])
    assert r.exit_code == 1 and missing in r.stderr and "no manifest.json" in r.stderr
    with pytest.raises(DataError, match="no such file"), \
            storage.open_file(storage.join(missing, "x.bin"), "rb") as f:
        f.read()

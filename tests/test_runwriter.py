"""--jobs 1 writes items straight into run files that become the shards (lpie_data.runwriter):
the same bytes as per-item parts joined by copying, shards linked instead of copied, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lpie_data.joiner
from lpie_data.errors import DataError
from lpie_data.jobs import WORK_DIR, JobOptions, WorkItem, run_job
from lpie_data.records import Example


def _produce(item: WorkItem):
    """args = (seed, records, fail): ``records`` examples of 16 x 20, none when 0."""
    seed, count, fail = item.args
    if fail:
        raise ValueError("injected")
    rng = np.random.default_rng(seed)
    for i in range(count):
        a = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
        yield Example(f"{item.key}/{i}", a, 255 - a, {"seed": seed})


# One record is ~2.1 KB; shards of 9,000 bytes: runs of up to four records, an item of six
# records is cut by the plan (a part file of its own), an item of none is skipped; two splits
# interleave.
COUNTS = [2, 1, 1, 3, 0, 6, 2, 2, 1, 4, 1]
SHARDS = 9_000


def _items(fail: int | None = None) -> list[WorkItem]:
    return [WorkItem(f"item{i}", "validation" if i % 4 == 3 else "train", (i, n, i == fail))
            for i, n in enumerate(COUNTS)]


def _files(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


@pytest.fixture
def links(monkeypatch):
    """The joiner's hard links, recorded (the real ones are made)."""
    made: list[tuple[str, str]] = []
    real = lpie_data.joiner._link

    def link(src: str, dst: str) -> bool:
        made.append((src, dst))
        return real(src, dst)

    monkeypatch.setattr(lpie_data.joiner, "_link", link)
    return made


def test_run_files_become_the_shards_with_the_bytes_of_joined_parts(tmp_path, links):
    files = {}
    for jobs, backend in ((1, "loky"), (2, "threading")):
        links.clear()
        out = tmp_path / f"out{jobs}"
        run_job(str(out), "toy", "toy make", {}, _items(), _produce,
                JobOptions(jobs=jobs, backend=backend, shard_bytes=SHARDS))
        files[jobs] = _files(out)
        if jobs == 1:
            linked_runs = [src for src, _ in links if "/run-" in src]
    shards = [n for n in files[1] if ".tfrecord-" in n]
    assert len(shards) >= 5
    assert files[1] == files[2]  # names, bytes, manifest (with its sha256s) alike
    # Every shard but the two cut from item5 (six records: larger than a shard, so a part file
    # of its own, copied by record ranges) is a run file, linked whole: nothing copied.
    assert len(linked_runs) == len(shards) - 2
    assert len(set(linked_runs)) == len(linked_runs)


def test_killed_then_resumed_from_run_files_gives_the_same_bytes(tmp_path, links):
    out, ref = tmp_path / "out", tmp_path / "ref"
    with pytest.raises(DataError, match="item7"):
        run_job(str(out), "toy", "toy make", {}, _items(fail=7), _produce,
                JobOptions(jobs=1, shard_bytes=SHARDS))
    sides = [json.loads(p.read_text()) for p in sorted((out / WORK_DIR).glob("part-*.json"))]
    assert len(sides) == 7 and sum("file" in s for s in sides) >= 5  # items in run files
    runs = {s["file"] for s in sides if "file" in s}
    assert not any((out / WORK_DIR / (r + ".sha256")).exists() for r in runs
                   if r == sides[-1].get("file"))  # the run being written was not closed
    summary = run_job(str(out), "toy", "toy make", {}, _items(), _produce,
                      JobOptions(jobs=1, shard_bytes=SHARDS))
    assert summary.items_resumed == 7
    run_job(str(ref), "toy", "toy make", {}, _items(), _produce,
            JobOptions(jobs=1, shard_bytes=SHARDS))
    assert _files(out) == _files(ref)


def test_an_item_redone_keeps_the_run_file_of_the_items_kept(tmp_path):
    """A redone item must not get a run file name in use by items that are kept."""
    out = tmp_path / "out"
    with pytest.raises(DataError):
        run_job(str(out), "toy", "toy make", {}, _items(fail=2), _produce,
                JobOptions(jobs=1, shard_bytes=SHARDS))
    (out / WORK_DIR / "part-000000.json").write_text("{damaged")  # item0 redone, item1 kept
    run_job(str(out), "toy", "toy make", {}, _items(), _produce,
            JobOptions(jobs=1, shard_bytes=SHARDS))
    ref = tmp_path / "ref"
    run_job(str(ref), "toy", "toy make", {}, _items(), _produce,
            JobOptions(jobs=1, shard_bytes=SHARDS))
    assert _files(out) == _files(ref)


def test_a_run_is_hashed_beside_its_writing_one_item_at_a_time(tmp_path, monkeypatch):
    """The sha256 runs on its own thread, but an item is not written before the previous one's
    hashing ended (a backlog would keep every waiting item's images in memory), and the run's
    recorded sha256 is that of its bytes."""
    import hashlib
    import threading
    import time

    import lpie_data.runwriter as runwriter
    from lpie_data.parts import write_part

    events: list[tuple[str, int]] = []
    real = runwriter._update

    def slow_update(digest, pieces):
        events.append(("hash start", threading.get_ident()))
        time.sleep(0.05)
        real(digest, pieces)
        events.append(("hash end", threading.get_ident()))

    monkeypatch.setattr(runwriter, "_update", slow_update)
    writer = runwriter.RunWriter(SHARDS, write_part)
    work = tmp_path / "work"
    work.mkdir()
    items = [item for item in _items() if item.split == "train" and item.args[1] in (1, 2)][:3]
    for index, item in enumerate(items):
        writer.write(_produce(item), item, index, str(work))
        events.append(("written", threading.get_ident()))
    writer.close()
    kinds = [k for k, _ in events]
    ends = [i for i, k in enumerate(kinds) if k == "hash end"]
    written = [i for i, k in enumerate(kinds) if k == "written"]
    assert len(ends) == len(written) == 3
    assert all(written[j] > ends[j - 1] for j in (1, 2))  # item j waited for item j-1's hash
    assert written[0] < ends[0]  # the first item's hash was still running when it was written
    hashing = {t for k, t in events if k.startswith("hash")}
    assert threading.get_ident() not in hashing
    run = next(p for p in work.iterdir() if p.suffix == ".rec")
    recorded = json.loads((work / (run.name + ".sha256")).read_text())["sha256"]
    assert recorded == hashlib.sha256(run.read_bytes()).hexdigest()

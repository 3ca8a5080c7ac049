"""The data path's writer: images written without copies, parts hashed as written, --jobs 1
producing on one thread and writing on another, shards joined while the job runs; the UDC
encoder's fused passes."""

import hashlib
import json
import threading

import numpy as np
import pytest

import lpie_data.parts
from lpie_data.errors import DataError
from lpie_data.jobs import JobOptions, WorkItem, run_job
from lpie_data.joiner import SplitJoiner
from lpie_data.parts import write_part
from lpie_data.record_reader import read_records
from lpie_data.records import Example, encode_example, example_pieces
from lpie_data.shards import Part, RecordInfo, plan_split


def _example(key: str, seed: int, shape=(30, 40, 3)) -> Example:
    a = np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)
    return Example(key, a, 65535 - a, {"source": key, "box": [0, 0, *shape[:2]]})


def test_contiguous_images_are_written_from_their_own_memory():
    ex = _example("k", 0, (200, 300, 3))  # > 64 KB: a piece of its own
    pieces = example_pieces(ex)
    assert any(isinstance(p, np.ndarray) and np.shares_memory(p, ex.input) for p in pieces)
    copy = Example("k", ex.input.copy(), ex.target.copy(), ex.meta)
    assert b"".join(pieces) == encode_example(copy)
    strided = Example("k", ex.input[:, ::2], ex.target[:, ::2], ex.meta)
    assert not any(isinstance(p, np.ndarray) and np.shares_memory(p, ex.input)
                   for p in example_pieces(strided))  # copied once, as C-order bytes


@pytest.mark.parametrize("threshold", [0, 1, 30_000, 10**9])
def test_part_hash_written_on_the_way_equals_the_file_hash(tmp_path, monkeypatch, threshold):
    # Each record is ~14.5 KB: 30 000 starts hashing after the third record (catching up).
    monkeypatch.setattr(lpie_data.parts, "HASH_IN_WORKER_BYTES", threshold)
    examples = [_example(f"k{i}", i, (40, 60, 3)) for i in range(5)]
    item = WorkItem("item", "train", None)
    assert write_part(iter(examples), item, 7, str(tmp_path)) == 7
    data = (tmp_path / "part-000007.rec").read_bytes()
    side = json.loads((tmp_path / "part-000007.json").read_text())
    assert sum(r["size"] for r in side["records"]) == len(data)
    expected = hashlib.sha256(data).hexdigest() if threshold <= len(data) else None
    assert side["sha256"] == expected
    with open(tmp_path / "part-000007.rec", "rb") as f:
        assert len(list(read_records(f))) == 5


def _produce(item: WorkItem):
    seed, fail = item.args
    if fail:
        raise ValueError("injected")
    for i in range(2):
        yield _example(f"{item.key}/{i}", seed * 10 + i)


def test_producer_error_names_the_item_and_leaves_no_thread(tmp_path):
    items = [WorkItem(f"item{i}", "train", (i, i == 2)) for i in range(4)]
    with pytest.raises(DataError, match=r"work item 'item2' failed: ValueError: injected"):
        run_job(str(tmp_path / "out"), "toy", "toy make", {}, items, _produce, JobOptions(jobs=1))
    assert not [t for t in threading.enumerate() if t.name == "lpie-produce"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_jobs1_overlapped_equals_jobs2(tmp_path):
    items = [WorkItem(f"item{i}", "train" if i % 3 else "test", (i, False)) for i in range(7)]
    files = {}
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        run_job(str(out), "toy", "toy make", {}, items, _produce,
                JobOptions(jobs=jobs, shard_bytes=40_000))
        files[jobs] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert len([n for n in files[1] if ".tfrecord-" in n]) > 3
    assert files[1] == files[2]


@pytest.mark.parametrize("sizes", [[[5, 5], [3], [9], [], [2, 2, 2]], [[12], [1], [1, 20, 1]],
                                   [[4], [4], [4]]])
def test_joiner_follows_the_plan_one_part_at_a_time(tmp_path, sizes):
    parts = []
    for i, record_sizes in enumerate(sizes):
        path = tmp_path / f"part-{i}"
        path.write_bytes(bytes(range(i, i + sum(record_sizes))))
        parts.append(Part(str(path), "train", "uint8", "uint8", tuple(
            RecordInfo(f"p{i}r{j}", s, (0.0, 1.0), (0.0, 1.0))
            for j, s in enumerate(record_sizes))))
    joiner = SplitJoiner(str(tmp_path), "toy", "train", 10)
    for part in parts:
        joiner.add(part)
    entry = joiner.finish()
    plan = plan_split(sizes, 10)
    assert len(entry["shards"]) == len(plan)
    flat = [(i, j) for i, s in enumerate(sizes) for j in range(len(s))]
    for shard, segments in zip(entry["shards"], plan, strict=True):
        want = b"".join((tmp_path / f"part-{i}").read_bytes()[sum(sizes[i][:a]):
                                                              sum(sizes[i][:b])]
                        for i, a, b in segments)
        got = (tmp_path / shard["file"]).read_bytes()
        assert got == want and shard["sha256"] == hashlib.sha256(want).hexdigest()
    assert sum(s["examples"] for s in entry["shards"]) == len(flat)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_udc_encoder_in_fewer_passes_gives_the_same_values():
    from lpie_data.sources.udc import reinhard_uint16
    from lpie_data.valuespace import encode, reinhard

    rng = np.random.default_rng(0)
    for scale in (1e-3, 1.0, 500.0, 3e38):
        x = (scale * rng.random((40, 50, 3), dtype=np.float32) ** 6).astype(np.float32)
        x[0, :5, 0] = [0.0, -0.0, 1e-45, 3.4e38, 0.25]
        whole = np.zeros((60, 90, 3), np.float32)
        whole[10:50, 20:70] = x
        for arr in (x, whole[10:50, 20:70]):  # contiguous, and a crop of a larger image
            got = reinhard_uint16(arr)
            assert got.dtype == np.uint16
            np.testing.assert_array_equal(got, encode(reinhard(arr), "reinhard"))


def test_producer_runs_one_whole_item_ahead_of_the_writer(tmp_path):
    """While item i is written, item i + 1 is produced to its end (with a hand-over of one
    example it stopped after one example), but item i + 2 is not started (memory bound)."""
    from lpie_data.overlap import run_overlapped

    log: list[tuple[str, int]] = []
    lock = threading.Lock()
    produced = [threading.Event() for _ in range(5)]

    def note(event: str, i: int) -> None:
        with lock:
            log.append((event, i))

    def produce(item: WorkItem):
        note("produce-start", item.args)
        for k in range(3):
            yield _example(f"{item.key}/{k}", item.args * 10 + k)
        note("produce-end", item.args)
        produced[item.args].set()

    def write(examples, item: WorkItem, index: int, work: str) -> int:
        note("write-start", index)
        n = sum(1 for _ in examples)
        if index + 1 < len(produced):  # the next item is made while this one is still open
            assert produced[index + 1].wait(timeout=10), f"item {index + 1} not produced ahead"
        note("write-end", index)
        return n

    items = [(i, WorkItem(f"item{i}", "train", i)) for i in range(5)]
    assert list(run_overlapped(produce, write, items, str(tmp_path))) == [3] * 5
    order = {event: n for n, event in enumerate(log)}
    for i in range(3):
        assert order[("produce-end", i + 1)] < order[("write-end", i)]
        assert order[("produce-start", i + 2)] > order[("write-end", i)]
    assert not [t for t in threading.enumerate() if t.name == "lpie-produce"]

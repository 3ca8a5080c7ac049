"""Shards and manifest: byte-sized, named, checked, verified; both readers agree."""

import hashlib
import json
import os
import zlib

import numpy as np
import pytest

import lpie_data
from lpie_data import storage
from lpie_data.dataset import iter_pairs, pair_dataset
from lpie_data.errors import DataError
from lpie_data.jobs import JobOptions, WorkItem, run_job
from lpie_data.records import Example, encode_example, frame_record
from lpie_data.shards import (
    FORMAT_VERSION,
    Part,
    RecordInfo,
    assemble_split,
    file_sha256,
    plan_shards,
    plan_split,
    read_manifest,
    shard_name,
    verify,
)


def make_examples(item: WorkItem):
    """Test producer: args = (dtype, count, (h, w), key_prefix or None)."""
    dtype, count, (h, w), prefix = item.args
    rng = np.random.default_rng(zlib.crc32(item.key.encode()))
    for i in range(count):
        if dtype == "uint8":
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif dtype == "uint16":
            a = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)
        else:
            a = rng.uniform(-0.5, 3.0, (h, w, 3)).astype(dtype)
        b = (a // 2) if dtype.startswith("uint") else (a * 0.5).astype(dtype)
        key = f"{prefix or item.key}/{i:03d}"
        yield Example(key, a, b, {"source": f"{item.key}.png", "box": [0, 0, h, w], "i": i})


def _job(out, items, **kw):
    return run_job(str(out), "toy", "toy make", {"n": len(items)}, items, make_examples,
                   JobOptions(jobs=1, **kw))


def test_plan_shards_by_bytes():
    assert plan_shards([10, 10, 10, 10], 20) == [(0, 2), (2, 4)]
    assert plan_shards([10, 10, 10], 25) == [(0, 2), (2, 3)]
    assert plan_shards([50, 5, 5], 20) == [(0, 1), (1, 3)]  # an oversized record stands alone
    assert plan_shards([5], 1) == [(0, 1)]
    assert plan_shards([], 10) == []
    assert shard_name("sidd", "train", 3, 12) == "sidd-train.tfrecord-00003-of-00012"


def test_plan_split_packs_whole_parts_and_cuts_big_ones():
    # Parts of 1, 1, 1, 5, 0, 1, 2 records of 10 bytes; shards of at most 35 bytes.
    parts = [[10] * n for n in (1, 1, 1, 5, 0, 1, 2)]
    assert plan_split(parts, 35) == [
        [(0, 0, 1), (1, 0, 1), (2, 0, 1)],  # whole parts packed while they fit
        [(3, 0, 3)], [(3, 3, 5)],  # a part over the limit is cut at record boundaries
        [(5, 0, 1), (6, 0, 2)],  # the empty part 4 is skipped
    ]
    assert plan_split([[30], [30], [30]], 35) == [[(0, 0, 1)], [(1, 0, 1)], [(2, 0, 1)]]
    assert plan_split([[50, 50]], 35) == [[(0, 0, 1)], [(0, 1, 2)]]
    assert plan_split([[], []], 35) == []


def test_shards_sized_by_bytes_and_named(tmp_path):
    counts = (1, 1, 1, 5, 1, 2)
    items = [WorkItem(f"item{i}", "train", ("uint8", n, (16, 16), None))
             for i, n in enumerate(counts)]
    record = len(frame_record(encode_example(next(make_examples(items[0])))))
    shard_bytes = record * 3 + record // 2  # at most three records per shard
    out = tmp_path / "ds"
    summary = _job(out, items, shard_bytes=shard_bytes)
    m = read_manifest(str(out))
    shards = m["splits"]["train"]["shards"]
    assert [s["examples"] for s in shards] == [3, 3, 2, 3]
    assert [s["file"] for s in shards] == [f"toy-train.tfrecord-{i:05d}-of-00004"
                                           for i in range(4)]
    for s in shards:
        data = (out / s["file"]).read_bytes()
        assert s["bytes"] == len(data) <= shard_bytes
        assert s["sha256"] == hashlib.sha256(data).hexdigest()
    assert summary.splits == {"train": {"examples": 11, "bytes": sum(s["bytes"] for s in shards)}}
    assert sorted(os.listdir(out)) == sorted(["manifest.json", "dataset_info.json",
                                              "features.json", *(s["file"] for s in shards)])
    # Stored order is item order, then the producer's order inside an item.
    keys = [p.key for p in iter_pairs(str(out), "train")]
    assert keys == [f"item{i}/{j:03d}" for i, n in enumerate(counts) for j in range(n)]


def _part(path, split, examples, sha=False):
    """A part file as a worker leaves it, and its Part."""
    data = [frame_record(encode_example(ex)) for ex in examples]
    path.write_bytes(b"".join(data))
    recs = tuple(RecordInfo(ex.key, len(d), (0.0, 1.0), (0.0, 1.0))
                 for ex, d in zip(examples, data, strict=True))
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if sha else None
    return Part(str(path), split, "uint8", "uint8", recs, digest)


def test_whole_part_shards_are_hard_links(tmp_path):
    exs = list(make_examples(WorkItem("a", "train", ("uint8", 4, (16, 16), None))))
    parts = [_part(tmp_path / "p0", "train", exs[:2], sha=True),
             _part(tmp_path / "p1", "train", exs[2:3]),  # no worker hash: hashed here
             _part(tmp_path / "p2", "train", exs[3:])]
    out = tmp_path / "out"
    out.mkdir()
    size = parts[0].size
    entry = assemble_split(str(out), "toy", "train", parts, shard_bytes=size)
    shards = [out / s["file"] for s in entry["shards"]]
    assert [s["examples"] for s in entry["shards"]] == [2, 2]
    assert shards[0].stat().st_ino == (tmp_path / "p0").stat().st_ino  # linked, not copied
    assert shards[1].read_bytes() == (tmp_path / "p1").read_bytes() + (
        tmp_path / "p2").read_bytes()
    for f, s in zip(shards, entry["shards"], strict=True):
        assert s["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert file_sha256(str(shards[1])) == entry["shards"][1]["sha256"]


def test_manifest_fields(tmp_path):
    items = [WorkItem("a", "train", ("uint8", 2, (8, 8), None)),
             WorkItem("b", "validation", ("float16", 3, (8, 4), None))]
    out = tmp_path / "ds"
    run_job(str(out), "toy", "toy make", {"alpha": 1, "path": "/x"}, items, make_examples,
            JobOptions(jobs=1), extra_manifest={"notes": "hello"})
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "lpie-pairs" and m["format_version"] == FORMAT_VERSION
    assert m["lpie_version"] == lpie_data.__version__
    assert m["name"] == "toy" and m["command"] == "toy make"
    assert m["arguments"] == {"alpha": 1, "path": "/x"}
    assert m["notes"] == "hello"
    assert set(m["splits"]) == {"train", "validation"}
    tr, va = m["splits"]["train"], m["splits"]["validation"]
    assert (tr["examples"], va["examples"]) == (2, 3)
    assert (tr["input_dtype"], tr["target_dtype"]) == ("uint8", "uint8")
    assert (va["input_dtype"], va["target_dtype"]) == ("float16", "float16")
    assert 0 <= tr["input_range"][0] <= tr["input_range"][1] <= 1
    assert va["input_range"][1] > 1  # float data is stored as it is, not clipped
    for entry in (tr, va):
        assert set(entry["shards"][0]) == {"file", "examples", "bytes", "sha256"}
        assert entry["bytes"] == sum(s["bytes"] for s in entry["shards"])


def test_manifest_written_last(tmp_path, monkeypatch):
    finished = []
    real_rename = storage.rename

    def spy(src, dst):  # records the order in which files get their final names
        real_rename(src, dst)
        finished.append(os.path.basename(dst))

    monkeypatch.setattr(storage, "rename", spy)
    items = [WorkItem(f"i{i}", "train", ("uint8", 2, (8, 8), None)) for i in range(3)]
    _job(tmp_path / "ds", items, shard_bytes=1)
    shard_files = [f for f in finished if ".tfrecord-" in f]
    assert len(shard_files) == 6
    assert finished[-1] == "manifest.json"
    assert finished.index("manifest.json") > max(finished.index(f) for f in shard_files)


def test_duplicate_keys_refused(tmp_path):
    items = [WorkItem("a", "train", ("uint8", 2, (8, 8), "same")),
             WorkItem("b", "train", ("uint8", 2, (8, 8), "same"))]
    with pytest.raises(DataError, match="duplicate example key 'same/000'"):
        _job(tmp_path / "ds", items)
    assert not (tmp_path / "ds" / "manifest.json").exists()
    with pytest.raises(DataError, match="duplicate work item 'a'"):
        _job(tmp_path / "ds2", [items[0], items[0]])


def test_zero_examples_refused(tmp_path):
    with pytest.raises(DataError, match="no examples"):
        _job(tmp_path / "ds", [WorkItem("a", "train", ("uint8", 0, (8, 8), None))])
    assert not (tmp_path / "ds" / "manifest.json").exists()
    with pytest.raises(DataError, match="no input items"):
        _job(tmp_path / "ds2", [])


def test_mixed_dtypes_in_a_split_refused(tmp_path):
    items = [WorkItem("a", "train", ("uint8", 1, (8, 8), None)),
             WorkItem("b", "train", ("float32", 1, (8, 8), None))]
    with pytest.raises(DataError, match="mixes storage dtypes"):
        _job(tmp_path / "ds", items)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A dataset with every storage dtype, one split each."""
    out = tmp_path_factory.mktemp("mixed") / "ds"
    items = [WorkItem(f"{d}-{i}", d, (d, 2, (6 + i, 10), None))
             for d in ("uint8", "uint16", "float16", "float32") for i in range(2)]
    _job(out, items, shard_bytes=1500)
    return str(out)


@pytest.mark.parametrize("split", ["uint8", "uint16", "float16", "float32"])
def test_iter_pairs_and_pair_dataset_agree(mixed, split):
    ref = {p.key: p for p in iter_pairs(mixed, split)}
    assert len(ref) == 4
    got = list(pair_dataset(mixed, split).as_numpy_iterator())
    # Shards are interleaved (round robin), so the order is deterministic but not stored order.
    keys = [g["key"].decode() for g in got]
    assert sorted(keys) == sorted(ref) and len(keys) == len(ref)
    assert keys == [g["key"].decode() for g in pair_dataset(mixed, split).as_numpy_iterator()]
    for g in got:
        p = ref[g["key"].decode()]
        assert g["input"].dtype == g["target"].dtype == np.float32
        np.testing.assert_array_equal(g["input"], p.input)
        np.testing.assert_array_equal(g["target"], p.target)
        assert json.loads(g["meta"]) == p.meta
        assert p.input.dtype == np.float32
    if split.startswith("uint"):
        allv = np.concatenate([p.input.ravel() for p in ref.values()])
        assert 0.0 <= allv.min() and allv.max() <= 1.0 and allv.max() > 0.99


def test_pair_dataset_inside_map_and_shuffled_files(mixed):
    ds = pair_dataset(mixed, "uint8", shuffle_files=True, seed=1)
    keys = sorted(k.decode() for k in ds.map(lambda d: d["key"]).as_numpy_iterator())
    assert keys == sorted(p.key for p in iter_pairs(mixed, "uint8"))


def test_reading_errors(mixed, tmp_path):
    with pytest.raises(DataError, match="no split 'test' \\(splits: float16, float32, uint16"):
        list(iter_pairs(mixed, "test"))
    with pytest.raises(DataError, match="no manifest.json"):
        list(iter_pairs(str(tmp_path), "train"))
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "lpie-pairs",
                                                        "format_version": 99}))
    with pytest.raises(DataError, match="format version 99 is newer"):
        read_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(DataError, match="not an lpie pair-dataset manifest"):
        read_manifest(str(tmp_path))


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_verify_ok_and_catches_damage(mixed, tmp_path):
    assert verify(mixed) == {"float16": 4, "float32": 4, "uint16": 4, "uint8": 4}
    m = read_manifest(mixed)
    victim = m["splits"]["uint16"]["shards"][1]["file"]

    flipped = _copy(mixed, tmp_path / "flip")
    data = bytearray((flipped / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (flipped / victim).write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{victim}: data checksum mismatch"):
        verify(str(flipped))

    truncated = _copy(mixed, tmp_path / "trunc")
    (truncated / victim).write_bytes((truncated / victim).read_bytes()[:-7])
    with pytest.raises(DataError, match=f"{victim}: truncated record"):
        verify(str(truncated))

    missing = _copy(mixed, tmp_path / "missing")
    (missing / victim).unlink()
    with pytest.raises(DataError, match=f"{victim}: shard listed in the manifest is missing"):
        verify(str(missing))

    # A shard replaced by another valid shard: records parse, only the sha256 tells.
    swapped = _copy(mixed, tmp_path / "swap")
    other = m["splits"]["uint16"]["shards"][0]["file"]
    (swapped / victim).write_bytes((swapped / other).read_bytes())
    with pytest.raises(DataError, match=f"{victim}: sha256 or size does not match"):
        verify(str(swapped))


def test_overwrite_never_leaves_an_earlier_datasets_tfds_description(tmp_path):
    """TFDS describes a dataset whose splits share their dtypes. Remade with --overwrite into
    splits of different dtypes, the folder must not keep the earlier dataset's TFDS files (they
    would describe shards that are gone)."""
    from lpie_data.tfds_info import DATASET_INFO, FEATURES, write_tfds_info

    out = tmp_path / "out"
    same = [WorkItem("a", "train", ("uint8", 2, (8, 8), None)),
            WorkItem("b", "validation", ("uint8", 1, (8, 8), None))]
    _job(out, same)
    assert (out / FEATURES).exists() and (out / DATASET_INFO).exists()
    mixed = [same[0], WorkItem("c", "validation", ("uint16", 1, (8, 8), None))]
    _job(out, mixed, overwrite=True)
    assert read_manifest(str(out))["splits"]["validation"]["input_dtype"] == "uint16"
    assert not (out / FEATURES).exists() and not (out / DATASET_INFO).exists()
    with pytest.raises(DataError, match="splits store different dtypes"):
        write_tfds_info(str(out))
    # A description an older lpie left goes whenever the manifest is written without one.
    (out / FEATURES).write_text("{}")
    assert write_tfds_info(str(out), skip_unsupported=True) is None
    assert not (out / FEATURES).exists()

"""Record encoding: TensorFlow reads our hand-encoded Examples exactly; bytes are deterministic."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf

from lpie_data.errors import DataError
from lpie_data.record_reader import example_to_pair, read_records
from lpie_data.records import SCALES, Example, encode_example, frame_record, image_bytes

DTYPES = ["uint8", "uint16", "float16", "float32"]


def _image(dtype: str, shape=(5, 7, 3), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype.startswith("uint"):
        top = np.iinfo(dtype).max
        arr = rng.integers(0, top + 1, shape, dtype=np.int64).astype(dtype)
        arr.flat[0], arr.flat[1] = 0, top  # the extremes of the range
        return arr
    return (rng.normal(0, 100, shape)).astype(dtype)  # floats: any value, also > 1 and < 0


def _example(dtype: str, key="a/b/00000_00032", shape=(5, 7, 3), seed=0) -> Example:
    return Example(key, _image(dtype, shape, seed), _image(dtype, shape, seed + 1),
                   {"source": "x/NOISY.PNG", "box": [0, 32, shape[0], shape[1]], "z": "é"})


SPEC = {
    "key": tf.io.FixedLenFeature([], tf.string),
    "input": tf.io.FixedLenFeature([], tf.string),
    "target": tf.io.FixedLenFeature([], tf.string),
    "input_dtype": tf.io.FixedLenFeature([], tf.string),
    "target_dtype": tf.io.FixedLenFeature([], tf.string),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "meta": tf.io.FixedLenFeature([], tf.string),
}


@pytest.mark.parametrize("dtype", DTYPES)
def test_tensorflow_reads_what_was_written(tmp_path, dtype):
    examples = [_example(dtype, f"k{i}", shape=(3 + i, 4, 3), seed=i) for i in range(3)]
    path = tmp_path / "x.tfrecord"
    path.write_bytes(b"".join(frame_record(encode_example(ex)) for ex in examples))

    ds = tf.data.TFRecordDataset(str(path)).map(lambda r: tf.io.parse_single_example(r, SPEC))
    got = list(ds.as_numpy_iterator())
    assert len(got) == len(examples)
    for ex, f in zip(examples, got, strict=True):
        assert f["key"].decode() == ex.key
        assert f["input_dtype"].decode() == f["target_dtype"].decode() == dtype
        assert (f["height"], f["width"]) == ex.input.shape[:2]
        tf_dtype = tf.dtypes.as_dtype(dtype)
        for which in ("input", "target"):
            arr = tf.io.decode_raw(f[which], tf_dtype).numpy().reshape(ex.input.shape)
            np.testing.assert_array_equal(arr, getattr(ex, which))
        assert json.loads(f["meta"]) == ex.meta


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_message_as_tensorflows_own_example(dtype):
    # Byte equality with protobuf is not the contract (its deterministic map order differs
    # between protobuf implementations); our order is sorted keys, fixed by construction.
    ex = _example(dtype)
    h, w, _ = ex.input.shape
    meta = json.dumps(ex.meta, sort_keys=True, separators=(",", ":")).encode()
    b = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))  # noqa: E731
    i = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))  # noqa: E731
    proto = tf.train.Example(features=tf.train.Features(feature={
        "key": b(ex.key.encode()), "input": b(ex.input.tobytes()), "target": b(ex.target.tobytes()),
        "input_dtype": b(dtype.encode()), "target_dtype": b(dtype.encode()),
        "height": i(h), "width": i(w), "meta": b(meta),
    }))
    ours = tf.train.Example.FromString(encode_example(ex))
    assert ours == proto
    assert len(encode_example(ex)) == len(proto.SerializeToString(deterministic=True))


def test_framing_equals_tfrecordwriter(tmp_path):
    payloads = [encode_example(_example("uint8", f"k{i}", seed=i)) for i in range(3)] + [b""]
    path = tmp_path / "tf.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        for p in payloads:
            w.write(p)
    assert path.read_bytes() == b"".join(frame_record(p) for p in payloads)
    assert list(read_records(io.BytesIO(path.read_bytes()))) == payloads


def test_encoding_is_deterministic_and_independent_of_memory_layout():
    ex = _example("uint16", shape=(6, 8, 3))
    first = encode_example(ex)
    # A strided view (e.g. a tile of a larger image) encodes to the same bytes as a copy.
    big = np.zeros((10, 20, 3), np.uint16)
    big[2:8, 5:13] = ex.input
    big_t = np.zeros((10, 20, 3), np.uint16)
    big_t[2:8, 5:13] = ex.target
    view = Example(ex.key, big[2:8, 5:13], big_t[2:8, 5:13], dict(reversed(ex.meta.items())))
    assert encode_example(view) == first == encode_example(ex)


@pytest.mark.parametrize("dtype", DTYPES)
def test_example_to_pair_scales(dtype):
    ex = _example(dtype)
    pair = example_to_pair(encode_example(ex))
    assert pair.key == ex.key and pair.meta == ex.meta
    for got, want in ((pair.input, ex.input), (pair.target, ex.target)):
        assert got.dtype == np.float32 and got.shape == want.shape
        expected = want.astype(np.float32) * np.float32(SCALES[dtype])
        np.testing.assert_array_equal(got, expected)
    if dtype.startswith("uint"):
        assert pair.input.min() == 0.0 and pair.input.max() == 1.0


@pytest.mark.parametrize(
    "inp, tgt, message",
    [
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), "H x W x 3"),
        (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), "H x W x 3"),
        (np.zeros((4, 4, 3), np.float64), np.zeros((4, 4, 3), np.float64), "dtype float64"),
        (np.zeros((4, 4, 3), np.int32), np.zeros((4, 4, 3), np.int32), "dtype int32"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8), "differ"),
    ],
)
def test_bad_examples_refused(inp, tgt, message):
    with pytest.raises(DataError, match=message) as e:
        encode_example(Example("bad-key", inp, tgt, {"source": "s", "box": [0, 0, 4, 4]}))
    assert "bad-key" in str(e.value)


def test_read_records_detects_damage():
    data = b"".join(frame_record(encode_example(_example("uint8", f"k{i}"))) for i in range(2))
    flipped = bytearray(data)
    flipped[len(data) // 4] ^= 1  # inside the first record's payload
    with pytest.raises(DataError, match=r"shard-x: data checksum mismatch at record 0"):
        list(read_records(io.BytesIO(bytes(flipped)), "shard-x"))
    bad_len = bytearray(data)
    bad_len[len(data) // 2 + 2] ^= 1  # second record's length field
    with pytest.raises(DataError, match="corrupt length at record 1"):
        list(read_records(io.BytesIO(bytes(bad_len)), "s"))
    with pytest.raises(DataError, match="truncated record 1"):
        list(read_records(io.BytesIO(data[:-10]), "s"))
    with pytest.raises(DataError, match="truncated record header at record 1"):
        list(read_records(io.BytesIO(data[: len(data) // 2 + 5]), "s"))


def test_malformed_record_is_a_data_error():
    with pytest.raises(DataError, match="malformed record"):
        example_to_pair(b"")


def test_image_bytes_copies_at_most_once():
    b = bytes(range(72))
    arr = np.frombuffer(b, np.uint8).reshape(4, 6, 3)
    assert image_bytes(arr) is b  # an array over a bytes object: used as it is
    assert image_bytes(arr[1:3]) == arr[1:3].tobytes()  # part of it: copied
    assert image_bytes(arr[:, 2:4]) == np.ascontiguousarray(arr[:, 2:4]).tobytes()  # strided
    assert image_bytes(arr[::-1]) == arr[::-1].tobytes()
    assert image_bytes(np.frombuffer(b, np.uint16).reshape(3, 4, 3)) is b
    ex = Example("k", arr, arr[::-1], {"source": "s", "box": [0, 0, 4, 6]})
    np.testing.assert_array_equal(example_to_pair(encode_example(ex)).target,
                                  arr[::-1].astype(np.float32) * np.float32(SCALES["uint8"]))


def test_big_endian_arrays_are_stored_little_endian():
    little = np.arange(4 * 5 * 3, dtype="<u2").reshape(4, 5, 3) * 1000
    big = little.astype(">u2")
    assert big.dtype.name == "uint16"  # same dtype name, other byte order
    a = Example("k", little, little, {"source": "s", "box": [0, 0, 4, 5]})
    b = Example("k", big, big, {"source": "s", "box": [0, 0, 4, 5]})
    assert encode_example(a) == encode_example(b)

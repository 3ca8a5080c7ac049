"""Reading pair datasets: a plain Python iterator and an in-graph ``tf.data`` pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lpie_data import storage
from lpie_data.errors import DataError
from lpie_data.record_reader import Pair, example_to_pair, read_records
from lpie_data.records import SCALES
from lpie_data.shards import read_manifest, split_entry


def iter_pairs(path: str, split: str) -> Iterator[Pair]:
    """Yield every :class:`Pair` of ``split`` in stored order (float32 H x W x 3 images).

    Raises DataError for a missing dataset or split, or a corrupt record (naming the shard).
    """
    path = str(path)
    entry = split_entry(read_manifest(path), split, path)
    for shard in entry["shards"]:
        fpath = storage.join(path, shard["file"])
        try:
            f = storage.open_file(fpath, "rb")
        except OSError as e:
            raise DataError(f"{fpath}: cannot read shard ({e.strerror or e})") from None
        with f:
            for data in read_records(f, fpath):
                yield example_to_pair(data)


def split_info(path: str, split: str) -> dict[str, Any]:
    """The manifest entry of one split (examples, dtypes, shards, value ranges)."""
    return split_entry(read_manifest(str(path)), split, str(path))


def pair_dataset(
    path: str,
    split: str,
    *,
    num_parallel_reads: int | None = None,
    shuffle_files: bool = False,
    seed: int | None = None,
    deterministic: bool = True,
) -> Any:
    """A ``tf.data.Dataset`` of dicts ``{"key": string, "input": float32 [H, W, 3],
    "target": float32 [H, W, 3], "meta": string (JSON)}``, parsed and decoded in-graph.

    Shards are read in parallel, interleaved: one record from each of up to 8 shards in turn,
    so the order is deterministic (unless ``deterministic=False``) but is the stored order only
    when the split has a single shard; use ``key`` to match records. With ``shuffle_files`` the
    shard order is shuffled with ``seed``. Integer-stored images are scaled to [0, 1].
    """
    import tensorflow as tf

    path = str(path)
    entry = split_entry(read_manifest(path), split, path)
    files = [storage.join(path, s["file"]) for s in entry["shards"]]
    in_dtype, tgt_dtype = entry["input_dtype"], entry["target_dtype"]
    if num_parallel_reads is None:
        num_parallel_reads = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 8),
        num_parallel_calls=num_parallel_reads,
        deterministic=deterministic,
    )
    spec = {
        "key": tf.io.FixedLenFeature([], tf.string),
        "input": tf.io.FixedLenFeature([], tf.string),
        "target": tf.io.FixedLenFeature([], tf.string),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "meta": tf.io.FixedLenFeature([], tf.string),
    }

    def decode(raw: Any, dtype: str, h: Any, w: Any) -> Any:
        img = tf.io.decode_raw(raw, tf.dtypes.as_dtype(dtype))
        img = tf.reshape(img, tf.stack([h, w, 3]))
        img = tf.cast(img, tf.float32)
        if SCALES[dtype] != 1.0:
            img = img * tf.constant(SCALES[dtype], tf.float32)
        return img

    def parse(record: Any) -> dict[str, Any]:
        f = tf.io.parse_single_example(record, spec)
        h, w = tf.cast(f["height"], tf.int32), tf.cast(f["width"], tf.int32)
        return {
            "key": f["key"],
            "input": decode(f["input"], in_dtype, h, w),
            "target": decode(f["target"], tgt_dtype, h, w),
            "meta": f["meta"],
        }

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)

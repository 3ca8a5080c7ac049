"""The tf.data training pipeline: mixed datasets, paired random crops, flips and rotations.

Training batches are ``(input, target)`` float32 tensors (B, h, w, 3) in the datasets' value range
(usually [0, 1]). Every random choice is a stateless function of (seed, epoch, dataset, example
index), so an epoch's batches are the same in every run and after a resume, whatever the number of
parallel calls.

Validation examples are single ``(input, target)`` pairs (H, W, 3), full size or centre-cropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lpie_data import storage
from lpie_data.dataset import iter_pairs, pair_dataset
from lpie_data.errors import DataError
from lpie_data.record_reader import read_records
from lpie_data.shards import read_manifest, shard_paths, split_entry
from lpie_model.recipe import DatasetRef


@dataclass(frozen=True)
class SplitInfo:
    """One split of a dataset: example count and the size of its first pair (H, W)."""

    path: str
    split: str
    examples: int
    height: int
    width: int


def inspect_split(path: str, split: str) -> SplitInfo:
    """Reads the manifest entry and the first pair of ``split``.

    Raises:
        DataError: the dataset folder or its manifest is missing, the split does not exist or has
            no examples.
    """
    path = str(path)
    if not storage.exists(path):
        raise DataError(f"{path}: no such dataset folder")
    entry = split_entry(read_manifest(path), split, path)
    first = next(iter_pairs(path, split), None)
    if first is None:
        raise DataError(f"{path}: split {split!r} has no examples")
    h, w = first.input.shape[:2]
    return SplitInfo(path, split, int(entry["examples"]), int(h), int(w))


def check_training_sources(
    sources: Sequence[DatasetRef], crop: tuple[int, int]
) -> list[SplitInfo]:
    """Checks every training source exists, has examples, and fits the largest crop (h, w).

    Image sizes are taken from each split's first pair. Raises DataError naming the dataset.
    """
    infos = []
    for src in sources:
        info = inspect_split(src.path, src.split)
        if crop[0] > info.height or crop[1] > info.width:
            raise DataError(
                f"{src.path}: crop {crop[0]}x{crop[1]} (data.crop_schedule) is larger than its "
                f"{src.split!r} images ({info.height}x{info.width}); use smaller crops"
            )
        infos.append(info)
    return infos


def derive_seed(*keys: int) -> int:
    """A 31-bit seed that is a pure function of integer ``keys`` (e.g. seed, epoch, source)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0] >> 1)


def random_crop_pair(inp: Any, tgt: Any, height: int, width: int, seed: Any) -> tuple[Any, Any]:
    """The same random (height, width) window of ``inp`` and ``tgt`` (H, W, 3 each).

    ``seed``: int32/int64 tensor of shape [2] (stateless). Fails in-graph if an image is smaller
    than the window.
    """
    import tensorflow as tf

    shape = tf.shape(inp)
    tf.debugging.assert_greater_equal(
        shape[:2], tf.constant([height, width]),
        message=f"a training image is smaller than the {height}x{width} crop",
    )
    seeds = tf.random.experimental.stateless_split(seed, 2)
    y = tf.random.stateless_uniform([], seeds[0], minval=0, maxval=shape[0] - height + 1,
                                    dtype=tf.int32)
    x = tf.random.stateless_uniform([], seeds[1], minval=0, maxval=shape[1] - width + 1,
                                    dtype=tf.int32)
    # The static spatial shape stays unknown on purpose: one traced training step then serves
    # every crop size of a progressive schedule.
    return inp[y : y + height, x : x + width, :], tgt[y : y + height, x : x + width, :]


def augment_pair(
    inp: Any,
    tgt: Any,
    seed: Any,
    *,
    flips: bool = True,
    rotations: bool = True,
    square: bool = True,
) -> tuple[Any, Any]:
    """Random horizontal/vertical flips and 90-degree rotations, the same on both images.

    Images that are not ``square`` are only rotated by 0 or 180 degrees (their shape is kept).
    ``seed``: int tensor [2] (stateless).
    """
    import tensorflow as tf

    if not (flips or rotations):
        return inp, tgt
    pair = tf.stack([inp, tgt])  # (2, h, w, 3)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if flips:
        u = tf.random.stateless_uniform([2], seeds[0])
        pair = tf.cond(u[0] < 0.5, lambda: tf.reverse(pair, [2]), lambda: pair)
        pair = tf.cond(u[1] < 0.5, lambda: tf.reverse(pair, [1]), lambda: pair)
    if rotations:
        k = tf.random.stateless_uniform([], seeds[1], minval=0, maxval=4 if square else 2,
                                        dtype=tf.int32)
        pair = tf.image.rot90(pair, k if square else 2 * k)
    return pair[0], pair[1]


def centre_crop(img: Any, size: int) -> Any:
    """The central ``size`` x ``size`` window of (H, W, C) (each side at most the image's)."""
    import tensorflow as tf

    shape = tf.shape(img)
    h, w = tf.minimum(size, shape[0]), tf.minimum(size, shape[1])
    y, x = (shape[0] - h) // 2, (shape[1] - w) // 2
    return img[y : y + h, x : x + w, :]


def training_dataset(
    sources: Sequence[DatasetRef],
    *,
    crop: tuple[int, int],
    batch_size: int,
    seed: int,
    epoch: int,
    steps: int | None = None,
    flips: bool = True,
    rotations: bool = True,
    shuffle_buffer: int = 64,
    spaces: tuple[str, str] | None = None,
) -> Any:
    """Batches of ``(input, target)``, float32 (batch_size, crop_h, crop_w, 3), for one epoch.

    ``spaces``: (data space, training space): both images of every crop are mapped between these
    value spaces (`lpie_data.valuespace.tf_convert`) inside the map; None keeps stored values.

    The element spec leaves H and W unknown (None) so that one compiled step serves all crops.

    Each source's split is read with parallel, file-shuffled reads, repeated, cropped and
    augmented (parallel map) and shuffled; several sources are mixed by their weights
    (`sample_from_datasets`). ``steps`` batches (None: endless); a partial last batch is dropped.
    """
    import tensorflow as tf

    h, w = crop
    streams = []
    for index, src in enumerate(sources):
        file_seed, aug_seed, shuffle_seed = (derive_seed(seed, epoch, index, k) for k in range(3))
        ds = pair_dataset(src.path, src.split, shuffle_files=True, seed=file_seed)
        ds = ds.repeat().enumerate()

        def prepare(i: Any, ex: dict[str, Any], aug_seed: int = aug_seed) -> tuple[Any, Any]:
            s = tf.random.experimental.stateless_split(
                tf.stack([tf.constant(aug_seed, tf.int64), i]), 2
            )
            inp, tgt = random_crop_pair(ex["input"], ex["target"], h, w, s[0])
            inp, tgt = convert_pair(inp, tgt, spaces)
            return augment_pair(inp, tgt, s[1], flips=flips, rotations=rotations,
                                square=h == w)

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.shuffle(shuffle_buffer, seed=shuffle_seed)
        streams.append(ds)
    if len(streams) == 1:
        ds = streams[0]
    else:
        total = sum(s.weight for s in sources)
        ds = tf.data.Dataset.sample_from_datasets(
            streams, weights=[s.weight / total for s in sources],
            seed=derive_seed(seed, epoch, len(sources), 3),
        )
    ds = ds.batch(batch_size, drop_remainder=True)
    if steps is not None:
        ds = ds.take(steps)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options())


def convert_pair(inp: Any, tgt: Any, spaces: tuple[str, str] | None) -> tuple[Any, Any]:
    """Both images mapped from value space ``spaces[0]`` to ``spaces[1]`` (TF ops); as they are
    when ``spaces`` is None or the two spaces are equal."""
    if spaces is None or spaces[0] == spaces[1]:
        return inp, tgt
    from lpie_data.valuespace import tf_convert

    return tf_convert(inp, *spaces), tf_convert(tgt, *spaces)


def validation_dataset(
    path: str, split: str, *, crop: int = 0, max_examples: int = 0,
    spaces: tuple[str, str] | None = None,
) -> Any:
    """Unbatched ``(input, target)`` pairs, float32 (H, W, 3), in stored order.

    ``crop`` > 0 takes the centre crop of that side (smaller images stay whole); ``max_examples``
    > 0 keeps only the first ones; ``spaces`` as in `training_dataset`.
    """
    import tensorflow as tf

    ds = pair_dataset(str(path), split)
    if max_examples:
        ds = ds.take(max_examples)

    def prepare(ex: dict[str, Any]) -> tuple[Any, Any]:
        inp, tgt = ex["input"], ex["target"]
        if crop:
            inp, tgt = centre_crop(inp, crop), centre_crop(tgt, crop)
        return convert_pair(inp, tgt, spaces)

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.with_options(_options())


def _options() -> Any:
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = True
    # Sharding by file does not see through sample_from_datasets; every worker reads all data
    # and keeps its share of the batches.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def damaged_shard(datasets: Sequence[tuple[str, str]], message: str) -> str | None:
    """The shard of the ``(path, split)`` datasets that TensorFlow's DataLossError ``message``
    ("corrupted record at OFFSET") is about, or None when none is found.

    Only shards with a record starting at OFFSET are looked at, and only that record is read
    (its two CRCs checked), so this is cheap even for large datasets.
    """
    m = re.search(r"corrupted record at (\d+)", message)
    if not m:
        return None
    offset = int(m.group(1))
    for path, split in dict.fromkeys(datasets):
        try:
            shards = shard_paths(path, split)
        except DataError:
            continue
        for shard in shards:
            if storage.size(shard) <= offset:
                continue
            with storage.open_file(shard, "rb") as f:
                pos = 0
                while pos < offset:  # walk the record headers up to OFFSET
                    f.seek(pos)
                    header = f.read(8)
                    if len(header) < 8:
                        break
                    pos += 12 + int.from_bytes(header, "little") + 4
                if pos != offset:
                    continue
                f.seek(offset)
                try:
                    next(read_records(f, shard), None)
                except DataError:
                    return shard
    return None

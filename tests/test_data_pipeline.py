"""The tf.data training pipeline: paired crops, augmentation, mixing, validation, checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from lpie_data.errors import DataError
from lpie_data.jobs import JobOptions, WorkItem, run_job
from lpie_data.records import Example
from lpie_model.data import (
    augment_pair,
    centre_crop,
    check_training_sources,
    derive_seed,
    inspect_split,
    random_crop_pair,
    training_dataset,
    validation_dataset,
)
from lpie_model.recipe import DatasetRef

H, W = 40, 52


def ramp(h: int = H, w: int = W) -> np.ndarray:
    """Target whose pixels tell where they are: channel 1 = y / 64, channel 2 = x / 64."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([(yy * w + xx) / (h * w), yy / 64, xx / 64], axis=-1).astype(np.float32)


def produce_ramps(item: WorkItem) -> Iterator[Example]:
    """input = target / 2 exactly (float32); ``args`` = (count, constant or None, h, w)."""
    count, constant, h, w = item.args
    for i in range(count):
        tgt = ramp(h, w) if constant is None else np.full((h, w, 3), constant, np.float32)
        tgt = tgt + np.float32(i) / 1024
        yield Example(f"{item.key}/{i}", tgt / 2, tgt, {"source": item.key, "box": [0, 0, h, w]})


def write_dataset(out: Path, *, train: int = 6, val: int = 3, constant: float | None = None,
                  size: tuple[int, int] = (H, W), value_space: str = "srgb") -> str:
    """A real lpie dataset (shards + manifest) with splits train and validation."""
    items = [WorkItem("t", "train", (train, constant, *size))]
    if val:
        items.append(WorkItem("v", "validation", (val, constant, *size)))
    run_job(str(out), "ramps", "test", {"constant": constant, "size": list(size)}, items,
            produce_ramps, JobOptions(jobs=1), extra_manifest={"value_space": value_space})
    return str(out)


@pytest.fixture(scope="module")
def ramps(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_dataset(tmp_path_factory.mktemp("ramps") / "ds")


def origin_of(tgt: np.ndarray) -> tuple[int, int]:
    """(y, x) of the crop's top-left pixel, read from the ramp's coordinate channels."""
    return int(round(tgt[0, 0, 1] * 64)), int(round(tgt[0, 0, 2] * 64))


def is_dihedral_window(crop: np.ndarray, full: np.ndarray) -> bool:
    """True if ``crop`` is a window of ``full`` after some flip / 90-degree rotation."""
    for k in range(4):
        for flip in (False, True):
            c = np.rot90(crop, -k)
            c = c[:, ::-1] if flip else c
            ch, cw = c.shape[:2]
            for y in range(full.shape[0] - ch + 1):
                for x in range(full.shape[1] - cw + 1):
                    if np.array_equal(full[y : y + ch, x : x + cw], c):
                        return True
    return False


def test_random_crop_takes_the_same_window_from_input_and_target() -> None:
    tgt = ramp()
    inp = tgt / 2
    for i in range(5):
        seed = tf.constant([7, i], tf.int64)
        ci, ct = (t.numpy() for t in random_crop_pair(tf.constant(inp), tf.constant(tgt),
                                                       24, 32, seed))
        assert ci.shape == ct.shape == (24, 32, 3)
        y, x = origin_of(ct)
        np.testing.assert_array_equal(ct, tgt[y : y + 24, x : x + 32])
        np.testing.assert_array_equal(ci, ct / 2)


def test_crop_the_size_of_the_image_is_the_image_and_a_larger_one_fails() -> None:
    tgt = tf.constant(ramp())
    _, ct = random_crop_pair(tgt, tgt, H, W, tf.constant([1, 2], tf.int64))
    np.testing.assert_array_equal(ct.numpy(), ramp())
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than the"):
        random_crop_pair(tgt, tgt, H + 1, W, tf.constant([1, 2], tf.int64))


def test_augment_applies_one_transform_to_both_and_covers_all_eight() -> None:
    tgt = ramp(16, 16)
    seen = set()
    for i in range(64):
        ai, at = augment_pair(tf.constant(tgt / 2), tf.constant(tgt), tf.constant([3, i]))
        ai, at = ai.numpy(), at.numpy()
        np.testing.assert_array_equal(ai, at / 2)
        assert is_dihedral_window(at, tgt)
        seen.add(at.tobytes())
    assert len(seen) == 8  # flips x rotations reach the whole dihedral group
    same = augment_pair(tf.constant(tgt), tf.constant(tgt), tf.constant([3, 0]), flips=False,
                        rotations=False)
    np.testing.assert_array_equal(same[1].numpy(), tgt)


def test_non_square_crops_keep_their_shape() -> None:
    tgt = ramp(8, 20)
    for i in range(16):
        _, at = augment_pair(tf.constant(tgt), tf.constant(tgt), tf.constant([5, i]),
                             square=False)
        assert at.shape == (8, 20, 3)
        assert is_dihedral_window(at.numpy(), tgt)


def test_crop_and_augment_inside_dataset_map() -> None:
    tgt = ramp()
    ds = tf.data.Dataset.from_tensors((tgt / 2, tgt)).repeat(8).enumerate()

    def fn(i: tf.Tensor, pair: tuple) -> tuple:
        inp, t = random_crop_pair(pair[0], pair[1], 20, 20, tf.stack([tf.constant(1, tf.int64), i]))
        return augment_pair(inp, t, tf.stack([tf.constant(2, tf.int64), i]))

    for ci, ct in ds.map(fn, num_parallel_calls=4):
        np.testing.assert_array_equal(ci.numpy(), ct.numpy() / 2)
        assert is_dihedral_window(ct.numpy(), tgt)


def test_training_batches_are_paired_crops(ramps: str) -> None:
    ds = training_dataset([DatasetRef(ramps)], crop=(16, 24), batch_size=3, seed=0, epoch=1,
                          steps=5)
    batches = list(ds)
    assert len(batches) == 5
    full = {i: ramp() + np.float32(i) / 1024 for i in range(6)}
    for x, y in batches:
        assert x.shape == (3, 16, 24, 3)  # non-square: rotated by 0 or 180 degrees only
        np.testing.assert_array_equal(x.numpy(), y.numpy() / 2)
        for t in y.numpy():
            assert any(is_dihedral_window(t, f) for f in full.values())


def test_an_epoch_is_reproducible_and_epochs_differ(ramps: str) -> None:
    def epoch_data(epoch: int, seed: int = 0) -> list[np.ndarray]:
        ds = training_dataset([DatasetRef(ramps)], crop=(16, 16), batch_size=2, seed=seed,
                              epoch=epoch, steps=6)
        return [y.numpy() for _, y in ds]

    first = epoch_data(1)
    again = epoch_data(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, epoch_data(2), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, epoch_data(1, seed=1),
                                                         strict=True))


def test_the_element_spec_leaves_height_and_width_open(ramps: str) -> None:
    ds = training_dataset([DatasetRef(ramps)], crop=(16, 16), batch_size=2, seed=0, epoch=1)
    assert ds.element_spec[0].shape.as_list() == [2, None, None, 3]


def test_datasets_are_mixed_by_weight(tmp_path: Path, ramps: str) -> None:
    flat = write_dataset(tmp_path / "flat", train=4, val=0, constant=0.5)
    sources = [DatasetRef(ramps, weight=3.0), DatasetRef(flat, weight=1.0)]
    ds = training_dataset(sources, crop=(8, 8), batch_size=8, seed=0, epoch=1, steps=50,
                          shuffle_buffer=4)
    from_flat = [float(np.ptp(t) == 0) for _, y in ds for t in y.numpy()]
    assert len(from_flat) == 400
    assert 0.18 < np.mean(from_flat) < 0.32  # 1 / (3 + 1) expected


def test_validation_pairs_full_size_or_centre_cropped(ramps: str) -> None:
    full = list(validation_dataset(ramps, "validation"))
    assert len(full) == 3
    assert full[0][0].shape == (H, W, 3)
    np.testing.assert_array_equal(full[0][1].numpy(), ramp())
    cropped = list(validation_dataset(ramps, "validation", crop=20, max_examples=2))
    assert len(cropped) == 2
    np.testing.assert_array_equal(cropped[0][1].numpy(), ramp()[10:30, 16:36])
    big = list(validation_dataset(ramps, "validation", crop=48))  # taller than H: H kept
    assert big[0][1].shape == (H, 48, 3)


def test_centre_crop() -> None:
    img = tf.constant(ramp(10, 12))
    np.testing.assert_array_equal(centre_crop(img, 4).numpy(), ramp(10, 12)[3:7, 4:8])


def test_inspect_split_and_source_checks(tmp_path: Path, ramps: str) -> None:
    info = inspect_split(ramps, "train")
    assert (info.examples, info.height, info.width) == (6, H, W)
    assert check_training_sources([DatasetRef(ramps)], (H, W))[0] == info
    too_big = rf"crop 41x16 .* larger than its 'train' images \({H}x{W}\)"
    with pytest.raises(DataError, match=too_big):
        check_training_sources([DatasetRef(ramps)], (41, 16))
    with pytest.raises(DataError, match="no such dataset folder"):
        inspect_split(str(tmp_path / "missing"), "train")
    with pytest.raises(DataError, match=r"no split 'test' \(splits: train, validation\)"):
        inspect_split(ramps, "test")
    (tmp_path / "notds").mkdir()
    with pytest.raises(DataError, match="not an lpie dataset"):
        inspect_split(str(tmp_path / "notds"), "train")


def test_a_split_without_examples_is_refused(tmp_path: Path, ramps: str) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ramps, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["splits"]["train"]["examples"] = 0
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="split 'train' has no examples"):
        inspect_split(str(copy), "train")


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    assert len({derive_seed(0, e, s) for e in range(20) for s in range(4)}) == 80
    assert 0 <= derive_seed(123, 4) < 2**31

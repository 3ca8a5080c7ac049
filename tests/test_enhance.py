"""`lpie-model enhance` and the tiled runner: sizes, bit depths, formats, seams, errors."""

import struct
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import tifffile
from PIL import Image
from typer.testing import CliRunner

from lpie_data.images import read_image, write_png
from lpie_data.pngfile import png_header
from lpie_model import build_lpienet, load_model
from lpie_model.checkpoint import WEIGHTS_FILE, write_config
from lpie_model.cli import app
from lpie_model.enhance import EnhanceOptions, restore
from lpie_model.runner import blend_weights, predict, tile_spans
from lpie_model.runtime import KerasRunner, LiteRTRunner

cli = CliRunner()
WIDTHS = [4, 8, 4]  # a real LPIENet with one pooling level, small enough for fast tests


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A training run folder (best.weights.h5 + model.json) of a tiny random LPIENet."""
    run = tmp_path_factory.mktemp("run")
    keras.utils.set_random_seed(3)
    build_lpienet(widths=WIDTHS).save_weights(run / WEIGHTS_FILE)
    write_config(run, {"widths": WIDTHS})
    return run


@pytest.fixture(scope="module")
def conv_keras(tmp_path_factory) -> Path:
    """A one-layer convolutional .keras model: the cheapest model for the command's plumbing."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((None, None, 3))
    path = tmp_path_factory.mktemp("conv") / "conv.keras"
    keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same")(inp)).save(path)
    return path


@pytest.fixture(scope="module")
def runner(run_dir) -> KerasRunner:
    return KerasRunner(load_model(run_dir))


def _photo(rng, h, w, dtype):
    top = np.iinfo(dtype).max
    return rng.integers(0, top + 1, (h, w, 3), dtype=np.int64).astype(dtype)


def _interior_distance(length: int, spans: list[tuple[int, int]]) -> np.ndarray:
    """Per position: distance to the nearest tile edge that lies inside the image (a seam)."""
    idx = np.arange(length)
    dist = np.full(length, length)
    for k, (start, stop) in enumerate(spans):
        if k > 0:
            dist = np.minimum(dist, np.abs(idx - start))
        if k + 1 < len(spans):
            dist = np.minimum(dist, np.abs(idx - stop))
    return dist


# --------------------------------------------------------------------------- tiling


def test_tile_spans_cover_overlap_and_align():
    for length, tile, overlap, align in [(1001, 256, 32, 16), (777, 256, 32, 16), (300, 128, 32, 4),
                                         (5000, 1024, 32, 16), (257, 256, 32, 16)]:
        spans = tile_spans(length, tile, overlap, align)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(s % align == 0 and 0 < e - s <= tile for s, e in spans)
        assert all(b[0] <= a[1] - overlap for a, b in zip(spans, spans[1:], strict=False))
        total = np.zeros(length)
        for (s, e), w in zip(spans, blend_weights(spans), strict=True):
            total[s:e] += w
        np.testing.assert_allclose(total, 1.0, atol=1e-6)  # a partition of unity
    assert tile_spans(100, 128, 32, 16) == [(0, 100)]


def test_tiles_exact_when_receptive_field_within_quarter_overlap():
    # Two 3x3 convolutions: each output depends on pixels at most 2 away. A tile's output is then
    # wrong only within 2 px of its edges, and blending gives zero weight to the quarter of each
    # overlap nearest a tile's edge (16 / 4 = 4 px >= 2): tiled == whole everywhere, seams included.
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same")(x))
    runner = KerasRunner(model)
    image = np.random.default_rng(0).random((150, 131, 3), dtype=np.float32)
    whole = predict(runner, image)
    tiled = predict(runner, image, tile=48, overlap=16)
    assert len(tile_spans(150, 48, 16, runner.align)) > 2
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_lpienet_tiles_match_whole_image_away_from_seams(runner):
    image = np.random.default_rng(1).random((301, 263, 3), dtype=np.float32)
    tile, overlap = 128, 32
    whole = predict(runner, image)
    tiled = predict(runner, image, tile=tile, overlap=overlap)
    assert tiled.shape == whole.shape
    rows = tile_spans(301, tile, overlap, runner.align)
    cols = tile_spans(263, tile, overlap, runner.align)
    seam = np.minimum(_interior_distance(301, rows)[:, None], _interior_distance(263, cols)[None])
    err = np.abs(tiled - whole).max(axis=2)
    # Tile starts are aligned with the pooling grid, so a pixel farther from every seam than the
    # network's receptive field (~30 px for these widths) sees exactly what it sees in the whole
    # image: only float rounding remains.
    far = seam >= 40
    assert far.sum() > 5000
    assert err[far].max() < 1e-5
    # Near seams each output is a convex combination of the tiles' own outputs, so its error is
    # at most the worst error of a tile covering that pixel (a tile's own border error is the
    # only source; blending must not add any).
    bound = np.zeros_like(err)
    for y0, y1 in rows:
        for x0, x1 in cols:
            own = np.abs(runner.run(image[y0:y1, x0:x1]) - whole[y0:y1, x0:x1]).max(axis=2)
            bound[y0:y1, x0:x1] = np.maximum(bound[y0:y1, x0:x1], own)
    assert np.all(err <= bound + 1e-5)
    # And the zero-weight quarter keeps the worst, outermost pixels of every tile out.
    assert err.max() < bound.max()


def test_fixed_size_tflite_runs_in_tiles_of_its_size(tmp_path):
    # A fixed 32x32 .tflite model (what `export --size` makes) runs any image: in tiles of its
    # size, or reflect-padded up to it when the image is smaller.
    keras.utils.set_random_seed(1)
    layers = [keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
              keras.layers.Conv2D(3, 3, padding="same")]

    def build(shape, batch=None):
        inp = keras.Input(shape, batch_size=batch)
        x = inp
        for layer in layers:
            x = layer(x)
        return keras.Model(inp, x)

    dynamic = build((None, None, 3))
    content = tf.lite.TFLiteConverter.from_keras_model(build((32, 32, 3), batch=1)).convert()
    path = tmp_path / "fixed.tflite"
    path.write_bytes(content)
    lite = LiteRTRunner(path)
    assert lite.fixed_size == (32, 32)
    keras_runner = KerasRunner(dynamic)
    # 96 x 80 with 32-px tiles: every tile is full size (no padding), so with a receptive field
    # of 2 px <= overlap / 4 the tiled result is the whole-image result.
    image = np.random.default_rng(2).random((96, 80, 3), dtype=np.float32)
    np.testing.assert_allclose(predict(lite, image, overlap=8), predict(keras_runner, image),
                               atol=1e-5)
    small = image[:20, :25]
    out = predict(lite, small)
    assert out.shape == small.shape
    # Reflect padding changes only the 2 px next to the padded bottom/right border.
    np.testing.assert_allclose(out[:18, :23], predict(keras_runner, small)[:18, :23], atol=1e-5)


# --------------------------------------------------------------------------- the command


def test_enhance_keeps_size_depth_and_format(tmp_path, run_dir, runner):
    rng = np.random.default_rng(4)
    src = tmp_path / "in"
    src.mkdir()
    photos = {
        "odd16.png": _photo(rng, 1001, 777, np.uint16),
        "odd8.png": _photo(rng, 333, 251, np.uint8),
        "scan.tif": _photo(rng, 97, 61, np.uint16),
        "shot.jpg": _photo(rng, 120, 90, np.uint8),
    }
    for name, arr in photos.items():
        if name.endswith(".png"):
            write_png(src / name, arr)
        elif name.endswith(".tif"):
            tifffile.imwrite(src / name, arr, photometric="rgb")
        else:
            Image.fromarray(arr).save(src / name, quality=90)
    out = tmp_path / "out"
    result = cli.invoke(app, ["enhance", str(run_dir), str(src), "--out", str(out),
                              "--tile", "512", "--compare"])
    assert result.exit_code == 0, result.output
    options = EnhanceOptions(tile=512)
    for name in photos:
        original = read_image(src / name)
        restored = read_image(out / name)
        assert restored.shape == original.shape and restored.dtype == original.dtype
        if not name.endswith(".jpg"):  # lossless formats hold exactly what the model gave
            np.testing.assert_array_equal(restored, restore(runner, original, options))
        compare = read_image(out / f"{Path(name).stem}_compare.png")
        assert compare.shape == (original.shape[0], 2 * original.shape[1], 3)
        assert compare.dtype == original.dtype
        np.testing.assert_array_equal(compare[:, : original.shape[1]], original)
    assert png_header(out / "odd16.png").bit_depth == 16
    with Image.open(out / "shot.jpg") as im:
        assert im.format == "JPEG"
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_bad_images_skipped_others_written(tmp_path, conv_keras):
    rng = np.random.default_rng(5)
    good = tmp_path / "good.png"
    write_png(good, _photo(rng, 40, 50, np.uint8))
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    huge = tmp_path / "huge.png"  # a header claiming 60000 x 60000 (decompression bomb)
    data = bytearray(good.read_bytes())
    data[16:24] = struct.pack(">II", 60000, 60000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    huge.write_bytes(bytes(data))
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "out"
    args = ["enhance", str(conv_keras), str(corrupt), str(huge), str(good), str(missing),
            "--out", str(out)]
    result = cli.invoke(app, args)
    assert result.exit_code == 1
    for bad in ("broken.png", "huge.png", "missing.jpg"):
        assert bad in result.output
    assert "huge.png: header claims 60000 x 60000 pixels" in result.output.replace("\n", "")
    assert (out / "good.png").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]


def test_nothing_overwritten_without_flag(tmp_path, conv_keras):
    photo = tmp_path / "a.png"
    write_png(photo, _photo(np.random.default_rng(6), 30, 40, np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"keep me")
    result = cli.invoke(app, ["enhance", str(conv_keras), str(photo), "--out", str(out)])
    assert result.exit_code == 1
    assert "already exist" in result.output and "--overwrite" in result.output
    assert (out / "a.png").read_bytes() == b"keep me"
    result = cli.invoke(app, ["enhance", str(conv_keras), str(photo), "--out", str(out),
                              "--overwrite"])
    assert result.exit_code == 0, result.output
    assert read_image(out / "a.png").shape == (30, 40, 3)
    # Writing into the input's own folder would replace the input: refused even with --overwrite.
    result = cli.invoke(app, ["enhance", str(conv_keras), str(photo), "--out", str(tmp_path),
                              "--overwrite"])
    assert result.exit_code == 1 and "replace the input" in result.output


def test_bad_tiling_options_are_refused(tmp_path, conv_keras):
    photo = tmp_path / "a.png"
    write_png(photo, _photo(np.random.default_rng(7), 30, 40, np.uint8))
    result = cli.invoke(app, ["enhance", str(conv_keras), str(photo), "--out", str(tmp_path / "o"),
                              "--tile", "64", "--overlap", "32"])
    assert result.exit_code == 1 and "half the tile" in result.output


# --------------------------------------------------------------------------- value spaces


def _chain(model_fn, srgb: np.ndarray) -> np.ndarray:
    """The explicit chain, step by step: sRGB -> linear -> Reinhard -> model -> linear -> sRGB."""
    from lpie_data.valuespace import linear_to_srgb, reinhard, reinhard_inverse, srgb_to_linear

    x = reinhard(srgb_to_linear(srgb))
    y = np.clip(model_fn(x), 0.0, 1.0)
    return linear_to_srgb(reinhard_inverse(y))


@pytest.fixture(scope="module")
def reinhard_run(tmp_path_factory) -> Path:
    """A run folder of a tiny random LPIENet trained (so its model.json says) in Reinhard space."""
    run = tmp_path_factory.mktemp("reinhard-run")
    keras.utils.set_random_seed(8)
    build_lpienet(widths=WIDTHS).save_weights(run / WEIGHTS_FILE)
    write_config(run, {"widths": WIDTHS}, "reinhard")
    return run


def test_enhance_maps_srgb_photos_through_the_models_value_space(tmp_path, reinhard_run):
    """Done-when of issue 11: enhance == the explicit chain within 16-bit rounding, for the Keras
    run and for its .tflite export (whose metadata carries the value space)."""
    from lpie_model.export import export_tflite

    rng = np.random.default_rng(11)
    photo = _photo(rng, 45, 61, np.uint16)
    src = tmp_path / "photo.png"
    write_png(src, photo)
    model = load_model(reinhard_run)
    assert model.lpie_value_space == "reinhard"
    want = _chain(lambda x: model(x[None]).numpy()[0], photo.astype(np.float32) / 65535)

    out = tmp_path / "keras"
    result = cli.invoke(app, ["enhance", str(reinhard_run), str(src), "--out", str(out),
                              "--compare"])
    assert result.exit_code == 0, result.output
    assert "model value space: reinhard" in result.output
    got = read_image(out / "photo.png")
    assert got.dtype == np.uint16
    assert np.abs(got.astype(np.int64) - np.rint(want * 65535)).max() <= 1
    # Feeding sRGB straight in (the old behaviour) is far from it.
    straight = np.clip(model(photo[None].astype(np.float32) / 65535).numpy()[0], 0, 1)
    assert np.abs(straight - want).max() > 0.05
    # The compare image shows sRGB: the input photo unchanged, then the result.
    compare = read_image(out / "photo_compare.png")
    np.testing.assert_array_equal(compare[:, :61], photo)
    np.testing.assert_array_equal(compare[:, 61:], got)

    tflite = tmp_path / "m.tflite"
    export_tflite(model, tflite, parity_images=[("p", photo.astype(np.float32) / 65535)])
    lite = LiteRTRunner(tflite)
    assert lite.value_space == "reinhard"
    got_lite = restore(lite, photo, EnhanceOptions(tile=0))
    assert np.abs(got_lite.astype(np.int64) - np.rint(want * 65535)).max() <= 1


def test_linear_npy_inputs_and_the_input_space_override(tmp_path, reinhard_run):
    from lpie_data.valuespace import reinhard, reinhard_inverse

    model = load_model(reinhard_run)
    rng = np.random.default_rng(12)
    hdr = (rng.random((30, 34, 3)) * 4).astype(np.float32)  # linear light, up to 4
    src = tmp_path / "in"
    src.mkdir()
    np.save(src / "hdr.npy", hdr)
    out = tmp_path / "out"
    result = cli.invoke(app, ["enhance", str(reinhard_run), str(src), "--out", str(out),
                              "--compare"])
    assert result.exit_code == 0, result.output
    got = np.load(out / "hdr.npy")
    want = reinhard_inverse(np.clip(model(reinhard(hdr)[None]).numpy()[0], 0, 1))
    assert got.dtype == np.float32 and got.max() > 1.0  # still linear HDR
    # (compared in the Reinhard domain: near 1 its inverse magnifies float rounding)
    np.testing.assert_allclose(reinhard(got), reinhard(want), atol=2e-6)
    assert read_image(out / "hdr_compare.png").dtype == np.uint16

    # Inputs already in the model's space: --input-space reinhard feeds them unchanged.
    mapped = src / "mapped.npy"
    np.save(mapped, reinhard(hdr))
    result = cli.invoke(app, ["enhance", str(reinhard_run), str(mapped), "--out",
                              str(tmp_path / "o2"), "--input-space", "reinhard"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "o2" / "mapped.npy"),
                               np.clip(model(reinhard(hdr)[None]).numpy()[0], 0, 1), atol=1e-6)
    bad = cli.invoke(app, ["enhance", str(reinhard_run), str(mapped), "--out",
                           str(tmp_path / "o3"), "--input-space", "hdr"])
    shown = " ".join(bad.output.replace("│", " ").split())
    assert bad.exit_code == 2 and "'linear', 'reinhard', 'srgb'" in shown


def test_a_model_without_a_value_space_is_fed_stored_values_with_a_note(tmp_path, run_dir,
                                                                       runner):
    rng = np.random.default_rng(13)
    photo = _photo(rng, 20, 24, np.uint8)
    write_png(tmp_path / "p.png", photo)
    result = cli.invoke(app, ["enhance", str(run_dir), str(tmp_path / "p.png"), "--out",
                              str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "records no value space" in " ".join(result.output.split())
    want = np.clip(runner.run(photo.astype(np.float32) / 255), 0, 1)
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "p.png"),
                                  np.rint(want * 255).astype(np.uint8))

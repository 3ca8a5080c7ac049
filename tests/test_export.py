"""TFLite export: dynamic and fixed sizes, builtin ops only, fp16/int8 parity, the CLI."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from typer.testing import CliRunner

from lpie_data.errors import ConfigError, DataError, OutputError
from lpie_data.jobs import JobOptions, WorkItem, run_job
from lpie_data.records import Example
from lpie_model import build_lpienet
from lpie_model import convert as cv
from lpie_model import export as ex
from lpie_model import runtime as rt
from lpie_model import samples as smp
from lpie_model import tflite_model as tm
from lpie_model.checkpoint import write_config
from lpie_model.cli import app


@pytest.fixture(scope="module")
def model():
    # Seeded initial weights: parity targets are met without any training.
    keras.utils.set_random_seed(0)
    return build_lpienet("base")


@pytest.fixture(scope="module")
def photos():
    return smp.sample_photos()


def test_parse_size():
    assert cv.parse_size("1080x1920") == (1080, 1920)
    assert cv.parse_size(" 64X48 ") == (64, 48)
    for bad in ("64", "0x5", "axb", "64x48x3"):
        with pytest.raises(ConfigError, match="HxW"):
            cv.parse_size(bad)


def test_dynamic_export_runs_at_any_size(model, tmp_path):
    out = tmp_path / "model.tflite"
    report = ex.export_tflite(model, out, parity_images=[("ramp", _ramp(40, 56))])
    assert report["input_size"] is None and report["params"] == 133_652
    assert report["parity"]["passed"] and report["parity"]["max_abs_diff"] <= 1e-4
    assert json.loads(out.with_suffix(".json").read_text())["ops"] == report["ops"]
    assert "CUSTOM" not in report["ops"] and not any(o.startswith("Flex") for o in report["ops"])
    runner = rt.LiteRTRunner(out)
    assert runner.fixed_size is None
    rng = np.random.default_rng(0)
    for hw in [(37, 53), (64, 96)]:
        x = rng.random((*hw, 3), dtype=np.float32)
        got = runner(x)
        assert got.shape == x.shape
        np.testing.assert_allclose(got, model(x[None]).numpy()[0], atol=1e-4)


def test_fixed_size_export(model):
    content = cv.convert(model, size=(32, 48))
    runner = rt.LiteRTRunner(content)
    assert runner.fixed_size == (32, 48)
    # A multiple of 4 exports without pad/slice ops, and without shape arithmetic.
    assert not {"PAD", "SLICE", "STRIDED_SLICE", "SHAPE"} & set(tm.op_names(content))
    x = _ramp(32, 48)
    np.testing.assert_allclose(runner(x), model(x[None]).numpy()[0], atol=1e-4)
    with pytest.raises(DataError, match="takes only 32x48"):
        runner(_ramp(32, 32))


def test_fp16_and_int8_meet_parity_targets(model, photos, tmp_path):
    size = (64, 64)
    fp16 = ex.export_tflite(model, tmp_path / "fp16.tflite", precision="fp16", size=size)
    assert fp16["parity"]["passed"], fp16["parity"]
    assert fp16["parity"]["min_psnr_db"] >= 50
    images = [img for _, img in photos]
    calibration = smp.calibration_crops(images, count=24, crop=size, per_image=8)
    int8 = ex.export_tflite(
        model,
        tmp_path / "int8.tflite",
        precision="int8",
        size=size,
        io="uint8",
        calibration=calibration,
    )
    assert int8["parity"]["passed"], int8["parity"]
    assert int8["parity"]["min_psnr_db"] >= 35
    assert int8["bytes"] < fp16["bytes"]
    runner = rt.LiteRTRunner(tmp_path / "int8.tflite")
    assert runner.interpreter.get_input_details()[0]["dtype"] == np.uint8
    y = runner(smp.fit_to_size(photos[0][1], size))
    assert y.dtype == np.float32 and y.min() >= 0 and y.max() <= 1


_PARITY_PEAK = """
import sys
import numpy as np
from lpie_model import build_lpienet, export
from lpie_model.latency import peak_memory_kib
model = build_lpienet("base")
model.load_weights(sys.argv[1])
content = open(sys.argv[2], "rb").read()
image = np.random.default_rng(0).random((720, 1280, 3), dtype=np.float32)
before = peak_memory_kib()
report = export.parity_report(model, content, "fp32", [("noise", image)], num_threads=1)
print(report["max_abs_diff"], (peak_memory_kib() - before) / 1024)
"""


def test_parity_of_a_large_export_runs_keras_as_one_graph(model, tmp_path):
    """The parity check's Keras reference is one traced graph: called eagerly, Keras kept every
    intermediate (~10.7 GB for one 1080 x 1920 image of the base network, ~4.7 GB at 720 x 1280;
    a 4K export could not be checked at all). A fresh process checking a 720 x 1280 export
    grows by ~1 GB now."""
    import subprocess
    import sys

    content = cv.convert(model, size=(720, 1280))
    (tmp_path / "m.tflite").write_bytes(content)
    model.save_weights(tmp_path / "m.weights.h5")
    out = subprocess.run([sys.executable, "-c", _PARITY_PEAK, str(tmp_path / "m.weights.h5"),
                          str(tmp_path / "m.tflite")], capture_output=True, text=True,
                         check=True).stdout.split()
    max_abs_diff, grown_mib = float(out[-2]), float(out[-1])
    assert max_abs_diff <= 1e-4
    assert grown_mib < 2500, f"the parity check grew the process by {grown_mib:.0f} MiB"


def test_calibration_twin_size_known_answers():
    assert cv.calibration_twin_size((1080, 1920), (256, 256)) == (256, 256)
    # Same remainder modulo the pooling factor as the export: the same ops (pad or not).
    assert cv.calibration_twin_size((1082, 1921), (256, 256)) == (254, 253)
    assert cv.calibration_twin_size((20, 300), (256, 256)) == (20, 256)


def test_fixed_int8_calibrates_on_crops_with_progress(model, photos, monkeypatch):
    size = (64, 96)
    images = [img for _, img in photos[:2]]
    crops = smp.calibration_crops(images, count=6, crop=(32, 32), per_image=3)
    calls, sizes = [], []
    convert_keras = cv.convert_keras

    def spy(net, **kwargs):  # records what TFLiteConverter sees, then converts for real
        sizes.append((kwargs.get("size"), kwargs.get("precision"), kwargs.get("calibrate_only")))
        return convert_keras(net, **kwargs)

    monkeypatch.setattr(cv, "convert_keras", spy)
    content = cv.convert(
        model, precision="int8", size=size, calibration=crops, progress=lambda *a: calls.append(a)
    )
    # Calibration ran on the 32x32 twin; the full size was only converted to float.
    assert sizes == [((32, 32), "int8", True), (size, "fp32", None)]
    assert calls[0] == ("calibrate", 0, 6) and calls[-1] == ("calibrate", 6, 6)
    assert len(calls) == 7
    runner = rt.LiteRTRunner(content)
    assert runner.fixed_size == size
    assert runner.interpreter.get_input_details()[0]["shape"].tolist() == [1, 64, 96, 3]
    # Held-out image (chelsea was not calibrated on): parity with fp32 Keras.
    report = ex.parity_report(model, content, "int8", [photos[2]])
    assert report["min_psnr_db"] >= 40, report


def test_range_transfer_at_the_same_size_equals_direct_conversion(model, photos):
    from lpie_model.deploy import rebuild_for_shape

    size = (32, 32)
    crops = smp.calibration_crops([img for _, img in photos], count=4, crop=size, per_image=2)
    via_twin = cv.convert_int8_on_crops(model, size, size, crops, io="uint8")
    net = rebuild_for_shape(model, *size, s2d_gate=True, s2d_full_res=True)
    direct = cv.convert_keras(net, precision="int8", size=size, io="uint8", calibration=crops)
    x = smp.fit_to_size(photos[2][1], size)
    np.testing.assert_array_equal(rt.LiteRTRunner(via_twin)(x), rt.LiteRTRunner(direct)(x))
    assert tm.op_names(via_twin) == tm.op_names(direct)
    # A twin of another graph (no pad vs pad) is refused, not silently mis-calibrated.
    other = rebuild_for_shape(model, 30, 30, s2d_gate=True, s2d_full_res=True)
    other = cv.convert_keras(other, size=(30, 30))
    calibrated = cv.convert_keras(
        net, precision="int8", size=size, calibration=crops, calibrate_only=True
    )
    with pytest.raises(tm.ExportError, match="another graph"):
        cv.transfer_ranges(calibrated, other)


def test_option_errors(model, tmp_path):
    with pytest.raises(ConfigError, match="needs precision 'int8'"):
        cv.convert(model, io="uint8")
    with pytest.raises(ConfigError, match="calibration"):
        cv.convert(model, precision="int8")
    with pytest.raises(ConfigError, match="valid: fp32, fp16, int8"):
        cv.convert(model, precision="bf16")
    with pytest.raises(OutputError, match=".tflite"):
        ex.export_tflite(model, tmp_path / "model.bin")


class _Cumprod(keras.layers.Layer):
    def call(self, x):
        return tf.math.cumprod(x, axis=1)


def test_non_builtin_ops_are_refused():
    inp = keras.Input((4, 4, 3))
    flexy = keras.Model(inp, _Cumprod()(inp))
    with pytest.raises(tm.ExportError, match="Cumprod"):
        cv.convert_keras(flexy, size=(4, 4))
    # A file that does contain a Flex op (converted with SELECT_TF_OPS) is named as such.
    fn = tf.function(lambda x: tf.math.cumprod(x, axis=1))
    concrete = fn.get_concrete_function(tf.TensorSpec((1, 4, 4), tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    content = converter.convert()
    assert tm.op_names(content) == ["FlexCumprod"]
    with pytest.raises(tm.ExportError, match="FlexCumprod"):
        tm.check_builtin_ops(content)


def test_fit_and_calibration_crops_are_deterministic():
    image = np.arange(20 * 30 * 3, dtype=np.float32).reshape(20, 30, 3)
    assert smp.fit_to_size(image, (10, 40)).shape == (10, 40, 3)
    np.testing.assert_array_equal(smp.fit_to_size(image, (10, 30)), image[5:15])
    a = smp.calibration_crops([image, image], count=3, crop=(8, 8), per_image=2, seed=3)
    b = smp.calibration_crops([image, image], count=3, crop=(8, 8), per_image=2, seed=3)
    assert len(a) == 3 and all(x.shape == (8, 8, 3) for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _produce(item: WorkItem):
    """Pairs cut from the sample photos, stored as uint8 like a real 8-bit dataset."""
    image = dict(smp.sample_photos())[item.args["photo"]]
    y, x = item.args["at"]
    target = (image[y : y + 40, x : x + 40] * 255).round().astype(np.uint8)
    noisy = np.clip(target.astype(np.int16) + (np.arange(40) % 3 - 1)[:, None, None] * 6, 0, 255)
    yield Example(item.key, noisy.astype(np.uint8), target, {"source": "t", "box": [y, x, 40, 40]})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "photos"
    items = [
        WorkItem(f"{name}-{i}", "train", {"photo": name, "at": [60 * i, 90 * i]})
        for i, name in enumerate(["astronaut", "coffee", "chelsea"])
    ]
    run_job(str(out), "photos", "test", {}, items, _produce, JobOptions(jobs=1))
    return out


def test_dataset_calibration(dataset):
    crops = smp.dataset_calibration(dataset, "train", count=5, crop=(32, 32))
    assert len(crops) == 5 and all(c.shape == (32, 32, 3) and c.dtype == np.float32 for c in crops)
    again = smp.dataset_calibration(dataset, "train", count=5, crop=(32, 32))
    assert all(np.array_equal(a, b) for a, b in zip(crops, again, strict=True))
    assert [k for k, _ in smp.dataset_inputs(dataset, "train", 2)] == ["astronaut-0", "coffee-1"]
    with pytest.raises(DataError):
        smp.dataset_calibration(dataset, "test")


def test_cli_export_int8_with_dataset(model, dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    model.save_weights(run / "best.weights.h5")
    write_config(run, {"variant": "base"})
    out = tmp_path / "m.tflite"
    args = ["export", str(run), "--out", str(out), "--size", "32x32", "--precision", "int8"]
    args += ["--calibration", str(dataset), "--calibration-count", "12"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "meets" in result.output and "astronaut-0" in result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["precision"] == "int8" and report["input_size"] == [32, 32]
    assert report["build"]["variant"] == "base" and report["parity"]["passed"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "--overwrite" in again.output
    bad = CliRunner().invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "x.tflite")])
    assert bad.exit_code == 1 and "best.weights.h5" in bad.output


def _ramp(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([x / w, y / h, (x + y) / (h + w)], axis=-1)


def test_the_tflite_carries_its_value_space_as_metadata(tmp_path):
    """The value space lives in the flatbuffer's Model.metadata ("lpie" -> JSON), next to the
    converter's own entries; the LiteRT interpreter still loads and runs the file."""
    from ai_edge_litert import schema_py_generated as schema

    keras.utils.set_random_seed(1)
    small = build_lpienet(widths=[4, 8, 4])
    small.lpie_value_space = "reinhard"
    out = tmp_path / "m.tflite"
    report = ex.export_tflite(small, out, parity_images=[("ramp", _ramp(24, 32))])
    content = out.read_bytes()
    info = tm.read_metadata(out)
    assert info["value_space"] == "reinhard" and "reinhard" in info["input"]
    assert info["build"]["widths"] == [4, 8, 4] and info["lpie_version"]
    assert report["value_space"] == "reinhard"
    assert json.loads(out.with_suffix(".json").read_text())["metadata"] == info
    # Anyone with the schema reads it: the raw flatbuffer API, no lpie code.
    root = schema.Model.GetRootAs(content, 0)
    names = {root.Metadata(i).Name().decode(): root.Metadata(i).Buffer()
             for i in range(root.MetadataLength())}
    assert "min_runtime_version" in names  # the converter's own entry is kept
    raw = bytes(root.Buffers(names["lpie"]).DataAsNumpy())
    assert json.loads(raw)["value_space"] == "reinhard"
    # The interpreter runs it and matches Keras; the op list is still builtin only.
    assert report["parity"]["passed"]
    x = _ramp(21, 30)
    np.testing.assert_allclose(rt.LiteRTRunner(out)(x), small(x[None]).numpy()[0], atol=1e-4)
    assert tm.op_names(content) == tm.check_builtin_ops(content)
    # Writing it again replaces the entry instead of adding a second one.
    again = tm.add_metadata(content, {**info, "value_space": "srgb"})
    assert tm.read_metadata(again)["value_space"] == "srgb"
    root = schema.Model.GetRootAs(again, 0)
    assert [root.Metadata(i).Name() for i in range(root.MetadataLength())].count(b"lpie") == 1
    # A model without a recorded space says so (null), and a plain conversion has no entry.
    assert ex.model_metadata(build_lpienet(widths=[4, 8, 4]), "fp32", "float")["value_space"] \
        is None
    assert tm.read_metadata(cv.convert(small)) is None


def test_cli_export_of_a_run_writes_its_value_space(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    keras.utils.set_random_seed(2)
    build_lpienet(widths=[4, 8, 4]).save_weights(run / "best.weights.h5")
    write_config(run, {"widths": [4, 8, 4]}, "reinhard")
    out = tmp_path / "r.tflite"
    result = CliRunner().invoke(app, ["export", str(run), "--out", str(out), "--size", "32x32"])
    assert result.exit_code == 0, result.output
    assert "value space reinhard" in result.output
    assert tm.read_metadata(out)["value_space"] == "reinhard"
    assert json.loads(out.with_suffix(".json").read_text())["value_space"] == "reinhard"

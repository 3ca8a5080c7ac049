"""`lpie-model evaluate`: known-answer PSNR on a tiny dataset, CSV/JSON, Keras and LiteRT models."""

import csv
import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from lpie_data.jobs import JobOptions, WorkItem, run_job
from lpie_data.records import Example
from lpie_model import build_lpienet, load_model, metrics
from lpie_model.checkpoint import WEIGHTS_FILE, write_config
from lpie_model.cli import app
from lpie_model.evaluate import CSV_COLUMNS, evaluate
from lpie_model.runtime import KerasRunner, LiteRTRunner

cli = CliRunner()
NOISE = {"a": 4, "b": 8, "c": 12}  # per key: input = target +- K (8-bit codes), checkerboard
BIAS = 2 / 255  # the identity-plus-bias model adds this to every value
H, W = 32, 48


def make_pair(key: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (input, target): target in [20, 230], input = target + K * checkerboard(+1/-1).

    The checkerboard has as many +K as -K on an even-sized image, so the error has mean 0 and
    mean square exactly (K / 255)^2 in [0, 1] units.
    """
    rng = np.random.default_rng(sorted(NOISE).index(key))
    target = rng.integers(20, 231, (H, W, 3)).astype(np.int16)
    sign = np.where((np.add.outer(np.arange(H), np.arange(W)) % 2) == 0, 1, -1)[..., None]
    degraded = target + NOISE[key] * sign
    return degraded.astype(np.uint8), target.astype(np.uint8)


def make_tonemapped_pair() -> tuple[np.ndarray, np.ndarray]:
    """float16 (input, target) as UDC stores them: tone-mapped x / (x + 0.25), in [0, 1).

    Targets are multiples of 2^-11 in [0.25, 0.75) and the error is +-2^-8 (checkerboard), all
    exact in float16: PSNR of the input is 20 log10(256) in the stored domain.
    """
    rng = np.random.default_rng(9)
    linear = rng.uniform(0.09, 0.7, (H, W, 3))  # x / (x + 0.25) of these lies in [0.26, 0.74]
    target = np.round(linear / (linear + 0.25) * 2048) / 2048
    sign = np.where((np.add.outer(np.arange(H), np.arange(W)) % 2) == 0, 1, -1)[..., None]
    return (target + sign / 256).astype(np.float16), target.astype(np.float16)


def produce(item: WorkItem):
    if item.split == "tonemapped":
        degraded, target = make_tonemapped_pair()
    else:
        degraded, target = make_pair(item.key)
    yield Example(item.key, degraded, target, {"source": item.key, "box": [0, 0, H, W]})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "tiny"
    items = [WorkItem(key, "val", None) for key in sorted(NOISE)]
    items.append(WorkItem("udc", "tonemapped", None))
    run_job(str(out), "tiny", "test", {}, items, produce, JobOptions(jobs=1))
    return out


@pytest.fixture(scope="module")
def bias_model(tmp_path_factory) -> Path:
    """A .keras model computing x + BIAS exactly (1x1 identity convolution with a bias)."""
    inp = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(3, 1, name="shift")
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.eye(3, dtype=np.float32)[None, None], np.full(3, BIAS, np.float32)])
    path = tmp_path_factory.mktemp("model") / "shift.keras"
    model.save(path)
    return path


def expected_psnr(k: int, bias: float = 0.0) -> float:
    # mean((d + b)^2) = mean(d^2) + 2 b mean(d) + b^2 = (k/255)^2 + b^2, as mean(d) = 0.
    return 10 * math.log10(1 / ((k / 255) ** 2 + bias**2))


def test_known_answers_through_the_command(tmp_path, dataset, bias_model):
    csv_path, json_path = tmp_path / "scores.csv", tmp_path / "scores.json"
    result = cli.invoke(app, ["evaluate", str(bias_model), "--data", str(dataset), "--split",
                              "val", "--csv", str(csv_path), "--json", str(json_path)])
    assert result.exit_code == 0, result.output
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["key"] for r in rows] == sorted(NOISE)
    for r in rows:
        k = NOISE[r["key"]]
        assert float(r["psnr_input"]) == pytest.approx(20 * math.log10(255 / k), abs=1e-4)
        assert float(r["psnr_output"]) == pytest.approx(expected_psnr(k, BIAS), abs=1e-4)
        degraded, target = (a.astype(np.float64) / 255 for a in make_pair(r["key"]))
        assert float(r["ssim_input"]) == pytest.approx(metrics.ssim(degraded, target), abs=1e-6)
        assert float(r["ssim_output"]) == pytest.approx(
            metrics.ssim(degraded + BIAS, target), abs=1e-5
        )
    report = json.loads(json_path.read_text())
    assert report["count"] == 3 and report["split"] == "val"
    mean_in = np.mean([20 * math.log10(255 / k) for k in NOISE.values()])
    mean_out = np.mean([expected_psnr(k, BIAS) for k in NOISE.values()])
    assert report["mean"]["psnr_input"] == pytest.approx(mean_in, abs=1e-4)
    assert report["mean"]["psnr_output"] == pytest.approx(mean_out, abs=1e-4)
    assert report["gain"]["psnr"] == pytest.approx(mean_out - mean_in, abs=1e-4)
    assert [r["key"] for r in report["images"]] == sorted(NOISE)
    # The printed summary shows both rows and the gain.
    assert f"{mean_in:.2f}" in result.output and f"{mean_out:.2f}" in result.output
    assert f"{mean_out - mean_in:+.2f}" in result.output


def test_scores_in_the_stored_tonemapped_domain(dataset, bias_model):
    # float16 data are scored as stored (here: tone-mapped), not mapped back to linear light.
    runner = KerasRunner(load_model(bias_model))
    (score,) = evaluate(runner, dataset, "tonemapped").images
    assert score.psnr_input == pytest.approx(20 * math.log10(256), abs=1e-9)
    assert score.psnr_output == pytest.approx(10 * math.log10(1 / (2**-16 + BIAS**2)), abs=1e-4)


def test_limit_and_bad_split(dataset, bias_model, tmp_path):
    runner = KerasRunner(load_model(bias_model))
    assert [r.key for r in evaluate(runner, dataset, "val", limit=2).images] == ["a", "b"]
    result = cli.invoke(app, ["evaluate", str(bias_model), "--data", str(dataset),
                              "--split", "test"])
    assert result.exit_code == 1
    assert "no split 'test'" in result.output and "tonemapped, val" in result.output


def test_lpienet_run_and_its_tflite_export_agree(tmp_path, dataset):
    from lpie_model.convert import convert

    run = tmp_path / "run"
    run.mkdir()
    keras.utils.set_random_seed(7)
    build_lpienet(widths=[4, 8, 4]).save_weights(run / WEIGHTS_FILE)
    write_config(run, {"widths": [4, 8, 4]})
    tflite = tmp_path / "model.tflite"
    tflite.write_bytes(convert(load_model(run)))  # dynamic size, builtin ops, fp32
    assert LiteRTRunner(tflite).fixed_size is None

    json_path = tmp_path / "lite.json"
    result = cli.invoke(app, ["evaluate", str(tflite), "--data", str(dataset), "--split", "val",
                              "--json", str(json_path)])
    assert result.exit_code == 0, result.output
    lite = json.loads(json_path.read_text())
    assert lite["runner"].startswith("LiteRT model.tflite")
    ref = evaluate(KerasRunner(load_model(run)), dataset, "val")
    for a, b in zip(lite["images"], ref.images, strict=True):
        assert a["key"] == b.key
        assert a["psnr_input"] == pytest.approx(b.psnr_input, abs=1e-9)
        # fp32 TFLite matches Keras to ~1e-6 per value: scores agree far below what is reported.
        assert a["psnr_output"] == pytest.approx(b.psnr_output, abs=1e-3)
        assert a["ssim_output"] == pytest.approx(b.ssim_output, abs=1e-5)
        assert a["psnr_output"] != pytest.approx(a["psnr_input"], abs=1e-2)  # the net did act


# --------------------------------------------------------------------------- value spaces


def _spaced_dataset(out: Path, space: str) -> Path:
    def produce_one(item: WorkItem):
        degraded, target = make_tonemapped_pair() if space == "reinhard" else make_pair("a")
        yield Example(item.key, degraded, target, {"source": item.key, "box": [0, 0, H, W]})

    run_job(str(out), "tiny", "test", {}, [WorkItem("p", "val", None)], produce_one,
            JobOptions(jobs=1), extra_manifest={"value_space": space})
    return out


def test_scores_in_srgb_on_request(tmp_path, bias_model):
    """--space srgb maps output, input and target from the dataset's space (here Reinhard) into
    sRGB before scoring; the default stays the stored domain."""
    from lpie_data.valuespace import linear_to_srgb, reinhard_inverse

    data = _spaced_dataset(tmp_path / "reinhard", "reinhard")
    degraded, target = (a.astype(np.float32) for a in make_tonemapped_pair())

    def srgb(y: np.ndarray) -> np.ndarray:
        return linear_to_srgb(reinhard_inverse(y))

    json_path = tmp_path / "s.json"
    result = cli.invoke(app, ["evaluate", str(bias_model), "--data", str(data), "--split", "val",
                              "--space", "srgb", "--json", str(json_path)])
    assert result.exit_code == 0, result.output
    assert "scored in srgb values" in result.output
    assert "records no value space" in " ".join(result.output.split())  # the .keras model
    report = json.loads(json_path.read_text())
    assert report["space"] == "srgb"
    want_in = metrics.psnr(srgb(degraded), srgb(target))
    want_out = metrics.psnr(srgb(np.clip(degraded + BIAS, 0, 1)), srgb(target))
    assert report["mean"]["psnr_input"] == pytest.approx(want_in, abs=1e-3)
    assert report["mean"]["psnr_output"] == pytest.approx(want_out, abs=1e-3)
    assert want_in != pytest.approx(20 * math.log10(256), abs=0.1)  # not the stored score
    stored = evaluate(KerasRunner(load_model(bias_model)), data, "val")
    assert stored.images[0].psnr_input == pytest.approx(20 * math.log10(256), abs=1e-9)
    bad = cli.invoke(app, ["evaluate", str(bias_model), "--data", str(data), "--split", "val",
                           "--space", "hdr"])
    # A choice Typer checks: a usage error (exit 2) that lists the valid spaces.
    shown = " ".join(bad.output.replace("│", " ").split())
    assert bad.exit_code == 2 and "'stored', 'linear', 'reinhard', 'srgb'" in shown


def test_a_model_gets_its_inputs_in_its_own_value_space(tmp_path):
    """A Reinhard-space model scored on an sRGB dataset: inputs mapped in, output mapped back."""
    from lpie_data.valuespace import convert

    data = _spaced_dataset(tmp_path / "srgb", "srgb")
    run = tmp_path / "run"
    run.mkdir()
    keras.utils.set_random_seed(6)
    build_lpienet(widths=[4, 8, 4]).save_weights(run / WEIGHTS_FILE)
    write_config(run, {"widths": [4, 8, 4]}, "reinhard")
    model = load_model(run)
    (score,) = evaluate(KerasRunner(model), data, "val").images
    degraded, target = (a.astype(np.float32) / 255 for a in make_pair("a"))
    out = model(convert(degraded, "srgb", "reinhard")[None]).numpy()[0]
    want = convert(np.clip(out, 0, 1), "reinhard", "srgb")
    assert score.psnr_output == pytest.approx(metrics.psnr(want, target), abs=1e-3)

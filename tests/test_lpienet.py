"""LPIENet builder: parameter counts, any input size, options, weight loading."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from lpie_data.errors import ConfigError, DataError
from lpie_model import build_lpienet, load_model
from lpie_model.checkpoint import write_config
from lpie_model.config import ModelConfig
from lpie_model.deploy import rebuild_for_shape
from lpie_model.errors import ModelConfigError
from lpie_model.layers import CLIP_MAX


@pytest.fixture(scope="module")
def base():
    return build_lpienet("base")


def test_param_counts_match_reference(base):
    assert base.count_params() == 133_652
    assert build_lpienet("large").count_params() == 514_308


def test_options_keep_param_count():
    # The figure/code alternatives are the same parameter count (lpienet.md).
    assert build_lpienet(activation="relu", irb_second_input="y").count_params() == 133_652


def test_custom_widths_and_dw_kernel():
    # One encoder stage + head only: conv 3x3 (3->8) + 2 IRB + attention + head(8 ch -> no concat).
    c = 8
    model = build_lpienet(widths=[c])
    head = 8 * 3 + 3 + 30 + 12 + 8 * 3 + 3 + 444 + 228 + 84
    stage = (27 * c + c) + 2 * (4 * c * c + 14 * c) + (3 * c * c + 23 * c)
    assert model.count_params() == stage + head
    # dw_kernel 5 adds 16 weights per depthwise channel: 2 IRB per stage x 5 stages + head.
    extra = 16 * (2 * (16 + 32 + 64 + 32 + 16) + 3)
    assert build_lpienet(dw_kernel=5).count_params() == 133_652 + extra


@pytest.mark.parametrize("hw", [(37, 53), (64, 64), (5, 3)])
def test_any_size_keeps_shape_and_range(base, hw):
    rng = np.random.default_rng(0)
    x = rng.random((2, *hw, 3), dtype=np.float32)
    y = base(x).numpy()
    assert y.shape == x.shape
    assert y.min() >= 0.0 and y.max() <= CLIP_MAX


def test_fixed_shape_rebuild_matches_dynamic(base):
    rng = np.random.default_rng(1)
    for hw in [(32, 48), (30, 50)]:
        fixed = rebuild_for_shape(base, *hw)
        assert fixed.input_shape[1:3] == hw
        x = rng.random((1, *hw, 3), dtype=np.float32)
        np.testing.assert_allclose(fixed(x).numpy(), base(x).numpy(), atol=1e-6)
    # A multiple of 4 needs no pad/crop layers.
    names = {layer.name for layer in rebuild_for_shape(base, 32, 48).layers}
    assert "pad" not in names and "crop" not in names


def test_bad_options_raise_model_config_error():
    with pytest.raises(ModelConfigError, match="valid variants: base, large"):
        build_lpienet("huge")
    with pytest.raises(ModelConfigError, match="activation"):
        build_lpienet(activation="gelu")
    with pytest.raises(ModelConfigError, match="widths"):
        build_lpienet(widths=[16, 32])
    with pytest.raises(ModelConfigError, match="dw_kernel"):
        build_lpienet(dw_kernel=4)
    with pytest.raises(ModelConfigError, match="valid keys"):
        ModelConfig.from_dict({"variant": "base", "depth": 3})


def test_build_from_a_config_equals_build_from_options():
    config = ModelConfig(widths=(4, 8, 4), activation="relu")
    a = build_lpienet(config)
    b = build_lpienet(widths=[4, 8, 4], activation="relu")
    assert a.lpie_config == b.lpie_config == config.resolved()
    assert a.count_params() == b.count_params()
    assert build_lpienet(config, activation="elu").lpie_config["activation"] == "elu"


def test_keras_file_options_are_recovered(tmp_path):
    """A .keras file carries no model.json: its options come from its layers and graph."""
    options = {"widths": (4, 8, 4), "activation": "relu", "dw_kernel": 5, "irb_second_input": "y"}
    path = tmp_path / "y.keras"
    build_lpienet(**options).save(path)
    assert load_model(path).lpie_config == ModelConfig(**options).resolved()


NETWORK_MODULES = ("layers", "lpienet", "losses", "metrics", "config", "errors", "deploy")


def test_the_network_imports_nothing_from_lpie_data():
    code = (
        "import sys\n"
        + "".join(f"import lpie_model.{m}\n" for m in NETWORK_MODULES)
        + "print(sorted(m for m in sys.modules if m.startswith('lpie_data')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_load_model_layouts(base, tmp_path):
    rng = np.random.default_rng(2)
    x = rng.random((1, 24, 20, 3), dtype=np.float32)
    want = base(x).numpy()

    run = tmp_path / "run"
    run.mkdir()
    base.save_weights(run / "best.weights.h5")
    write_config(run, {"variant": "base"})
    assert json.loads((run / "model.json").read_text()) == {"variant": "base"}
    loaded = load_model(run)
    np.testing.assert_array_equal(loaded(x).numpy(), want)
    assert loaded.lpie_config["variant"] == "base"

    bare = tmp_path / "bare.weights.h5"  # no model.json next to it: the architecture is given
    base.save_weights(bare)
    np.testing.assert_array_equal(load_model(bare, build={"variant": "base"})(x).numpy(), want)

    keras_file = tmp_path / "m.keras"
    base.save(keras_file)
    full = load_model(keras_file)
    np.testing.assert_array_equal(full(x).numpy(), want)
    assert full.lpie_config["widths"] == (16, 32, 64, 32, 16)
    assert full.lpie_config["irb_second_input"] == "m"


def test_load_model_errors(tmp_path):
    with pytest.raises(DataError, match="best.weights.h5"):
        load_model(tmp_path)
    (tmp_path / "best.weights.h5").write_bytes(b"")
    (tmp_path / "model.json").write_text(json.dumps({"variant": "base", "depth": 3}))
    with pytest.raises(ConfigError, match="valid keys"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"variant": "large"}))
    with pytest.raises(DataError, match="weights"):
        load_model(tmp_path)


@pytest.mark.parametrize("options", [{"activation": "relu"}, {"irb_second_input": "y"}])
def test_weights_without_their_model_json_are_refused(tmp_path, options):
    """ReLU / "y" weights fit the default network's shapes: loading them bare would be wrong."""
    keras.utils.set_random_seed(5)
    model = build_lpienet(widths=[4, 8, 4], **options)
    weights = tmp_path / "w.weights.h5"
    model.save_weights(weights)
    with pytest.raises(DataError, match=r"w.weights.h5: no model.json next to these weights"):
        load_model(weights)
    x = np.random.default_rng(0).random((1, 12, 16, 3), dtype=np.float32)
    given = load_model(weights, build={"widths": [4, 8, 4], **options})
    np.testing.assert_array_equal(given(x).numpy(), model(x).numpy())
    assert given.lpie_value_space is None


def test_arch_gives_bare_weights_their_architecture_from_the_cli(tmp_path):
    """`--arch` (a model.json or its JSON) loads bare ReLU weights into the ReLU network, for
    every command that takes MODEL; it is refused where the file holds its own architecture."""
    from typer.testing import CliRunner

    from lpie_model.checkpoint import architecture
    from lpie_model.cli import app
    from lpie_model.runtime import open_runner

    keras.utils.set_random_seed(3)
    options = {"widths": [4, 8, 4], "activation": "relu"}
    model = build_lpienet(**options)
    bare = tmp_path / "w.weights.h5"
    model.save_weights(bare)
    spec = tmp_path / "arch.json"
    spec.write_text(json.dumps(options))
    assert architecture(str(spec)) == architecture(json.dumps(options)) == options
    x = np.random.default_rng(0).random((16, 20, 3), dtype=np.float32)
    runner = open_runner(bare, build=architecture(str(spec)))
    np.testing.assert_allclose(runner.run(x), model(x[None]).numpy()[0], atol=1e-6)

    out = tmp_path / "w.tflite"
    result = CliRunner().invoke(app, ["export", str(bare), "--out", str(out), "--size", "16x20",
                                      "--arch", json.dumps(options)])
    assert result.exit_code == 0, result.output
    assert out.exists()
    bench = CliRunner().invoke(app, ["benchmark", str(bare), "--arch", str(spec), "--size",
                                     "16x16", "--no-latency"])
    assert bench.exit_code == 0, bench.output

    bad = CliRunner().invoke(app, ["export", str(bare), "--out", str(tmp_path / "b.tflite"),
                                   "--arch", "{variant: base"])
    assert bad.exit_code == 1 and "--arch: neither a file nor a JSON object" in bad.output
    assert not (tmp_path / "b.tflite").exists()
    write_config(tmp_path, options)  # now the weights have their model.json
    with pytest.raises(DataError, match=r"model.json gives these weights their architecture"):
        load_model(bare, build=options)
    with pytest.raises(DataError, match=r"w.tflite: a .tflite file holds its architecture"):
        open_runner(out, build=options)


@pytest.mark.parametrize("hw", [(37, 53), (30, 13), (3, 6)])
def test_in_model_padding_reflects_like_the_runner(base, hw):
    """An odd-sized input gives the output of its reflect-padded version, cropped back."""
    rng = np.random.default_rng(7)
    x = rng.random((1, *hw, 3), dtype=np.float32)
    h, w = (-(-n // 4) * 4 for n in hw)
    padded = np.pad(x, ((0, 0), (0, h - hw[0]), (0, w - hw[1]), (0, 0)), mode="reflect")
    want = base(padded).numpy()[:, : hw[0], : hw[1]]
    np.testing.assert_allclose(base(x).numpy(), want, atol=2e-6)
    fixed = rebuild_for_shape(base, *hw)
    np.testing.assert_allclose(fixed(x).numpy(), want, atol=2e-6)

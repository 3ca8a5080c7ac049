"""lpie_data.valuespace: known answers, round trips, numpy vs TensorFlow, datasets' value space."""

import json

import numpy as np
import pytest
from fixtures.sidd import make_sidd_tree
from typer.testing import CliRunner

from lpie_data import value_space_of
from lpie_data.cli import app
from lpie_data.errors import DataError
from lpie_data.shards import MANIFEST
from lpie_data.valuespace import (
    VALUE_SPACES,
    convert,
    from_linear,
    linear_to_srgb,
    reinhard,
    reinhard_inverse,
    srgb_to_linear,
    tf_convert,
    to_linear,
)

runner = CliRunner()


def _prepare_sidd(base):
    root = make_sidd_tree(base)
    out = base / "ds"
    r = runner.invoke(app, ["prepare", "sidd", "--root", str(root), "--out", str(out),
                            "--tile", "32", "--jobs", "1"])
    assert r.exit_code == 0, r.output
    return out


def _edit_manifest(path, **changes):
    m = json.loads((path / MANIFEST).read_text())
    for k, v in changes.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    (path / MANIFEST).write_text(json.dumps(m))


def test_prepared_dataset_records_its_value_space_and_inspect_shows_it(tmp_path):
    out = _prepare_sidd(tmp_path)
    assert json.loads((out / MANIFEST).read_text())["value_space"] == "srgb"
    assert value_space_of(str(out)) == ("srgb", False)
    r = runner.invoke(app, ["inspect", str(out)])
    assert r.exit_code == 0, r.output
    assert "value space: srgb" in r.output and "assumed" not in r.output


@pytest.mark.parametrize(("tonemap", "space"), [("reinhard", "reinhard"), ("none", "linear")])
def test_udc_records_its_value_space_by_tonemap(tmp_path, tonemap, space):
    from fixtures.udc_gopro import make_discnet

    root = make_discnet(tmp_path)
    out = tmp_path / "udc"
    r = runner.invoke(app, ["prepare", "udc", "--root", str(root), "--out", str(out), "--patch",
                            "32", "--tonemap", tonemap, "--jobs", "1"])
    assert r.exit_code == 0, r.output
    assert value_space_of(str(out)) == (space, False)


def test_gopro_and_synth_record_their_value_space(tmp_path):
    from fixtures.udc_gopro import make_gopro_flat

    out = tmp_path / "gopro"
    r = runner.invoke(app, ["prepare", "gopro", "--root", str(make_gopro_flat(tmp_path)),
                            "--out", str(out), "--jobs", "1"])
    assert r.exit_code == 0, r.output
    assert value_space_of(str(out)) == ("srgb", False)
    cfg = tmp_path / "s.toml"
    cfg.write_text('[synth]\ncrop = 16\npairs_per_image = 1\ntone_map = "none"\n')
    out = tmp_path / "synth"
    r = runner.invoke(app, ["synth", "--out", str(out), "--config", str(cfg), "--jobs", "1"])
    assert r.exit_code == 0, r.output
    assert value_space_of(str(out)) == ("linear", False)


@pytest.mark.parametrize(("command", "arguments", "extra", "space"), [
    ("prepare sidd", {}, {}, "srgb"),
    ("prepare gopro", {"blur": "blur"}, {}, "srgb"),
    ("prepare udc", {"tonemap": "reinhard"}, {}, "reinhard"),
    ("prepare udc", {"tonemap": "none"}, {}, "linear"),
    ("synth", {}, {"tone_map": "none"}, "linear"),
    ("synth", {}, {"tone_map": "srgb"}, "srgb"),
    ("synth", {"config": {"tone_map": "reinhard"}}, {}, "reinhard"),
])
def test_older_manifests_are_read_by_what_made_them(tmp_path, command, arguments, extra, space):
    out = _prepare_sidd(tmp_path)
    _edit_manifest(out, value_space=None, command=command, arguments=arguments, **extra)
    assert value_space_of(str(out)) == (space, True)
    r = runner.invoke(app, ["inspect", str(out)])
    assert r.exit_code == 0, r.output
    assert f"value space: {space} (assumed: older manifest)" in " ".join(r.output.split())


def test_unknown_value_space_is_a_data_error_naming_the_folder(tmp_path):
    out = _prepare_sidd(tmp_path)
    _edit_manifest(out, value_space=None, command="something else", name="other")
    with pytest.raises(DataError, match=str(out)):
        value_space_of(str(out))
    _edit_manifest(out, value_space="gamma22")
    with pytest.raises(DataError, match=str(out)):
        value_space_of(str(out))


# --- the maps themselves (docs/value-spaces.md, the reference table) ------------------------

LINEAR = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 1.0], np.float32)


def test_known_answers_linear_to_reinhard_and_srgb():
    np.testing.assert_allclose(reinhard(LINEAR), [0.038, 0.167, 0.286, 0.5, 0.667, 0.8],
                               atol=6e-4)
    np.testing.assert_allclose(linear_to_srgb(LINEAR), [0.100, 0.248, 0.349, 0.537, 0.735, 1.0],
                               atol=6e-4)
    np.testing.assert_allclose(convert(LINEAR, "linear", "reinhard"), reinhard(LINEAR))


def test_known_answers_srgb_to_reinhard():
    np.testing.assert_allclose(convert(np.float32([0.1, 0.2, 0.5]), "srgb", "reinhard"),
                               [0.039, 0.117, 0.461], atol=6e-4)


@pytest.mark.parametrize("space", list(VALUE_SPACES))
def test_round_trips(space):
    x = np.linspace(0.0, 1.0, 1001, dtype=np.float32)
    back = to_linear(from_linear(x, space), space)
    np.testing.assert_allclose(back, x, atol=2e-6, rtol=2e-5)
    if space != "srgb":  # sRGB saturates at white: values above 1 do not come back
        hdr = np.float32([1.0, 3.0, 40.0, 500.0])
        np.testing.assert_allclose(to_linear(from_linear(hdr, space), space), hdr, rtol=1e-4)
    np.testing.assert_allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=2e-6)
    np.testing.assert_allclose(reinhard_inverse(reinhard(x)), x, atol=2e-6)


PAIRS = [(a, b) for a in VALUE_SPACES for b in VALUE_SPACES]


def _samples(src):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (4, 5, 3)).astype(np.float32)
    if src == "linear":
        x = x * np.float32(8.0)
    elif src == "reinhard":
        x = np.minimum(x, np.float32(0.99))
    return x


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_tf_convert_agrees_with_convert_eagerly_and_in_a_tf_data_map(src, dst):
    tf = pytest.importorskip("tensorflow")
    x = _samples(src)
    want = convert(x, src, dst)
    eager = tf_convert(tf.constant(x), src, dst).numpy()
    np.testing.assert_allclose(eager, want, rtol=1e-5, atol=2e-6)
    ds = tf.data.Dataset.from_tensor_slices(x[None]).map(lambda t: tf_convert(t, src, dst))
    mapped = next(iter(ds)).numpy()
    np.testing.assert_allclose(mapped, want, rtol=1e-5, atol=2e-6)


def test_every_transform_is_written_once():
    """The Reinhard and sRGB constants appear as code only in lpie_data/valuespace.py (and in
    lpie_data/images.py until its own copies go); every other stage calls that module."""
    import tokenize
    from pathlib import Path

    top = Path(__file__).resolve().parents[1]
    constants = {"0.25", "12.92", "1.055", "0.055", "2.4", "0.04045", "0.0031308"}
    found = []
    for path in sorted([*top.glob("lpie_data/**/*.py"), *top.glob("lpie_model/**/*.py")]):
        if path.name in ("valuespace.py", "images.py") and path.parent.name == "lpie_data":
            continue
        with open(path, "rb") as f:
            for tok in tokenize.tokenize(f.readline):
                if tok.type == tokenize.NUMBER and tok.string in constants:
                    found.append(f"{path.relative_to(top)}:{tok.start[0]}: {tok.line.strip()}")
    assert not found, "value-space maps written outside lpie_data.valuespace:\n" + "\n".join(found)

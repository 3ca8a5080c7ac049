"""`lpie-data extract`: sRGB pictures by default, or (--stored) the stored values pixel-exact;
`lpie-data preview` shows sRGB too."""

import numpy as np
from sidd_fixtures import make_sidd_tree, read_png
from typer.testing import CliRunner

from lpie_data import iter_pairs
from lpie_data.cli import app
from lpie_data.images import read_image
from lpie_data.jobs import JobOptions, WorkItem, run_job
from lpie_data.records import Example
from lpie_data.valuespace import convert

runner = CliRunner()


def test_extract_uint8_pairs_match_records(tmp_path):
    root = make_sidd_tree(tmp_path)
    out = tmp_path / "ds"
    r = runner.invoke(app, ["prepare", "sidd", "--root", str(root), "--out", str(out),
                            "--tile", "32", "--jobs", "1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["extract", str(out), "--split", "train", "--count", "2",
                            "--out", str(tmp_path / "x")])
    assert r.exit_code == 0, r.output
    pairs = list(iter_pairs(str(out), "train"))[:2]
    files = sorted((tmp_path / "x").iterdir())
    assert len(files) == 4
    for pair in pairs:
        stem = pair.key.replace("/", "__")
        got = read_png(tmp_path / "x" / f"{stem}_input.png")
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, np.rint(pair.input * 255).astype(np.uint8))


def _produce(item):
    rng = np.random.default_rng(3)
    a16 = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    yield Example("k/0", a16, a16[::-1].copy(), {"source": "s", "box": [0, 0, 9, 11]})


def test_extract_stored_uint16_as_16bit_png(tmp_path):
    out = tmp_path / "ds"
    run_job(str(out), "t", "test", {}, [WorkItem("a", "train")], _produce, JobOptions(jobs=1))
    r = runner.invoke(app, ["extract", str(out), "--out", str(tmp_path / "x"), "--count", "1",
                            "--stored"])
    assert r.exit_code == 0, r.output
    got = read_image(tmp_path / "x" / "k__0_target.png")
    assert got.dtype == np.uint16
    rng = np.random.default_rng(3)
    a16 = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    np.testing.assert_array_equal(got, a16[::-1])


def test_extract_missing_split_fails(tmp_path):
    out = tmp_path / "ds"
    run_job(str(out), "t", "test", {}, [WorkItem("a", "train")], _produce, JobOptions(jobs=1),
            extra_manifest={"value_space": "reinhard"})
    r = runner.invoke(app, ["extract", str(out), "--split", "nope", "--out", str(tmp_path / "x")])
    assert r.exit_code == 1
    assert "nope" in r.output


def _dataset(tmp_path, space):
    out = tmp_path / f"ds-{space}"
    run_job(str(out), "t", "test", {}, [WorkItem("a", "train")], _produce_space,
            JobOptions(jobs=1), extra_manifest={"value_space": space})
    return out


def _produce_space(item):
    rng = np.random.default_rng(4)
    a16 = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    yield Example("k/0", a16, a16[::-1].copy(), {"source": "s", "box": [0, 0, 9, 11]})


def _srgb16(values, space):
    return np.rint(np.clip(convert(values, space, "srgb"), 0, 1) * 65535).astype(np.uint16)


def test_extract_writes_srgb_by_default_and_stored_values_on_request(tmp_path):
    out = _dataset(tmp_path, "reinhard")
    (pair,) = list(iter_pairs(str(out), "train"))[:1]
    r = runner.invoke(app, ["extract", str(out), "--out", str(tmp_path / "x"), "--count", "1"])
    assert r.exit_code == 0, r.output
    got = read_image(tmp_path / "x" / "k__0_target.png")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, _srgb16(pair.target, "reinhard"))
    r = runner.invoke(app, ["extract", str(out), "--out", str(tmp_path / "y"), "--count", "1",
                            "--stored"])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(read_image(tmp_path / "y" / "k__0_target.png"),
                                  np.rint(pair.target * 65535).astype(np.uint16))
    assert "--stored" in runner.invoke(app, ["extract", "--help"]).output


def test_extract_without_a_known_value_space_points_to_stored(tmp_path):
    out = tmp_path / "ds"
    run_job(str(out), "t", "test", {}, [WorkItem("a", "train")], _produce, JobOptions(jobs=1))
    r = runner.invoke(app, ["extract", str(out), "--out", str(tmp_path / "x")])
    assert r.exit_code == 1
    assert "value space" in r.output and "--stored" in r.output


def test_preview_shows_srgb(tmp_path):
    out = _dataset(tmp_path, "reinhard")
    (pair,) = list(iter_pairs(str(out), "train"))[:1]
    sheet = tmp_path / "sheet.png"
    r = runner.invoke(app, ["preview", str(out), "--out", str(sheet), "--count", "1"])
    assert r.exit_code == 0, r.output
    got = read_image(sheet)
    assert got.dtype == np.uint8
    # the 9 x 11 input is blown up to 256 rows by nearest neighbour: its first pixel is (0, 0)
    want = np.rint(np.clip(convert(pair.input, "reinhard", "srgb"), 0, 1) * 255)
    assert np.abs(got[0, 0].astype(int) - want[0, 0]).max() <= 1

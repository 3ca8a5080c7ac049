"""`lpie-data extract`: pairs written as files in their stored precision, pixel-exact."""

import numpy as np
from sidd_fixtures import make_sidd_tree, read_png
from typer.testing import CliRunner

from lpie_data import iter_pairs
from lpie_data.cli import app
from lpie_data.jobs import JobOptions, WorkItem, run_job
from lpie_data.records import Example

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


def test_extract_uint16_as_16bit_png(tmp_path):
    from lpie_data.images import read_image

    out = tmp_path / "ds"
    run_job(str(out), "t", "test", {}, [WorkItem("a", "train")], _produce, JobOptions(jobs=1))
    r = runner.invoke(app, ["extract", str(out), "--out", str(tmp_path / "x"), "--count", "1"])
    assert r.exit_code == 0, r.output
    got = read_image(tmp_path / "x" / "k__0_target.png")
    assert got.dtype == np.uint16
    rng = np.random.default_rng(3)
    a16 = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    np.testing.assert_array_equal(got, a16[::-1])


def test_extract_missing_split_fails(tmp_path):
    out = tmp_path / "ds"
    run_job(str(out), "t", "test", {}, [WorkItem("a", "train")], _produce, JobOptions(jobs=1))
    r = runner.invoke(app, ["extract", str(out), "--split", "nope", "--out", str(tmp_path / "x")])
    assert r.exit_code == 1
    assert "nope" in r.output

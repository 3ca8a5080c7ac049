"""`lpie-data inspect` (and --verify) and `lpie-data preview` (every help text: test_docs.py)."""

import shutil

import numpy as np
import pytest
from fixtures.sidd import read_png
from typer.testing import CliRunner

from lpie_data import iter_pairs, read_manifest
from lpie_data.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def dataset(sidd_dataset):
    return sidd_dataset


def test_inspect_shows_splits_counts_sizes_ranges(dataset):
    r = runner.invoke(app, ["inspect", str(dataset)])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # ignore line wrapping
    assert "made by 'lpie-data prepare sidd'" in text
    assert "train: 24 pairs in 1 shard(s)" in text
    assert "validation: 2 pairs in 1 shard(s)" in text
    assert "input uint8 [" in text and "target uint8 [" in text
    assert "KiB" in text or "MiB" in text


def test_verify_passes(dataset):
    r = runner.invoke(app, ["inspect", str(dataset), "--verify"])
    assert r.exit_code == 0, r.output
    assert "verified" in r.output and "26 records" in r.output


def _damaged(dataset, tmp_path, how):
    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)
    shard = copy / read_manifest(str(copy))["splits"]["train"]["shards"][0]["file"]
    data = shard.read_bytes()
    if how == "flip":
        b = bytearray(data)
        b[len(b) // 3] ^= 0x40
        shard.write_bytes(bytes(b))
    elif how == "truncate":
        shard.write_bytes(data[: len(data) - 100])
    elif how == "missing":
        shard.unlink()
    elif how == "appended":
        shard.write_bytes(data + data[:50])
    return copy, shard


@pytest.mark.parametrize("how", ["flip", "truncate", "missing", "appended"])
def test_verify_names_the_bad_shard(dataset, tmp_path, how):
    copy, shard = _damaged(dataset, tmp_path, how)
    r = runner.invoke(app, ["inspect", str(copy), "--verify"])
    assert r.exit_code == 1
    assert str(shard) in r.stderr
    assert "verified" not in r.output


def test_inspect_without_verify_does_not_read_shards(dataset, tmp_path):
    copy, _ = _damaged(dataset, tmp_path, "flip")
    assert runner.invoke(app, ["inspect", str(copy)]).exit_code == 0


def test_inspect_not_a_dataset(tmp_path):
    r = runner.invoke(app, ["inspect", str(tmp_path)])
    assert r.exit_code == 1 and "no manifest.json" in r.stderr


def test_preview_contact_sheet(dataset, tmp_path):
    sheet_path = tmp_path / "sub" / "sheet.png"
    r = runner.invoke(app, ["preview", str(dataset), "--split", "train", "--count", "3",
                            "--gain", "4", "--out", str(sheet_path)])
    assert r.exit_code == 0, r.output
    sheet = read_png(sheet_path)
    cell, gap = 256, 4
    assert sheet.shape == (3 * cell + 2 * gap, 3 * cell + 2 * gap, 3)
    pairs = list(iter_pairs(str(dataset), "train"))[:3]
    for row, p in enumerate(pairs):
        y0 = row * (cell + gap)
        # 32 px tiles shown 256 px high: nearest neighbour x 8.
        ones = np.ones((cell // p.input.shape[0],) * 2 + (1,), np.float32)
        want = [(np.kron(a, ones) * 255 + 0.5).astype(np.uint8) for a in (
            p.input, p.target, np.clip(np.abs(p.input - p.target) * 4, 0, 1))]
        for col in range(3):
            x0 = col * (cell + gap)
            np.testing.assert_array_equal(sheet[y0 : y0 + cell, x0 : x0 + cell], want[col])
        assert (sheet[y0 : y0 + cell, cell : cell + gap] == 255).all()  # white gap


def test_preview_errors(dataset, tmp_path):
    r = runner.invoke(app, ["preview", str(dataset), "--split", "test", "--out",
                            str(tmp_path / "s.png")])
    assert r.exit_code == 1 and "no split 'test'" in r.stderr
    assert not (tmp_path / "s.png").exists()


def test_preview_bad_count_and_missing_shard(dataset, tmp_path):
    r = runner.invoke(app, ["preview", str(dataset), "--count", "0", "--out",
                            str(tmp_path / "s.png")])
    # A usage error (exit 2) from the option's own bound, before any work.
    assert r.exit_code == 2 and "count" in r.stderr and "greater than or equal to 1" in r.stderr
    assert not (tmp_path / "s.png").exists()
    copy, shard = _damaged(dataset, tmp_path, "missing")
    r = runner.invoke(app, ["preview", str(copy), "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 1 and f"{shard}: cannot read shard" in r.stderr
    assert not (tmp_path / "s.png").exists()


def test_preview_out_must_be_a_file_and_extract_out_a_folder(dataset, tmp_path):
    r = runner.invoke(app, ["preview", str(dataset), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "is a directory" in " ".join(r.stderr.replace("│", " ").split())
    (tmp_path / "f").write_text("x")
    r = runner.invoke(app, ["extract", str(dataset), "--out", str(tmp_path / "f")])
    assert r.exit_code == 2 and "is a file" in " ".join(r.stderr.replace("│", " ").split())

"""`lpie-data prepare sidd` on fixture trees copying the real SIDD layouts, through the CLI."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.sidd import (
    FOLDERS,
    corrupt_middle,
    make_sidd_tree,
    make_validation,
    medium_path,
    png_16bit,
    png_grey,
    read_png,
    truncate,
    write_mat_v5,
    write_png,
)
from typer.testing import CliRunner

from lpie_data import iter_pairs, read_manifest
from lpie_data.cli import app
from lpie_data.errors import DataError
from lpie_data.sources import sidd
from lpie_data.tiling import tile_starts

runner = CliRunner()


def prepare(root: Path, out: Path, *extra: str):
    args = ["prepare", "sidd", "--root", str(root), "--out", str(out), "--tile", "32",
            "--jobs", "1", *extra]
    return runner.invoke(app, args)


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def check_pixel_exact(out: Path, root: Path, split: str = "train") -> list:
    """Every tile equals the source PNGs at its recorded box; returns the pairs."""
    pairs = list(iter_pairs(str(out), split))
    cache: dict[str, np.ndarray] = {}
    for p in pairs:
        y, x, h, w = p.meta["box"]
        for arr, rel in ((p.input, p.meta["source"]), (p.target, p.meta["target_source"])):
            if rel not in cache:
                cache[rel] = read_png(root / rel)
            assert arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
            np.testing.assert_array_equal(np.rint(arr * 255).astype(np.uint8),
                                          cache[rel][y : y + h, x : x + w])
    return pairs


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    base = tmp_path_factory.mktemp("sidd")
    return make_sidd_tree(base)


def test_medium_tiles_counts_and_meta(medium, tmp_path):
    out = tmp_path / "out"
    r = ok(prepare(medium, out))
    assert "24 pairs" in r.output and "from 4 frame pairs" in r.output
    pairs = check_pixel_exact(out, medium)
    # 64 x 96 frames, tile 32: 2 x 3 tiles per frame, 2 folders x 2 frames.
    assert len(pairs) == 24
    boxes = {tuple(p.meta["box"]) for p in pairs}
    assert boxes == {(y, x, 32, 32) for y in (0, 32) for x in (0, 32, 64)}
    first = pairs[0]
    assert first.key == f"{FOLDERS[0]}/010/00000_00000"
    assert first.meta == {
        "source": f"Data/{FOLDERS[0]}/0001_NOISY_SRGB_010.PNG",
        "target_source": f"Data/{FOLDERS[0]}/0001_GT_SRGB_010.PNG",
        "box": [0, 0, 32, 32], "folder": FOLDERS[0], "frame": "010",
        "instance": 1, "scene": 1, "phone": "S6", "phone_name": "Galaxy S6 Edge",
        "iso": 100, "shutter": 60, "illuminant": 3200, "brightness": "L",
    }
    last = pairs[-1].meta
    assert (last["scene"], last["phone"], last["iso"], last["shutter"], last["illuminant"],
            last["brightness"], last["instance"]) == (2, "G4", 1600, 1000, 5500, "N", 52)
    m = read_manifest(str(out))
    assert m["command"] == "prepare sidd"
    assert m["arguments"] == {"root": str(medium.resolve()), "tile": 32, "stride": 32,
                              "val_dir": None}
    assert list(m["splits"]) == ["train"]
    assert (m["splits"]["train"]["input_dtype"], m["splits"]["train"]["target_dtype"]) == (
        "uint8", "uint8")


def test_tile_starts():
    assert tile_starts(96, 32, 32) == [0, 32, 64]
    assert tile_starts(100, 32, 32) == [0, 32, 64]  # remainder (4 px) dropped
    assert tile_starts(100, 32, 24) == [0, 24, 48, 68]  # last snapped to the edge
    assert tile_starts(96, 32, 16) == [0, 16, 32, 48, 64]  # already ends at the edge
    assert tile_starts(32, 32, 8) == [0]
    assert tile_starts(31, 32, 32) == []
    # The paper's 1000 x 1000 crops of an S6 frame: 3 x 5 = 15 ("12 per image" on smaller).
    assert len(tile_starts(3000, 1000, 1000)) * len(tile_starts(5328, 1000, 1000)) == 15


def test_stride_overlap_snaps_last_row_and_column(medium, tmp_path):
    out = tmp_path / "out"
    ok(prepare(medium, out, "--stride", "24"))
    pairs = check_pixel_exact(out, medium)
    per_frame = {(y, x) for y in (0, 24, 32) for x in (0, 24, 48, 64)}
    assert len(pairs) == 4 * len(per_frame)
    assert {tuple(p.meta["box"][:2]) for p in pairs} == per_frame


def test_remainder_dropped(tmp_path):
    root = make_sidd_tree(tmp_path, folders=FOLDERS[:1], size=(70, 100))
    ok(prepare(root, tmp_path / "out", "--tile", "30"))
    pairs = check_pixel_exact(tmp_path / "out", root)
    assert {tuple(p.meta["box"][:2]) for p in pairs} == {(y, x) for y in (0, 30)
                                                         for x in (0, 30, 60)}


@pytest.mark.parametrize("form", ["medium-data", "small", "small-data"])
def test_root_forms(medium, tmp_path, form):
    if form == "medium-data":
        root = medium / "Data"
        ref = tmp_path / "ref"
        ok(prepare(medium, ref))
    else:
        root = make_sidd_tree(tmp_path, small=True)
        if form == "small-data":
            root = root / "Data"
    out = tmp_path / "out"
    ok(prepare(root, out))
    pairs = check_pixel_exact(out, root)
    if form == "medium-data":
        assert pairs[0].meta["source"] == f"{FOLDERS[0]}/0001_NOISY_SRGB_010.PNG"
        ref_pairs = list(iter_pairs(str(ref), "train"))
        assert [p.key for p in pairs] == [p.key for p in ref_pairs]
        for a, b in zip(pairs, ref_pairs, strict=True):
            np.testing.assert_array_equal(a.input, b.input)
    else:
        assert len(pairs) == 2 * 6  # one pair per folder
        prefix = "Data/" if form == "small" else ""
        assert pairs[0].meta["source"] == f"{prefix}{FOLDERS[0]}/NOISY_SRGB_010.PNG"
        assert pairs[0].meta["target_source"] == f"{prefix}{FOLDERS[0]}/GT_SRGB_010.PNG"
        assert {p.meta["frame"] for p in pairs} == {"010"}


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_validation_split_from_mat(tmp_path, version):
    root = make_sidd_tree(tmp_path, folders=FOLDERS[:1], frames=("010",))
    noisy, gt = make_validation(root, version, n=2, b=3)
    out = tmp_path / "out"
    ok(prepare(root, out))
    m = read_manifest(str(out))
    assert m["splits"]["validation"]["examples"] == 6
    assert m["splits"]["train"]["examples"] == 6
    vals = list(iter_pairs(str(out), "validation"))
    assert [p.key for p in vals] == [f"validation/{i:02d}/{b:02d}" for i in range(2)
                                     for b in range(3)]
    for p in vals:
        i, b = p.meta["image"], p.meta["block"]
        np.testing.assert_array_equal(np.rint(p.input * 255).astype(np.uint8), noisy[i, b])
        np.testing.assert_array_equal(np.rint(p.target * 255).astype(np.uint8), gt[i, b])
        assert p.meta["source"] == "ValidationNoisyBlocksSrgb.mat"
        assert p.meta["target_source"] == "ValidationGtBlocksSrgb.mat"
        assert p.meta["box"] == [0, 0, 256, 256]


def test_both_mat_versions_give_the_same_validation_shard(tmp_path):
    made = {}
    for version in ("5", "7.3"):
        root = make_sidd_tree(tmp_path / version, folders=FOLDERS[:1], frames=("010",))
        make_validation(root / "Data", version)  # one folder below ROOT is searched too
        ok(prepare(root, tmp_path / f"out{version}"))
        made[version] = files(tmp_path / f"out{version}")["sidd-validation.tfrecord-00000-of-00001"]
    assert made["5"] == made["7.3"]


def test_val_dir_option(tmp_path):
    root = make_sidd_tree(tmp_path, folders=FOLDERS[:1], frames=("010",))
    vdir = tmp_path / "elsewhere"
    make_validation(vdir, "7.3", n=1, b=2)
    out = tmp_path / "out"
    ok(prepare(root, out, "--val-dir", str(vdir)))
    assert read_manifest(str(out))["splits"]["validation"]["examples"] == 2
    r = prepare(root, tmp_path / "out2", "--val-dir", str(tmp_path / "nothing"))
    assert r.exit_code != 0 and "nothing: no ValidationNoisyBlocksSrgb.mat" in r.stderr


def test_resume_after_corrupt_png_found_mid_run(tmp_path):
    root = make_sidd_tree(tmp_path)
    ref = tmp_path / "ref"
    ok(prepare(root, ref))
    victim = medium_path(root, FOLDERS[1], "NOISY", "010")  # the third of four items
    good = victim.read_bytes()
    corrupt_middle(victim)  # header still valid: only the worker decoding it notices
    out = tmp_path / "out"
    r = prepare(root, out)
    assert r.exit_code != 0
    assert str(victim) in r.stderr and "corrupt or truncated image" in r.stderr
    assert not (out / "manifest.json").exists()

    victim.write_bytes(good)
    r = ok(prepare(root, out))
    assert "2 resumed" in r.output
    assert files(out) == files(ref)

    r = ok(prepare(root, out))
    assert "already complete" in r.output and "nothing to do" in r.output
    assert files(out) == files(ref)


def test_other_arguments_refused_unless_overwrite(medium, tmp_path):
    out = tmp_path / "out"
    ok(prepare(medium, out))
    r = prepare(medium, out, "--stride", "16")
    assert r.exit_code != 0 and "other arguments" in r.stderr and "--overwrite" in r.stderr
    ok(prepare(medium, out, "--stride", "16", "--overwrite"))
    assert read_manifest(str(out))["arguments"]["stride"] == 16


def test_same_bytes_with_jobs_1_and_2(tmp_path):
    root = make_sidd_tree(tmp_path)
    make_validation(root, "5", n=1, b=2)
    ok(prepare(root, tmp_path / "one", "--shard-mb", "1"))
    ok(prepare(root, tmp_path / "two", "--shard-mb", "1", "--jobs", "2"))
    assert files(tmp_path / "one") == files(tmp_path / "two")


def test_small_shards(medium, tmp_path):
    # --shard-mb is whole MiB; sizing itself is tested in test_shards.py.
    out = tmp_path / "out"
    ok(prepare(medium, out, "--shard-mb", "1"))
    assert sorted(f for f in files(out) if ".tfrecord-" in f) == [
        "sidd-train.tfrecord-00000-of-00001"]


# ------------------------------------------------------------------------- bad input


def _break(kind: str, tmp_path: Path) -> tuple[Path, str, list[str]]:
    """Build a tree with one fault; returns (root, text the message must name, extra args)."""
    root = make_sidd_tree(tmp_path)
    folder = root / "Data" / FOLDERS[1]
    noisy = medium_path(root, FOLDERS[1], "NOISY", "011")
    gt = medium_path(root, FOLDERS[1], "GT", "011")
    if kind == "missing root":
        return tmp_path / "nope", str(tmp_path / "nope"), []
    if kind == "no scene folders":
        empty = tmp_path / "empty"
        (empty / "Data" / "not_a_scene").mkdir(parents=True)
        return empty, str(empty / "Data"), []
    if kind == "missing GT":
        gt.unlink()
        return root, str(noisy), []
    if kind == "missing NOISY":
        noisy.unlink()
        return root, str(gt), []
    if kind == "empty scene":
        for f in folder.iterdir():
            f.unlink()
        return root, str(folder), []
    if kind == "size mismatch":
        write_png(gt, read_png(gt)[:, :80])
        return root, str(noisy), []
    if kind == "corrupt png":
        corrupt_middle(noisy)
        return root, str(noisy), []
    if kind == "truncated png":
        truncate(gt)
        return root, str(gt), []
    if kind == "truncated header":
        gt.write_bytes(gt.read_bytes()[:20])
        return root, str(gt), []
    if kind == "16-bit png":
        png_16bit(noisy)
        return root, str(noisy), []
    if kind == "grey png":
        png_grey(gt)
        return root, str(gt), []
    if kind == "duplicate frame":
        shutil.copy(noisy, folder / "NOISY_SRGB_011.PNG")
        return root, "NOISY_SRGB_011.PNG", []
    if kind.startswith("mat"):
        make_validation(root, "7.3" if "7.3" in kind else "5", n=1, b=1)
        mat = root / "ValidationGtBlocksSrgb.mat"
        if kind == "mat garbage":
            mat.write_bytes(b"not a mat file" * 100)
        elif kind == "mat truncated 7.3":
            truncate(mat, 0.3)
        elif kind == "mat truncated 5":
            truncate(mat, 0.3)
        elif kind == "mat wrong shape":
            write_mat_v5(mat, "ValidationGtBlocksSrgb", np.zeros((1, 1, 64, 64, 3), np.uint8))
        elif kind == "mat wrong dtype":
            write_mat_v5(mat, "ValidationGtBlocksSrgb", np.zeros((1, 1, 256, 256, 3)))
        elif kind == "mat one missing":
            mat.unlink()
        return root, str(mat), []
    raise AssertionError(kind)


BAD = ["missing root", "no scene folders", "missing GT", "missing NOISY", "empty scene",
       "size mismatch", "corrupt png", "truncated png", "truncated header", "16-bit png",
       "grey png", "duplicate frame", "mat garbage", "mat truncated 7.3", "mat truncated 5",
       "mat wrong shape", "mat wrong dtype", "mat one missing"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input(tmp_path, kind):
    root, named, extra = _break(kind, tmp_path)
    out = tmp_path / "out"
    r = prepare(root, out, *extra)
    assert r.exit_code == 1, (r.output, r.exception)
    assert isinstance(r.exception, SystemExit)  # a clean exit, not a traceback
    assert named in r.stderr, r.stderr
    assert r.stderr.startswith("error:")
    assert not (out / "manifest.json").exists()


def test_bad_input_messages_say_what_is_wrong(tmp_path):
    expect = {
        "size mismatch": "size 64x96 differs from 0052_GT_SRGB_011.PNG (64x80)",
        "16-bit png": "expected an 8-bit RGB PNG, found 16-bit RGB",
        "grey png": "expected an 8-bit RGB PNG, found 8-bit grey",
        "missing GT": "its GT partner (frame 011) is missing",
        "mat wrong shape": "expected shape (N, B, 256, 256, 3), found (1, 1, 64, 64, 3)",
        "mat wrong dtype": "expected uint8 blocks, found double",
        "truncated png": "corrupt or truncated image",
    }
    for i, (kind, text) in enumerate(expect.items()):
        root, _, _ = _break(kind, tmp_path / str(i))
        r = prepare(root, tmp_path / str(i) / "out")
        assert text in r.stderr, (kind, r.stderr)


def test_library_refuses_bad_tiling(medium):
    with pytest.raises(DataError, match="bad tiling"):
        sidd.work_items(medium, 32, 40)
    with pytest.raises(DataError, match="smaller than the 128x128 tile"):
        sidd.work_items(medium, 128, 128)


def test_manifest_is_json_with_sorted_keys(medium, tmp_path):
    out = tmp_path / "out"
    ok(prepare(medium, out))
    text = (out / "manifest.json").read_text()
    assert json.loads(text)["format"] == "lpie-pairs"
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("extra, text", [
    (["--stride", "0"], "bad tiling: tile 32, stride 0"),
    (["--stride", "40"], "bad tiling: tile 32, stride 40"),
    (["--jobs", "0"], "jobs must be a number of workers >= 1"),
])
def test_bad_options(medium, tmp_path, extra, text):
    r = prepare(medium, tmp_path / "out", *extra)
    assert r.exit_code == 1 and text in r.stderr, r.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()

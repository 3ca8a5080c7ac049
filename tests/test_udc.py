"""`lpie-data prepare udc` on tiny copies of DISCNet's and MIPI's layouts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.udc_gopro import (
    UDC_SIZE,
    UDC_TEST,
    UDC_TRAIN,
    make_discnet,
    make_mipi,
    save_npy,
    tree_bytes,
)
from typer.testing import CliRunner

from lpie_data import iter_pairs, read_manifest
from lpie_data.cli import app
from lpie_data.errors import ConfigError, DataError
from lpie_data.jobs import JobOptions
from lpie_data.prepare import prepare_udc
from lpie_data.sources import udc

PATCH = 32  # four non-overlapping patches per 64 x 64 image, as 400 is for 800 x 800
# uint16 storage of a value in [0, 1): at most half a step, plus float32 rounding of the map.
UINT16_TOL = 0.5 / 65535 + 1e-7  # 7.64e-6 < 2e-5 required
# float16 storage: relative half-ULP 2**-11 for normal values; an absolute 2**-25 (half the
# subnormal spacing) for values below 2**-14 ~ 6.1e-5, where relative precision cannot hold.
F16_REL, F16_ABS = 2.0**-11, 2.0**-25

runner = CliRunner()


def prepare(root: Path, out: Path, *extra: str, jobs: int = 1):
    args = ["prepare", "udc", "--root", str(root), "--out", str(out), "--patch", str(PATCH),
            "--jobs", str(jobs), *extra]
    return runner.invoke(app, args)


def pairs(out: Path, split: str) -> list:
    return list(iter_pairs(str(out), split))


def check_tiles_reinhard(root: Path, ps: list) -> None:
    """Every stored patch equals the tone-mapped source at its recorded box."""
    for p in ps:
        y, x, h, w = p.meta["box"]
        for stored, rel in ((p.input, p.meta["source"]), (p.target, p.meta["target_source"])):
            src = np.load(root / rel)[y : y + h, x : x + w]
            exact = np.float64(src) / (np.float64(src) + 0.25)
            assert np.abs(stored - exact).max() <= UINT16_TOL
            # And bit-exact against the documented float32 recipe.
            s32 = src.astype(np.float32)
            q = np.rint(s32 / (s32 + np.float32(0.25)) * np.float32(65535)).astype(np.uint16)
            np.testing.assert_array_equal(np.rint(stored * 65535).astype(np.uint16), q)


def test_discnet_default(tmp_path: Path) -> None:
    root = make_discnet(tmp_path)
    out = tmp_path / "out"
    r = prepare(root, out)
    assert r.exit_code == 0, r.output
    m = read_manifest(str(out))
    assert m["splits"]["train"]["examples"] == 4 * len(UDC_TRAIN)
    assert m["splits"]["test"]["examples"] == 4 * len(UDC_TEST)
    assert m["splits"]["train"]["input_dtype"] == "uint16"
    assert m["arguments"]["psf_pos"] == 5 and m["arguments"]["tonemap"] == "reinhard"
    train = pairs(out, "train")
    stems = sorted(n[:-4] for n in UDC_TRAIN)
    assert [p.key for p in train] == [f"{s}/{y:05d}_{x:05d}" for s in stems
                                      for y in (0, 32) for x in (0, 32)]
    p = train[0]
    assert p.meta["box"] == [0, 0, PATCH, PATCH]
    assert p.meta["source"] == f"input/ZTE_new_5/train/{stems[0]}.npy"
    assert p.meta["target_source"] == f"GT/train/{stems[0]}.npy"
    assert p.meta["psf_position"] == 5 and p.meta["tone_map"] == "reinhard"
    assert p.meta["source_folder"] == "input/ZTE_new_5/train"
    assert p.meta["target_folder"] == "GT/train" and p.meta["layout"] == "discnet"
    assert p.input.shape == (PATCH, PATCH, 3) and p.input.max() < 1.0
    test = pairs(out, "test")
    assert test[0].meta["source_folder"] == "input/ZTE_new_5/test"
    check_tiles_reinhard(root, train + test)
    # A rerun of the same command is a no-op.
    again = prepare(root, out)
    assert again.exit_code == 0 and "already complete" in again.output


def test_storage_precision_of_both_tone_maps() -> None:
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(0, 500, 30000), rng.uniform(0, 1e-3, 3000),
                        [0.0, 1e-7, 3e-5, 6.2e-5, 0.1, 499.99, 500.0]]).astype(np.float32)
    x = x[: (x.size // 3) * 3].reshape(-1, 1, 3)
    stored = udc.ENCODINGS["reinhard"](x)
    assert stored.dtype == np.uint16
    err = np.abs(stored / 65535.0 - np.float64(x) / (np.float64(x) + 0.25))
    assert err.max() <= UINT16_TOL < 2e-5
    half = udc.ENCODINGS["none"](x)
    assert half.dtype == np.float16
    err = np.abs(np.float64(half) - np.float64(x))
    assert np.all(err <= F16_REL * np.abs(np.float64(x)) + F16_ABS)
    big = x >= 2.0**-14
    assert (err[big] / np.float64(x[big])).max() < 1e-3


def test_discnet_tonemap_none(tmp_path: Path) -> None:
    root = make_discnet(tmp_path)
    out = tmp_path / "out"
    assert prepare(root, out, "--tonemap", "none").exit_code == 0
    assert read_manifest(str(out))["splits"]["train"]["input_dtype"] == "float16"
    for p in pairs(out, "train"):
        assert p.meta["tone_map"] == "none"
        y, x, h, w = p.meta["box"]
        for stored, rel in ((p.input, p.meta["source"]), (p.target, p.meta["target_source"])):
            src = np.float64(np.load(root / rel)[y : y + h, x : x + w])
            assert np.all(np.abs(stored - src) <= F16_REL * src + F16_ABS)
            assert stored.max() <= 500.0


def test_discnet_all_positions(tmp_path: Path) -> None:
    root = make_discnet(tmp_path, positions=(1, 5, 9))
    out = tmp_path / "out"
    assert prepare(root, out, "--psf-pos", "all").exit_code == 0
    train = pairs(out, "train")
    assert len(train) == 3 * 4 * len(UDC_TRAIN)
    assert len({p.key for p in train}) == len(train)
    assert train[0].key.startswith("ZTE_new_1/") and train[-1].key.startswith("ZTE_new_9/")
    by_key = {p.key: p for p in train}
    p9 = by_key[f"ZTE_new_9/{UDC_TRAIN[0][:-4]}/00032_00000"]
    assert p9.meta["psf_position"] == 9 and p9.meta["source_folder"] == "input/ZTE_new_9/train"
    check_tiles_reinhard(root, train)
    # One position only: --psf-pos 9
    out9 = tmp_path / "out9"
    assert prepare(root, out9, "--psf-pos", "9").exit_code == 0
    assert {p.meta["psf_position"] for p in pairs(out9, "test")} == {9}
    bad = prepare(root, tmp_path / "out7", "--psf-pos", "7")
    assert bad.exit_code == 1 and "ZTE_new_7" in bad.output and "1, 5, 9" in bad.output
    assert prepare(root, tmp_path / "outx", "--psf-pos", "x").exit_code == 1


def test_mipi_layout(tmp_path: Path) -> None:
    root = make_mipi(tmp_path)
    out = tmp_path / "out"
    r = prepare(root, out)
    assert r.exit_code == 0, r.output
    assert f"{root / 'test'}: skipped" in r.output
    m = read_manifest(str(out))
    assert sorted(m["splits"]) == ["test", "train"]
    test = pairs(out, "test")
    assert len(test) == 4 * len(UDC_TEST)
    assert test[0].meta["source_folder"] == "validation/input"
    assert test[0].meta["target_source"] == f"validation/GT/{sorted(UDC_TEST)[0]}"
    assert test[0].meta["psf_position"] is None and test[0].meta["layout"] == "mipi"
    check_tiles_reinhard(root, pairs(out, "train") + test)
    refused = prepare(root, tmp_path / "o2", "--psf-pos", "all")
    assert refused.exit_code == 1 and "MIPI" in refused.output
    # Validation inputs released before their ground truth: skipped with a note.
    shutil.rmtree(root / "validation" / "GT")
    items, notes = udc.work_items(root, PATCH)
    assert {i.split for i in items} == {"train"}
    assert any("validation: inputs without ground truth" in n for n in notes)


@pytest.mark.parametrize("maker,gt_dir", [(make_discnet, "GT/train"),
                                          (make_mipi, "training/GT")])
def test_ground_truth_only_is_refused(tmp_path: Path, maker, gt_dir: str) -> None:
    root = maker(tmp_path, with_inputs=False)
    r = prepare(root, tmp_path / "out")
    assert r.exit_code == 1
    assert "lpie-data synth --source" in r.output and str(root / gt_dir) in r.output
    assert not (tmp_path / "out" / "manifest.json").exists()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


def _bad_data(value: float):
    def edit(path: Path) -> None:
        a = np.load(path)
        a[3, 5, 1] = value
        np.save(path, a)
    return edit


BAD_INPUTS = {
    "ndim": lambda p: np.save(p, np.zeros((UDC_SIZE, UDC_SIZE), np.float32)),
    "channels": lambda p: np.save(p, np.zeros((UDC_SIZE, UDC_SIZE, 4), np.float32)),
    "dtype": lambda p: np.save(p, np.zeros((UDC_SIZE, UDC_SIZE, 3), np.uint16)),
    "nan": _bad_data(np.nan),
    "inf": _bad_data(np.inf),
    "negative": _bad_data(-0.5),
    "truncated": _truncate,
    "not_npy": lambda p: p.write_bytes(b"garbage, not an array"),
    "shape": lambda p: np.save(p, np.zeros((UDC_SIZE, UDC_SIZE + 8, 3), np.float32)),
    "missing_gt": lambda p: p.unlink(),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_the_file(tmp_path: Path, case: str) -> None:
    root = make_discnet(tmp_path)
    # The last training pair in work order, so data errors surface after other items ran.
    name = sorted(UDC_TRAIN)[-1]
    target = root / ("GT" if case == "missing_gt" else "input/ZTE_new_5") / "train" / name
    BAD_INPUTS[case](target)
    out = tmp_path / "out"
    r = prepare(root, out)
    assert r.exit_code == 1, r.output
    named = root / "input/ZTE_new_5/train" / name if case == "missing_gt" else target
    assert str(named) in r.output
    assert not (out / "manifest.json").exists()


def test_missing_input_partner_and_split(tmp_path: Path) -> None:
    root = make_discnet(tmp_path)
    (root / "input/ZTE_new_5/test" / UDC_TEST[0]).unlink()
    r = prepare(root, tmp_path / "out")
    assert r.exit_code == 1 and str(root / "GT/test" / UDC_TEST[0]) in r.output
    shutil.rmtree(root / "input/ZTE_new_5/test")
    r = prepare(root, tmp_path / "out")
    assert r.exit_code == 1 and str(root / "input/ZTE_new_5/test") in r.output


def test_library_errors_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="neither DISCNet"):
        udc.work_items(tmp_path)
    root = make_discnet(tmp_path)
    for wrong in (tmp_path, root / "GT", root / "input" / "ZTE_new_5"):
        with pytest.raises(DataError, match=f"did you mean {root}"):
            udc.work_items(wrong)
    with pytest.raises(DataError, match="smaller than"):
        udc.work_items(root, patch=128)
    with pytest.raises(ConfigError, match="reinhard, none"):
        udc.work_items(root, tone_map="srgb")


def test_resume_after_failure_matches_clean_run(tmp_path: Path) -> None:
    root = make_discnet(tmp_path)
    clean = tmp_path / "clean"
    assert prepare(root, clean).exit_code == 0
    victim = root / "GT/train" / sorted(UDC_TRAIN)[1]
    original = victim.read_bytes()
    _bad_data(np.nan)(victim)
    out = tmp_path / "out"
    r = prepare(root, out)
    assert r.exit_code == 1 and str(victim) in r.output
    assert not (out / "manifest.json").exists()
    victim.write_bytes(original)
    r = prepare(root, out)  # the same command again: resumes
    assert r.exit_code == 0 and "1 resumed" in r.output, r.output
    assert tree_bytes(out) == tree_bytes(clean)


def test_default_jobs_from_the_command_line(tmp_path: Path) -> None:
    from lpie_data.jobs import default_jobs

    root = make_discnet(tmp_path)
    args = ["prepare", "udc", "--root", str(root), "--out", str(tmp_path / "out"),
            "--patch", str(PATCH)]
    result = runner.invoke(app, args)  # no --jobs: one worker per two cores
    assert result.exit_code == 0, result.output
    n = default_jobs()
    assert f"({n} worker{'s' if n != 1 else ''})" in result.output
    help_text = runner.invoke(app, ["prepare", "udc", "--help"], env={"COLUMNS": "250"}).output
    assert "[default: (one per two cores)]" in help_text


def test_jobs_do_not_change_bytes(tmp_path: Path) -> None:
    root = make_discnet(tmp_path, positions=(4, 5))
    outs = []
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        prepare_udc(root, out, patch=PATCH, psf_pos="all",
                    job=JobOptions(jobs=jobs, shard_bytes=60_000))
        outs.append(tree_bytes(out))
    assert sum(".tfrecord-" in name for name in outs[0]) > 2
    assert outs[0] == outs[1]


def test_other_existing_output_is_refused(tmp_path: Path) -> None:
    root = make_discnet(tmp_path)
    out = tmp_path / "out"
    assert prepare(root, out).exit_code == 0
    r = prepare(root, out, "--tonemap", "none")
    assert r.exit_code == 1 and "--overwrite" in r.output
    assert prepare(root, out, "--tonemap", "none", "--overwrite").exit_code == 0
    assert read_manifest(str(out))["arguments"]["tonemap"] == "none"


def test_worker_rechecks_files_changed_after_planning(tmp_path: Path) -> None:
    root = make_discnet(tmp_path)
    items, _ = udc.work_items(root, PATCH)
    path = root / items[0].args.input
    _truncate(path)  # truncated between planning and work: np.load's ValueError
    with pytest.raises(DataError, match=f"{path}: truncated .npy"):
        list(udc.produce(items[0]))
    # float64 and Fortran-ordered arrays are read too, and mapped in float32.
    gt = np.load(root / items[1].args.target)
    save_npy(root / items[1].args.target, np.asfortranarray(gt.astype(np.float64)))
    expected = udc.reinhard_uint16(gt[:PATCH, :PATCH])
    np.testing.assert_array_equal(next(iter(udc.produce(items[1]))).target, expected)



def test_tone_map_in_blocks_equals_the_value_space_encoding(monkeypatch) -> None:
    from lpie_data.valuespace import encode, reinhard

    rng = np.random.default_rng(3)
    image = (500.0 * rng.random((80, 96, 3), dtype=np.float32) ** 6).astype(np.float32)
    image[0, :4, 0] = [0.0, -0.0, 1e-7, 500.0]
    monkeypatch.setattr(udc, "BLOCK_VALUES", 1000)  # 3 rows of 96 x 3 values per block
    for x in (image, image[7:70, 40:95], image[:5], image[:1, :1],
              image.reshape(80, 2, 48 * 3)[:, :1, :].reshape(80, 48, 3)):
        np.testing.assert_array_equal(udc.reinhard_uint16(x), encode(reinhard(x), "reinhard"))
    monkeypatch.setattr(udc, "BLOCK_VALUES", 16)  # fewer values than one row: a row per block
    np.testing.assert_array_equal(udc.reinhard_uint16(image), encode(reinhard(image), "reinhard"))


def test_input_digest_from_the_mapped_files_equals_reading_them(tmp_path: Path) -> None:
    from lpie_data import fingerprint

    root = make_discnet(tmp_path)
    items, _ = udc.work_items(root, PATCH)
    fingerprint._READ.clear()
    fingerprint._file_hash.cache_clear()
    list(udc.produce(items[0]))
    noted = dict(fingerprint._READ)
    assert {k[0] for k in noted} == {str(root / items[0].args.input),
                                     str(root / items[0].args.target)}
    from_mapping = fingerprint.inputs_digest(items[0])
    assert not fingerprint._READ  # both taken
    fingerprint._file_hash.cache_clear()
    assert fingerprint.inputs_digest(items[0]) == from_mapping  # read from the files
    # A file changed after it was mapped is hashed anew, not taken from the note.
    list(udc.produce(items[0]))
    fingerprint._file_hash.cache_clear()
    path = root / items[0].args.input
    save_npy(path, np.load(path)[::-1].copy())
    assert fingerprint.inputs_digest(items[0]) != from_mapping

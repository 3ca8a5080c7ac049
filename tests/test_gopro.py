"""`lpie-data prepare gopro` on tiny copies of GOPRO_Large and its flattened repack."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.udc_gopro import (
    GOPRO_H,
    GOPRO_TEST,
    GOPRO_TRAIN,
    GOPRO_W,
    frame,
    make_gopro_flat,
    make_gopro_nested,
    png_bytes,
    tree_bytes,
    write_png,
)
from PIL import Image
from typer.testing import CliRunner

from lpie_data import iter_pairs, read_manifest
from lpie_data.cli import app
from lpie_data.errors import ConfigError, DataError
from lpie_data.jobs import JobOptions
from lpie_data.prepare import prepare_gopro
from lpie_data.sources import gopro

runner = CliRunner()


def prepare(root: Path, out: Path, *extra: str, jobs: int = 1):
    args = ["prepare", "gopro", "--root", str(root), "--out", str(out), "--jobs", str(jobs),
            *extra]
    return runner.invoke(app, args)


def expected_keys(seqs: dict[str, tuple[str, ...]]) -> list[str]:
    return [f"{s}/{f}" for s in sorted(seqs) for f in sorted(seqs[s])]


def check_frames(root: Path, out: Path, split: str) -> list:
    """Each stored pair is exactly the source frames named in its meta."""
    ps = list(iter_pairs(str(out), split))
    for p in ps:
        assert p.meta["box"] == [0, 0, GOPRO_H, GOPRO_W]
        for stored, rel in ((p.input, p.meta["source"]), (p.target, p.meta["target_source"])):
            src = np.asarray(Image.open(root / rel))
            np.testing.assert_array_equal(np.rint(stored * 255).astype(np.uint8), src)
    return ps


def test_nested_layout(tmp_path: Path) -> None:
    root = make_gopro_nested(tmp_path)
    out = tmp_path / "out"
    r = prepare(root, out)
    assert r.exit_code == 0, r.output
    # Tiny tree: the standard counts differ, so a warning and a summary note.
    assert "warning:" in r.output and "note:" in r.output and "2103" in r.output
    assert "1111" in r.output
    m = read_manifest(str(out))
    assert m["splits"]["train"]["input_dtype"] == "uint8"
    assert m["arguments"]["blur"] == "blur"
    train = check_frames(root, out, "train")
    test = check_frames(root, out, "test")
    assert [p.key for p in train] == expected_keys(GOPRO_TRAIN)
    assert [p.key for p in test] == expected_keys(GOPRO_TEST)
    by_key = {p.key: p for p in train}
    p = by_key["GOPR0374_11_00/000047"]  # 000047 also exists in GOPR0372_07_00
    assert p.meta["sequence"] == "GOPR0374_11_00" and p.meta["frame"] == "000047"
    assert p.meta["blur"] == "blur" and p.meta["layout"] == "nested"
    assert p.meta["source"] == "train/GOPR0374_11_00/blur/000047.png"
    assert p.meta["target_source"] == "train/GOPR0374_11_00/sharp/000047.png"


def test_blur_gamma(tmp_path: Path) -> None:
    root = make_gopro_nested(tmp_path)
    out = tmp_path / "out"
    assert prepare(root, out, "--blur", "blur_gamma").exit_code == 0
    ps = check_frames(root, out, "train")
    assert {p.meta["blur"] for p in ps} == {"blur_gamma"}
    assert ps[0].meta["source"] == f"train/{ps[0].key.replace('/', '/blur_gamma/')}.png"


def test_flat_layout(tmp_path: Path) -> None:
    root = make_gopro_flat(tmp_path)
    out = tmp_path / "out"
    r = prepare(root, out)
    assert r.exit_code == 0, r.output
    train = check_frames(root, out, "train")
    assert [p.key for p in train] == expected_keys(GOPRO_TRAIN)
    p = train[0]
    assert p.meta["source"] == "train/input/GOPR0372_07_00-000047.png"
    assert p.meta["target_source"] == "train/target/GOPR0372_07_00-000047.png"
    assert (p.meta["sequence"], p.meta["frame"], p.meta["blur"]) == (
        "GOPR0372_07_00", "000047", "input")
    assert [p.key for p in check_frames(root, out, "test")] == expected_keys(GOPRO_TEST)
    r = prepare(root, tmp_path / "o2", "--blur", "blur_gamma")
    assert r.exit_code == 1 and "--blur blur_gamma" in r.output


def test_standard_counts_give_no_warning(tmp_path: Path) -> None:
    one = png_bytes(np.zeros((2, 2, 3), np.uint8))
    base = tmp_path / "GOPRO_Large"
    for split, n in gopro.STANDARD_COUNTS.items():
        for i in range(n):
            seq = base / split / f"GOPR{i % 11:04d}_11_00"
            for folder in ("blur", "sharp"):
                (seq / folder).mkdir(parents=True, exist_ok=True)
                (seq / folder / f"{i:06d}.png").write_bytes(one)
    items, notes = gopro.work_items(base)
    assert len(items) == 2103 + 1111 and notes == []
    shutil.rmtree(base / "test" / "GOPR0003_11_00")
    _, notes = gopro.work_items(base)
    assert len(notes) == 1 and "1111" in notes[0]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


SEQ, FRAME = "GOPR0374_11_00", "000047"  # the last training pair in work order
BAD_INPUTS = {
    # case: (edit of the tree, the file the message must name)
    "missing_sharp": (lambda b: (b / "sharp" / f"{FRAME}.png").unlink(), "blur"),
    "missing_blur": (lambda b: (b / "blur" / f"{FRAME}.png").unlink(), "sharp"),
    "size": (lambda b: write_png(b / "blur" / f"{FRAME}.png", frame(np.random.default_rng(0),
                                                                       GOPRO_H, GOPRO_W + 2)),
             "blur"),
    "not_png": (lambda b: (b / "blur" / f"{FRAME}.png").write_bytes(b"JFIF not a png"), "blur"),
    "truncated": (lambda b: _truncate(b / "blur" / f"{FRAME}.png"), "blur"),
    "grey": (lambda b: write_png(b / "sharp" / f"{FRAME}.png",
                                 np.zeros((GOPRO_H, GOPRO_W), np.uint8)), "sharp"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_the_file(tmp_path: Path, case: str) -> None:
    root = make_gopro_nested(tmp_path)
    seq_dir = root / "train" / SEQ
    edit, folder = BAD_INPUTS[case]
    edit(seq_dir)
    out = tmp_path / "out"
    r = prepare(root, out)
    assert r.exit_code == 1, r.output
    assert str(seq_dir / folder / f"{FRAME}.png") in r.output
    assert not (out / "manifest.json").exists()


def test_flat_bad_inputs(tmp_path: Path) -> None:
    root = make_gopro_flat(tmp_path)
    victim = root / "test" / "target" / "GOPR0396_11_00-000047.png"
    victim.rename(root / "test" / "target" / "GOPR0396_11_00-000048.png")
    r = prepare(root, tmp_path / "out")
    assert r.exit_code == 1
    assert str(root / "test" / "input" / "GOPR0396_11_00-000047.png") in r.output
    for name in ("input", "target"):
        write_png(root / "test" / name / "nosequence.png", frame(np.random.default_rng(1)))
    (root / "test" / "target" / "GOPR0396_11_00-000048.png").rename(victim)
    with pytest.raises(DataError, match="nosequence.png: not named"):
        gopro.work_items(root)


def test_library_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        gopro.work_items(tmp_path / "nothing")
    root = make_gopro_nested(tmp_path)
    with pytest.raises(DataError, match="did you mean"):
        gopro.work_items(tmp_path)
    with pytest.raises(ConfigError, match="blur, blur_gamma"):
        gopro.work_items(root, "sharp")
    shutil.rmtree(root / "test" / "GOPR0396_11_00" / "blur_gamma")
    with pytest.raises(DataError, match="GOPR0396_11_00/blur_gamma: missing"):
        gopro.work_items(root, "blur_gamma")


def test_resume_after_failure_matches_clean_run(tmp_path: Path) -> None:
    root = make_gopro_nested(tmp_path)
    clean = tmp_path / "clean"
    assert prepare(root, clean).exit_code == 0
    victim = root / "train" / "GOPR0374_11_00" / "sharp" / "000001.png"  # third item
    original = victim.read_bytes()
    _truncate(victim)
    out = tmp_path / "out"
    r = prepare(root, out)
    assert r.exit_code == 1 and str(victim) in r.output
    assert not (out / "manifest.json").exists()
    victim.write_bytes(original)
    r = prepare(root, out)  # the same command again: resumes
    assert r.exit_code == 0 and "2 resumed" in r.output, r.output
    assert tree_bytes(out) == tree_bytes(clean)


def test_jobs_do_not_change_bytes(tmp_path: Path) -> None:
    root = make_gopro_nested(tmp_path)
    outs = []
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        prepare_gopro(root, out, job=JobOptions(jobs=jobs, shard_bytes=10_000))
        outs.append(tree_bytes(out))
    assert sum(".tfrecord-" in name for name in outs[0]) > 2
    assert outs[0] == outs[1]
    r = prepare(root, tmp_path / "cli2", jobs=2)
    assert r.exit_code == 0, r.output

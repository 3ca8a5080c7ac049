"""The Python entry points run every ``lpie-data`` job exactly as the CLI does: same shard
bytes, same manifest; JobOptions validation; the one contract every source follows."""

import ast
from pathlib import Path

import numpy as np
import pytest
from fixtures_udc_gopro import make_discnet, make_gopro_nested, make_mipi, tree_bytes
from PIL import Image
from sidd_fixtures import make_sidd_tree, make_validation
from typer.testing import CliRunner

import lpie_data
from lpie_data import JobOptions, prepare_gopro, prepare_sidd, prepare_udc, synthesize
from lpie_data.cli import app
from lpie_data.errors import ConfigError, OutputError
from lpie_data.items import WorkItem
from lpie_data.sources import gopro, sidd, udc
from lpie_data.synth import SynthConfig

runner = CliRunner()
SERIAL = JobOptions(jobs=1)


def cli(*args: str) -> None:
    r = runner.invoke(app, [*args, "--jobs", "1"])
    assert r.exit_code == 0, r.output


def same_dataset(a: Path, b: Path) -> None:
    files_a, files_b = tree_bytes(a), tree_bytes(b)
    assert any(".tfrecord-" in name for name in files_a) and "manifest.json" in files_a
    assert files_a.keys() == files_b.keys()
    for name in files_a:
        assert files_a[name] == files_b[name], name


def test_prepare_sidd_from_python_matches_cli(tmp_path):
    root = make_sidd_tree(tmp_path / "in")
    make_validation(root, n=1, b=2)
    cli("prepare", "sidd", "--root", str(root), "--out", str(tmp_path / "cli"), "--tile", "32",
        "--stride", "16")
    summary = prepare_sidd(root, tmp_path / "py", tile=32, stride=16, job=SERIAL)
    same_dataset(tmp_path / "cli", tmp_path / "py")
    assert summary.splits["validation"]["examples"] == 2 and not summary.noop
    assert prepare_sidd(root, tmp_path / "cli", tile=32, stride=16, job=SERIAL).noop


def test_prepare_udc_from_python_matches_cli(tmp_path):
    root = make_discnet(tmp_path / "in", positions=(4, 5))
    cli("prepare", "udc", "--root", str(root), "--out", str(tmp_path / "cli"), "--patch", "32",
        "--tonemap", "none", "--psf-pos", "all")
    summary = prepare_udc(root, tmp_path / "py", patch=32, tone_map="none", psf_pos="all",
                          job=SERIAL)
    same_dataset(tmp_path / "cli", tmp_path / "py")
    assert set(summary.splits) == {"train", "test"}


def test_prepare_gopro_from_python_matches_cli(tmp_path):
    root = make_gopro_nested(tmp_path / "in")
    cli("prepare", "gopro", "--root", str(root), "--out", str(tmp_path / "cli"),
        "--blur", "blur_gamma")
    summary = prepare_gopro(root, tmp_path / "py", blur="blur_gamma", job=SERIAL)
    same_dataset(tmp_path / "cli", tmp_path / "py")
    assert any("2103" in note for note in summary.notes)  # the fixture is a partial tree


def test_synthesize_from_python_matches_cli(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(
            photos / f"p{i}.png")
    psf = rng.random((7, 7, 3)).astype(np.float32) ** 3
    np.save(tmp_path / "psf.npy", psf)
    config = tmp_path / "synth.toml"
    config.write_text("[synth]\ncrop = 24\npairs_per_image = 2\n")
    cli("synth", "--out", str(tmp_path / "cli"), "--source", str(photos), "--psf",
        str(tmp_path / "psf.npy"), "--config", str(config), "--seed", "5",
        "--val-fraction", "0.34", "--source-space", "linear")
    summary = synthesize(tmp_path / "py", sources=[photos], psfs=[tmp_path / "psf.npy"],
                         config=SynthConfig(crop=24, pairs_per_image=2, source_space="linear"),
                         seed=5, val_fraction=0.34, job=SERIAL)
    same_dataset(tmp_path / "cli", tmp_path / "py")
    assert sum(s["examples"] for s in summary.splits.values()) == 6


def test_job_options_progress_and_warnings(tmp_path):
    root = make_mipi(tmp_path / "in")  # test/ has no ground truth: a note
    calls, warned = [], []
    job = JobOptions(jobs=1, progress=lambda done, total: calls.append((done, total)),
                     warn=warned.append)
    summary = prepare_udc(root, tmp_path / "out", patch=32, job=job)
    assert warned and warned == summary.notes
    assert calls[0] == (0, summary.items) and calls[-1] == (summary.items, summary.items)


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"backend": "spark"}, OutputError, "unknown backend 'spark'; valid: loky, threading, dask"),
    ({"jobs": 0}, ConfigError, "jobs must be"),
    ({"shard_bytes": 0}, ConfigError, "shard size"),
])
def test_job_options_refuse_bad_values(options, error, message):
    with pytest.raises(error, match=message):
        JobOptions(**options)


def test_job_options_are_frozen():
    with pytest.raises(AttributeError):
        SERIAL.jobs = 4  # type: ignore[misc]


def test_every_source_returns_items_and_notes(tmp_path):
    sidd_root = make_sidd_tree(tmp_path / "sidd")
    plans = [sidd.work_items(sidd_root, 32, 32), udc.work_items(make_discnet(tmp_path), 32),
             gopro.work_items(make_gopro_nested(tmp_path))]
    for items, notes in plans:
        assert items and all(isinstance(it, WorkItem) for it in items)
        assert isinstance(notes, list) and all(isinstance(n, str) for n in notes)


def test_sources_are_leaves():
    """Sources import the item contract, never the job runner, the CLI or each other."""
    folder = Path(lpie_data.__file__).parent / "sources"
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not imported & {"lpie_data.jobs", "lpie_data.cli", "lpie_data.prepare"}, path
        assert not any(m and m.startswith("lpie_data.sources") for m in imported), path


def test_package_exports_the_entry_points():
    from lpie_data import prepare
    from lpie_data.synth import pipeline

    assert lpie_data.prepare_sidd is prepare.prepare_sidd
    assert lpie_data.synthesize is pipeline.synthesize
    assert set(lpie_data.__all__) >= {"JobOptions", "prepare_sidd", "prepare_udc",
                                      "prepare_gopro", "synthesize"}
    with pytest.raises(AttributeError):
        lpie_data.prepare_everything  # noqa: B018

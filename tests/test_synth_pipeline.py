"""The simulator end to end: known answers, determinism, splits, sources, bad inputs, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from lpie_data import iter_pairs, read_manifest
from lpie_data.cli import app
from lpie_data.errors import ConfigError, DataError
from lpie_data.jobs import JobOptions
from lpie_data.records import finished
from lpie_data.synth import SynthConfig, synthesize, synthesize_pair
from lpie_data.synth.blur import to_channels_first
from lpie_data.synth.noise import NoiseParams
from lpie_data.synth.psf import make_psf
from lpie_data.synth.sampling import PairParams, assign_splits, pair_rng
from lpie_data.synth.tonemap import reinhard
from lpie_data.valuespace import srgb_to_linear

SERIAL = JobOptions(jobs=1)

runner = CliRunner()
EXACT = {"noise": "none", "x_max": float("inf"), "tone_map": "none", "exposure": 1.0}


def make_photos(folder: Path, n: int = 3, size: tuple[int, int] = (48, 56)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = (rng.random((*size, 3)) * 255).astype(np.uint8)
        iio.imwrite(folder / f"photo_{i}.png", img)
    return folder


def make_psfs(folder: Path, sizes=(7, 9)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for s in sizes:
        np.save(folder / f"psf_{s}.npy", rng.random((s, s, 3)).astype(np.float32) ** 3)
    return folder


def dirac_file(path: Path, size: int = 5) -> Path:
    d = np.zeros((size, size, 3), np.float32)
    d[size // 2, size // 2] = 1
    np.save(path, d)
    return path


def read_all(path: Path) -> dict[str, object]:
    m = read_manifest(str(path))
    return {p.key: p for split in m["splits"] for p in iter_pairs(str(path), split)}


def test_dirac_no_noise_no_clip_no_tone_map_returns_x_exactly():
    rng = np.random.default_rng(0)
    x = rng.random((30, 40, 3)).astype(np.float32) * 500
    d = np.zeros((9, 9, 3), np.float32)
    d[4, 4] = 1
    params = PairParams((5, 6, 20, 24), 1.0, float("inf"), 0, 0.0, NoiseParams())
    inp, tgt = synthesize_pair(to_channels_first(x), params, make_psf(d, "dirac"), "none", rng)
    assert np.array_equal(inp, x[5:25, 6:30]) and np.array_equal(tgt, x[5:25, 6:30])


def test_dirac_dataset_of_npy_sources_stores_x(tmp_path):
    src = tmp_path / "gt"
    src.mkdir()
    rng = np.random.default_rng(3)
    # multiples of 1/4 up to 500 are exact in float16
    x = (np.rint(rng.random((24, 32, 3)) * 2000) / 4).astype(np.float32)
    np.save(src / "0001.npy", x)
    cfg = SynthConfig(crop=64, pairs_per_image=2, **EXACT)
    synthesize(tmp_path / "out", sources=[src], psfs=[dirac_file(tmp_path / "dirac.npy")],
               config=cfg, job=SERIAL)
    pairs = read_all(tmp_path / "out")
    assert sorted(pairs) == ["gt/0001/000", "gt/0001/001"]
    for p in pairs.values():
        assert p.meta["box"] == [0, 0, 24, 32]
        assert np.array_equal(p.input, x) and np.array_equal(p.target, x)
        assert p.meta["x_max"] is None  # no clipping
    m = read_manifest(str(tmp_path / "out"))
    assert m["splits"]["train"]["input_dtype"] == "float16" and m["tone_map"] == "none"


def test_photos_are_linearised_and_meta_records_every_parameter(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    iio.imwrite(photos / "grey.png", np.full((20, 30, 3), 128, np.uint8))
    tifffile.imwrite(photos / "deep.tif", np.full((20, 30, 3), 30000, np.uint16))
    cfg = SynthConfig(crop=16, pairs_per_image=1, **{**EXACT, "tone_map": "srgb"})
    synthesize(tmp_path / "out", sources=[photos], psfs=[dirac_file(tmp_path / "d.npy")],
               config=cfg, job=SERIAL, val_fraction=0.0)
    pairs = read_all(tmp_path / "out")
    grey = pairs["photos/grey/000"]
    assert np.abs(grey.target - 128 / 255).max() < 2e-5  # srgb(linear(v)) == v
    deep = pairs["photos/deep/000"]
    assert np.abs(deep.target - 30000 / 65535).max() < 2e-5  # 16 bits kept
    for key in ("source", "box", "psf", "psf_rotation", "beta1", "beta2", "poisson", "x_max",
                "exposure", "tone_map", "noise", "seed", "pair"):
        assert key in grey.meta
    assert grey.meta["psf"] == "d" and grey.meta["box"][2:] == [16, 16]

    cfg = SynthConfig(crop=16, pairs_per_image=1, **EXACT)
    synthesize(tmp_path / "lin", sources=[photos], psfs=[dirac_file(tmp_path / "d.npy")],
               config=cfg, job=SERIAL, val_fraction=0.0)
    grey = read_all(tmp_path / "lin")["photos/grey/000"]
    expected = srgb_to_linear(np.float32(128 / 255))
    assert np.abs(grey.target - expected).max() < 1e-3 * expected


def test_same_bytes_for_any_jobs(tmp_path):
    photos = make_photos(tmp_path / "photos", n=4)
    psfs = make_psfs(tmp_path / "psfs")
    cfg = SynthConfig(crop=32, pairs_per_image=2, exposure=[1, 3], psf_rotation=5.0,
                      noise="sidd", poisson=True)
    for jobs in (1, 2):
        synthesize(tmp_path / f"j{jobs}", sources=[photos], psfs=[psfs], config=cfg,
                   job=JobOptions(jobs=jobs), seed=7, val_fraction=0.25)
    files = sorted(p.name for p in (tmp_path / "j1").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "j2").iterdir())
    assert any(".tfrecord-" in f for f in files)
    for name in files:
        assert (tmp_path / "j1" / name).read_bytes() == (tmp_path / "j2" / name).read_bytes()


def test_fft_threads_do_not_change_the_pairs(tmp_path):
    """A worker's FFT threads (its share of the cores, with the noise drawn on a helper thread
    meanwhile) must not change its Examples: same keys, order, meta and bits."""
    from dataclasses import replace

    from lpie_data.synth.pipeline import plan, produce

    photos = make_photos(tmp_path / "photos", n=1, size=(90, 70))
    psfs = make_psfs(tmp_path / "psfs", sizes=(31, 33))
    cfg = SynthConfig(crop=40, pairs_per_image=5, noise="unprocessing", psf_rotation=3.0)
    items, *_ = plan(cfg, [photos], [psfs], seed=5, val_fraction=0.0)
    item = items[0]

    def made(workers: int) -> list:
        return [finished(ex) for ex in produce(
            replace(item, args=replace(item.args, fft_workers=workers)))]

    one, threaded = made(1), made(3)
    assert [e.key for e in threaded] == [e.key for e in one] == [
        f"{item.key}/{i:03d}" for i in range(5)]
    for a, b in zip(one, threaded, strict=True):
        assert a.meta == b.meta
        assert a.input.tobytes() == b.input.tobytes()
        assert a.target.tobytes() == b.target.tobytes()
    assert len({e.input.tobytes() for e in one}) == 5  # five different pairs


def test_adding_a_source_leaves_other_pairs_unchanged_and_splits_by_image(tmp_path):
    a = make_photos(tmp_path / "a", n=3)
    b = make_photos(tmp_path / "b", n=2, size=(40, 40))
    psfs = make_psfs(tmp_path / "psfs")
    cfg = SynthConfig(crop=24, pairs_per_image=2)
    synthesize(tmp_path / "one", sources=[a], psfs=[psfs], config=cfg, job=SERIAL, seed=3)
    synthesize(tmp_path / "two", sources=[a, b], psfs=[psfs], config=cfg, job=SERIAL, seed=3)
    one, two = read_all(tmp_path / "one"), read_all(tmp_path / "two")
    assert len(one) == 6 and len(two) == 10
    for key, pair in one.items():
        assert np.array_equal(pair.input, two[key].input)
        assert np.array_equal(pair.target, two[key].target)
        assert pair.meta == two[key].meta
    m = read_manifest(str(tmp_path / "two"))
    by_split = {s: {p.meta["source"] for p in iter_pairs(str(tmp_path / "two"), s)}
                for s in m["splits"]}
    assert by_split["validation"] and not by_split["train"] & by_split["validation"]
    other = read_all(tmp_path / "one")
    seeds_differ = SynthConfig(crop=24, pairs_per_image=2)
    synthesize(tmp_path / "seed4", sources=[a], psfs=[psfs], config=seeds_differ, job=SERIAL,
               seed=4)
    assert not np.array_equal(read_all(tmp_path / "seed4")["a/photo_0/000"].input,
                              other["a/photo_0/000"].input)


def test_split_assignment_rules():
    keys = [f"s/{i}" for i in range(20)]
    splits = assign_splits(keys, 0, 0.1)
    assert sum(v == "validation" for v in splits.values()) == 2
    assert assign_splits(keys[:2], 0, 0.01) != {k: "train" for k in keys[:2]}
    assert set(assign_splits(keys[:2], 0, 0.9).values()) == {"train", "validation"}
    assert set(assign_splits(keys[:1], 0, 0.5).values()) == {"train"}
    assert set(assign_splits(keys, 0, 0.0).values()) == {"train"}
    a = pair_rng(0, "x/y", 1).random(4)
    assert np.array_equal(a, pair_rng(0, "x/y", 1).random(4))
    assert not np.array_equal(a, pair_rng(0, "x/y", 2).random(4))


def test_lpie_dataset_as_source_uses_its_targets(tmp_path):
    photos = make_photos(tmp_path / "photos", n=2)
    cfg = SynthConfig(crop=24, pairs_per_image=1, x_max=float("inf"))
    synthesize(tmp_path / "first", sources=[photos], psfs=[make_psfs(tmp_path / "psfs")],
               config=cfg, job=SERIAL)
    first = read_all(tmp_path / "first")
    again = SynthConfig(crop=64, pairs_per_image=1, noise="none", x_max=float("inf"),
                        exposure=1.0)
    synthesize(tmp_path / "second", sources=[tmp_path / "first"],
               psfs=[dirac_file(tmp_path / "d.npy")], config=again, job=SERIAL, val_fraction=0.0)
    synthesize(tmp_path / "third", sources=[f"{tmp_path / 'first'}:validation"],
               psfs=[dirac_file(tmp_path / "d.npy")], config=again, job=SERIAL, val_fraction=0.0)
    # Only the train split by default; another one when named as DATASET:split.
    for out, split in (("second", "train"), ("third", "validation")):
        made = read_all(tmp_path / out)
        assert len(made) == 1
        for pair in made.values():
            assert pair.meta["source"].startswith(f"first/{split}/")
            # reinhard-stored targets decode to linear light and tone-map back to themselves
            match = [k for k, t in first.items() if t.target.shape == pair.target.shape
                     and np.abs(t.target - pair.target).max() < 3e-5]
            assert len(match) == 1
            assert match[0] in {p.key for p in iter_pairs(str(tmp_path / "first"), split)}


def test_library_errors_come_before_any_output(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        synthesize(out, sources=[tmp_path / "empty"])
    with pytest.raises(DataError, match="missing"):
        synthesize(out, sources=[tmp_path / "missing"])
    with pytest.raises(ConfigError, match="val_fraction"):
        synthesize(out, val_fraction=1.5)
    assert not out.exists()


# --- the command line -------------------------------------------------------------------------


def test_cli_default_run_uses_builtin_photos_and_psf(tmp_path):
    cfg = tmp_path / "synth.toml"
    cfg.write_text("[synth]\ncrop = 48\npairs_per_image = 1\nexposure = [1, 2]\n")
    out = tmp_path / "demo"
    r = runner.invoke(app, ["synth", "--out", str(out), "--config", str(cfg), "--jobs", "1"])
    assert r.exit_code == 0, r.output
    assert "built-in" in r.output
    m = read_manifest(str(out))
    assert m["splits"]["train"]["examples"] == 5 and m["splits"]["validation"]["examples"] == 1
    assert m["psfs"][0]["id"] == "builtin-udc" and m["synth"]["crop"] == 48
    pair = next(iter_pairs(str(out), "train"))
    assert pair.input.shape == (48, 48, 3) and pair.meta["psf"] == "builtin-udc"
    assert 0.0 <= pair.input.min() and pair.input.max() <= reinhard(np.float32(1.0)) + 2e-5
    r = runner.invoke(app, ["synth", "--out", str(out), "--config", str(cfg), "--jobs", "1"])
    assert r.exit_code == 0 and "nothing to do" in r.output


def test_cli_with_sources_psfs_and_source_space(tmp_path):
    photos = make_photos(tmp_path / "photos", n=2)
    psfs = make_psfs(tmp_path / "psfs")
    out = tmp_path / "out"
    r = runner.invoke(app, ["synth", "--source", str(photos), "--psf", str(psfs / "psf_7.npy"),
                            "--psf", str(psfs / "psf_9.npy"), "--out", str(out), "--seed", "2",
                            "--source-space", "linear", "--jobs", "1"])
    assert r.exit_code == 0, r.output
    assert "normalised" in r.output  # the random test PSFs do not sum to 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["arguments"]["config"]["source_space"] == "linear"
    assert {p["id"] for p in manifest["psfs"]} == {"psf_7", "psf_9"}


@pytest.mark.parametrize(
    "psf_array, message",
    [
        (-np.ones((5, 5, 3)), "negative"),
        (np.full((5, 5, 3), np.nan), "NaN"),
        (np.zeros((5, 5, 3)), "sum to zero"),
        (np.ones((2, 5, 5, 3)), "shape"),
    ],
)
def test_cli_bad_psf(tmp_path, psf_array, message):
    photos = make_photos(tmp_path / "photos", n=1)
    np.save(tmp_path / "bad.npy", psf_array)
    out = tmp_path / "out"
    r = runner.invoke(app, ["synth", "--source", str(photos), "--psf", str(tmp_path / "bad.npy"),
                            "--out", str(out)])
    assert r.exit_code == 1
    assert "bad.npy" in r.output and message in r.output
    assert not out.exists()


def test_cli_bad_sources_and_configs(tmp_path):
    out = tmp_path / "out"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "empty").mkdir()
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[synth]\nblur_sigma = 2\n")
    inverted = tmp_path / "inverted.toml"
    inverted.write_text("[synth]\nx_max = [2.0, 1.0]\n")
    cases = [
        (["--source", str(broken)], "x.png"),
        (["--source", str(tmp_path / "empty")], "empty"),
        (["--source", str(tmp_path / "nowhere")], "nowhere"),
        (["--config", str(unknown)], "blur_sigma"),
        (["--config", str(inverted)], "x_max"),
        (["--psf", str(tmp_path / "nope.npy")], "nope.npy"),
    ]
    for args, message in cases:
        r = runner.invoke(app, ["synth", "--out", str(out), *args])
        assert r.exit_code != 0, args
        assert message in r.output, (args, r.output)
        assert not out.exists(), args
    assert "valid keys" in runner.invoke(
        app, ["synth", "--out", str(out), "--config", str(unknown)]).output


def test_cli_truncated_image_fails_without_a_manifest(tmp_path):
    photos = make_photos(tmp_path / "photos", n=2)
    data = (photos / "photo_1.png").read_bytes()
    (photos / "photo_1.png").write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    r = runner.invoke(app, ["synth", "--source", str(photos), "--out", str(out), "--jobs", "1",
                            "--psf", str(dirac_file(tmp_path / "d.npy"))])
    assert r.exit_code == 1 and "photo_1.png" in r.output
    assert not (out / "manifest.json").exists()
    assert not any(".tfrecord-" in p.name for p in out.iterdir())

"""`synth --source DATASET`: the train split only unless named, and one source image never lands
in two synth splits (UDC fixture: four patches per image, one image per GT file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.udc_gopro import UDC_TEST, UDC_TRAIN, make_discnet
from typer.testing import CliRunner

from lpie_data import iter_pairs, read_manifest
from lpie_data.cli import app
from lpie_data.errors import DataError
from lpie_data.synth import SynthConfig
from lpie_data.synth.pipeline import plan
from lpie_data.synth.sources import find_sources, split_dataset_path

runner = CliRunner()
PATCH = 32


@pytest.fixture(scope="module")
def udc_data(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("udcsrc")
    root = make_discnet(base, positions=(5, 7))
    out = base / "udc"
    r = runner.invoke(app, ["prepare", "udc", "--root", str(root), "--out", str(out),
                            "--patch", str(PATCH), "--psf-pos", "all", "--jobs", "1"])
    assert r.exit_code == 0, r.output
    return out


def _record_images(path: Path) -> dict[str, dict[str, str]]:
    """{split: {synth source key: GT file}} of a prepared dataset, in source-key order."""
    out = {}
    for split in read_manifest(str(path))["splits"]:
        out[split] = {f"udc/{split}/{i:06d}": p.meta["target_source"]
                      for i, p in enumerate(iter_pairs(str(path), split))}
    return out


def test_split_suffix_parsing(tmp_path):
    assert split_dataset_path("data/udc:test") == ("data/udc", "test")
    assert split_dataset_path("data/udc") == ("data/udc", None)
    assert split_dataset_path("gs://bucket/udc") == ("gs://bucket/udc", None)
    odd = tmp_path / "a:b"
    odd.mkdir()
    assert split_dataset_path(str(odd)) == (str(odd), None)


def test_default_takes_only_train_records_and_groups_by_source_image(udc_data):
    images = _record_images(udc_data)
    found = find_sources([str(udc_data)])
    assert {s.key for s in found} == set(images["train"])  # no test record
    cfg = SynthConfig(crop=16, pairs_per_image=1)
    items, *_ = plan(cfg, [str(udc_data)], [], val_fraction=0.5)
    split_of_image: dict[str, set[str]] = {}
    for item in items:
        split_of_image.setdefault(images["train"][item.key], set()).add(item.split)
    # 3 GT images x 4 patches x 2 PSF positions: every image in exactly one split, both used.
    assert len(split_of_image) == len(UDC_TRAIN)
    assert all(len(s) == 1 for s in split_of_image.values())
    assert {s for v in split_of_image.values() for s in v} == {"train", "validation"}


def test_cli_synth_from_udc_keeps_images_apart(udc_data, tmp_path):
    images = _record_images(udc_data)
    out = tmp_path / "synth"
    cfg = tmp_path / "s.toml"
    cfg.write_text("[synth]\ncrop = 16\npairs_per_image = 2\n")
    r = runner.invoke(app, ["synth", "--source", str(udc_data), "--out", str(out), "--config",
                            str(cfg), "--val-fraction", "0.4", "--jobs", "1"])
    assert r.exit_code == 0, r.output
    seen: dict[str, str] = {}
    for split in ("train", "validation"):
        for pair in iter_pairs(str(out), split):
            assert pair.meta["source"].startswith("udc/train/")
            image = images["train"][pair.meta["source"]]
            assert seen.setdefault(image, split) == split, f"{image} in two splits"
    assert len(seen) == len(UDC_TRAIN)


def test_a_named_split_is_used_and_a_missing_one_refused(udc_data):
    images = _record_images(udc_data)
    found = find_sources([f"{udc_data}:test"])
    assert {s.key for s in found} == set(images["test"])
    assert {images["test"][s.key].split("/")[-1] for s in found} == set(UDC_TEST)
    with pytest.raises(DataError, match="no split 'validation'.*test, train"):
        find_sources([f"{udc_data}:validation"])

"""TFDS reads lpie datasets as they are: ``tfds.builder_from_directory(OUT)`` yields every
example of every split exactly as ``lpie_data.iter_pairs`` reads it (in the stored dtype)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.sidd import make_sidd_tree, make_validation
from typer.testing import CliRunner

from lpie_data import iter_pairs, read_manifest
from lpie_data.cli import app
from lpie_data.records import SCALES
from lpie_data.tfds_info import DATASET_INFO, FEATURES

tfds = pytest.importorskip("tensorflow_datasets")
runner = CliRunner()


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def assert_tfds_matches_lpie(out: Path) -> dict[str, tuple[int, ...]]:
    """Every split through TFDS equals iter_pairs, example by example; returns the TFDS image
    shapes of each split's first example."""
    manifest = read_manifest(str(out))
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.name == manifest["name"]
    assert set(builder.info.splits) == set(manifest["splits"])
    assert "lpie-data" in builder.info.description
    shapes = {}
    for split, entry in manifest["splits"].items():
        info = builder.info.splits[split]
        assert info.num_examples == entry["examples"]
        assert info.shard_lengths == [s["examples"] for s in entry["shards"]]
        assert info.num_bytes == entry["bytes"]
        pairs = list(iter_pairs(str(out), split))
        examples = list(tfds.as_numpy(builder.as_dataset(split=split)))
        assert len(examples) == len(pairs) == entry["examples"]
        for ex, pair in zip(examples, pairs, strict=True):
            assert ex["key"].decode() == pair.key
            assert json.loads(ex["meta"]) == pair.meta
            for name in ("input", "target"):
                dtype = entry[f"{name}_dtype"]
                assert ex[name].dtype == np.dtype(dtype), name
                assert ex[name].shape == getattr(pair, name).shape
                assert (ex["height"], ex["width"]) == getattr(pair, name).shape[:2]
                scaled = ex[name].astype(np.float32) * np.float32(SCALES[dtype])
                np.testing.assert_array_equal(scaled, getattr(pair, name), err_msg=name)
        shapes[split] = examples[0]["input"].shape
        # as_supervised gives (input, target)
        x, y = next(iter(tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True))))
        np.testing.assert_array_equal(x, examples[0]["input"])
        np.testing.assert_array_equal(y, examples[0]["target"])
    return shapes


def test_prepared_sidd_with_validation_blocks_loads_through_tfds(tmp_path: Path) -> None:
    """Train tiles 32x32, validation blocks 256x256: two widths in one dataset."""
    root = make_sidd_tree(tmp_path)
    make_validation(root, "5", n=1, b=2)
    out = tmp_path / "sidd"
    ok(runner.invoke(app, ["prepare", "sidd", "--root", str(root), "--out", str(out),
                           "--tile", "32", "--jobs", "1"]))
    assert (out / DATASET_INFO).is_file() and (out / FEATURES).is_file()
    features = json.loads((out / FEATURES).read_text())
    assert features["type"] == "lpie_data.tfds_feature.LpiePairFeatures"
    shapes = assert_tfds_matches_lpie(out)
    assert shapes == {"train": (32, 32, 3), "validation": (256, 256, 3)}

    r = ok(runner.invoke(app, ["inspect", str(out), "--verify"]))
    assert "verified" in r.output

    # Datasets made before lpie wrote the TFDS files: written again on request.
    (out / DATASET_INFO).unlink()
    (out / FEATURES).unlink()
    with pytest.raises(Exception, match="dataset_info.json"):
        tfds.builder_from_directory(str(out))
    r = ok(runner.invoke(app, ["inspect", str(out), "--write-tfds-info"]))
    assert DATASET_INFO in r.output and FEATURES in r.output
    assert json.loads((out / FEATURES).read_text()) == features
    assert_tfds_matches_lpie(out)


def test_synth_dataset_loads_through_tfds_with_builtin_features(tmp_path: Path) -> None:
    """Synthesised crops share one size: TFDS's own Tensor feature decodes them (no lpie
    import needed to read them)."""
    cfg = tmp_path / "synth.toml"
    cfg.write_text("[synth]\ncrop = 32\npairs_per_image = 2\n")
    out = tmp_path / "synth"
    ok(runner.invoke(app, ["synth", "--config", str(cfg), "--out", str(out), "--seed", "1",
                           "--jobs", "1"]))
    features = json.loads((out / FEATURES).read_text())
    assert features["type"].startswith("tensorflow_datasets.")
    assert features["content"]["features"]["input"]["tensor"]["shape"]["dimensions"] == [
        "32", "32", "3"]
    shapes = assert_tfds_matches_lpie(out)
    assert set(shapes.values()) == {(32, 32, 3)} and len(shapes) == 2
    r = ok(runner.invoke(app, ["inspect", str(out), "--verify"]))
    assert "verified" in r.output

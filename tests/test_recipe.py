"""Training recipes: defaults, validation, the shipped recipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lpie_data.errors import ConfigError
from lpie_data.synth.config import SynthConfig
from lpie_model.recipe import (
    STRATEGIES,
    DatasetRef,
    Recipe,
    load_recipe,
    recipe_from_dict,
)

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
SHIPPED = ("sidd", "udc", "gopro", "synth", "smoke", "demo")
ONE_DATASET = {"data": {"datasets": [{"path": "data/x"}]}}


def with_data(**data: object) -> dict:
    return {"data": {"datasets": [{"path": "data/x"}], **data}}


def test_defaults_follow_the_paper() -> None:
    r = recipe_from_dict(ONE_DATASET)
    assert r.train.lr == 2e-3
    assert r.train.plateau_factor == 0.5
    assert r.train.min_lr == 1e-6
    assert r.data.batch_size == 4
    assert r.data.crop_schedule == ((1, 400, 400),)
    assert r.data.flips and r.data.rotations
    assert r.train.epochs == 500
    assert r.train.strategy == "default"
    assert r.model.variant == "base"
    assert r.model.build_kwargs() == {
        "variant": "base", "activation": "elu", "dw_kernel": 3, "irb_second_input": "m"
    }
    assert r.data.datasets == (DatasetRef("data/x", "train", 1.0),)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipes_load_and_start_with_their_command(name: str) -> None:
    path = RECIPES / f"{name}.toml"
    recipe = load_recipe(path)
    first = path.read_text().splitlines()[0]
    assert first.startswith("#")
    head = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    assert f"lpie-model train recipes/{name}.toml" in head
    assert "xpect" in head  # "Expect: ..." / "expected ..." result line
    assert isinstance(recipe, Recipe)


def test_paper_recipes_use_the_paper_settings() -> None:
    for name in ("sidd", "udc", "gopro", "synth"):
        r = load_recipe(RECIPES / f"{name}.toml")
        assert r.train.lr == 2e-3 and r.train.plateau_factor == 0.5 and r.train.min_lr == 1e-6
        assert r.data.batch_size == 4
        assert r.train.epochs == 500
    assert load_recipe(RECIPES / "gopro.toml").data.crop_schedule[-1][1:] == (540, 960)
    assert load_recipe(RECIPES / "sidd.toml").data.crop_schedule[0] == (1, 400, 400)


def test_smoke_recipe_synthesises_its_own_data() -> None:
    r = load_recipe(RECIPES / "smoke.toml")
    assert isinstance(r.synth, SynthConfig)
    assert not r.data.datasets


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"modle": {}, **ONE_DATASET},
         "unknown key(s) modle; valid keys: model, data, train, synth"),
        ({"train": {"epoch": 3}, **ONE_DATASET}, "train: unknown key(s) epoch; valid keys: epochs"),
        ({"data": {"datasets": [{"path": "a", "wieght": 2}]}},
         "data.datasets[0]: unknown key(s) wieght; valid keys: path, split, weight"),
        ({"synth": {"crops": 64}, "data": {"crop_schedule": [[1, 32]]}},
         "synth: unknown key(s) crops"),
        ({"train": {"epochs": "ten"}, **ONE_DATASET}, "train.epochs: expected an integer"),
        ({"train": {"lr": True}, **ONE_DATASET}, "train.lr: expected a number"),
        ({"data": {"datasets": {"path": "a"}}}, "data.datasets: expected a list"),
        ({"data": {"datasets": [{"path": "a"}], "flips": "yes"}}, "data.flips: expected true"),
    ],
)
def test_unknown_keys_and_wrong_types_are_refused(data: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        recipe_from_dict(data, "r.toml")
    assert str(e.value).startswith("r.toml: ")
    assert fragment in str(e.value)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "no training data"),
        ({"synth": {"crop": 64}, "data": {"datasets": [{"path": "a"}],
                                          "crop_schedule": [[1, 32]]}}, "both given"),
        ({"data": {"datasets": [{"path": ""}]}}, "needs a dataset path"),
        ({"data": {"datasets": [{"path": "a", "weight": 0}]}}, "weight: must be"),
        (with_data(crop_schedule=[[2, 64]]), "must start at epoch 1"),
        (with_data(crop_schedule=[[1, 64], [1, 96]]), "first epochs must increase"),
        (with_data(crop_schedule=[[1, 8]]), "at least 16 pixels"),
        (with_data(crop_schedule=[[1, 64, 64, 64]]), "expected [first_epoch, size]"),
        (with_data(crop_schedule=[]), "at least one"),
        (with_data(batch_size=0), "batch_size"),
        (with_data(val_crop=5), "val_crop"),
        ({"train": {"strategy": "horovod"}, **ONE_DATASET},
         "unknown value 'horovod'; valid: default, mirrored, multiworker, tpu"),
        ({"train": {"min_lr": 1.0}, **ONE_DATASET}, "min_lr"),
        ({"train": {"plateau_factor": 1.5}, **ONE_DATASET}, "plateau_factor"),
        ({"train": {"alpha": -1}, **ONE_DATASET}, "alpha"),
        ({"model": {"variant": "huge"}, **ONE_DATASET}, "variant"),
        ({"model": {"widths": [16, 32]}, **ONE_DATASET}, "widths"),
        ({"model": {"activation": "gelu"}, **ONE_DATASET}, "activation"),
        ({"synth": {"crop": 48}, "data": {"crop_schedule": [[1, 64]]}},
         "larger than the synthesised pairs"),
        ({"train": {"join_timeout": 0}, **ONE_DATASET}, "join_timeout: must be > 0"),
    ],
)
def test_bad_values_are_refused(data: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as e:
        recipe_from_dict(data, "r.toml")
    assert fragment in str(e.value)


def test_crop_schedule_accepts_squares_and_rectangles() -> None:
    r = recipe_from_dict(with_data(crop_schedule=[[1, 400], [300, 540, 960]]))
    assert r.data.crop_schedule == ((1, 400, 400), (300, 540, 960))
    assert r.data.crop_for_epoch(1) == (400, 400)
    assert r.data.crop_for_epoch(299) == (400, 400)
    assert r.data.crop_for_epoch(300) == (540, 960)
    assert r.data.crop_for_epoch(10_000) == (540, 960)
    assert r.data.largest_crop() == (540, 960)


def test_integers_are_accepted_for_floats_and_model_overrides_pass_through() -> None:
    r = recipe_from_dict({**ONE_DATASET, "train": {"lr": 1, "min_lr": 1},
                          "model": {"widths": [8, 16, 8], "activation": "relu"}})
    assert r.train.lr == 1.0 and isinstance(r.train.lr, float)
    assert r.model.build_kwargs()["widths"] == [8, 16, 8]
    assert r.model.build_kwargs()["activation"] == "relu"


def test_differences_name_the_changed_keys() -> None:
    a = recipe_from_dict(ONE_DATASET)
    b = recipe_from_dict({**ONE_DATASET, "train": {"lr": 1e-3, "epochs": 3}})
    assert a.differences(b) == ["train.epochs", "train.lr"]
    assert a.differences(a) == []
    assert recipe_from_dict(a.to_dict()) == a  # round trip through plain data (recipe.json)


def test_load_recipe_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[train]\nepochs = 2\nbogus = 1\n[[data.datasets]]\npath = "x"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: train: unknown key\(s\) bogus"):
        load_recipe(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_recipe(tmp_path / "missing.toml")
    path.write_text("[train\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_recipe(path)


def test_every_strategy_has_a_factory() -> None:
    from lpie_model.strategies import STRATEGIES as FACTORIES

    assert tuple(FACTORIES) == STRATEGIES


def test_loading_a_recipe_does_not_import_tensorflow() -> None:
    """The [model] table is checked by the plain-Python ModelConfig, not by building a network."""
    code = (
        "import sys\n"
        "from lpie_model.recipe import load_recipe\n"
        f"r = load_recipe({str(RECIPES / 'smoke.toml')!r})\n"
        "print(r.model.variant, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["base", "False", "False"]

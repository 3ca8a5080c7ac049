"""Training: the smoke recipe learns, exact resume after a kill, mirrored strategy, bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_data_pipeline import produce_ramps, write_dataset
from typer.testing import CliRunner

from lpie_data import storage
from lpie_data.errors import ConfigError, DataError, OutputError
from lpie_data.jobs import JobOptions, WorkItem, run_job
from lpie_model.cli import app
from lpie_model.recipe import Recipe, recipe_from_dict
from lpie_model.train import TrainEvent, train
from lpie_model.trainer import PlateauState, plateau_step

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def tiny_recipe(data: str, **train: object) -> Recipe:
    """A very small network on the ramp fixture: a few seconds per run on 2 cores."""
    return recipe_from_dict({
        "model": {"widths": [8, 16, 8]},
        "data": {"datasets": [{"path": data}], "batch_size": 4, "crop_schedule": [[1, 24]],
                 "shuffle_buffer": 4},
        "train": {"epochs": 2, "steps_per_epoch": 3, "tensorboard_images": 0, "log_every": 1,
                  **train},
    })


@pytest.fixture(scope="module")
def ramps(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_dataset(tmp_path_factory.mktemp("train") / "ramps", train=8, val=2)


def read_rows(run: Path | str) -> list[dict[str, str]]:
    with storage.open_file(storage.join(str(run), "metrics.csv"), "rb") as f:
        return list(csv.DictReader(io.StringIO(f.read().decode())))


def without_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def checkpoint_values(run: Path | str, epoch: int) -> dict[str, np.ndarray]:
    """Every variable of the run's latest checkpoint (checked to be ``epoch``'s): weights, Adam
    moments and step, learning rate, epoch, plateau counters, best PSNR."""
    import tensorflow as tf

    # The folder, not its ckpt-N prefix: ram:// takes a prefix of file names for a folder.
    reader = tf.train.load_checkpoint(storage.join(str(run), "checkpoints"))
    values = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
              if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert values["epoch/.ATTRIBUTES/VARIABLE_VALUE"] == epoch
    return values


def test_smoke_recipe_learns_and_fills_the_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "smoke"
    result = runner.invoke(app, ["train", str(ROOT / "recipes/smoke.toml"), "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "best: epoch" in result.output and "best.weights.h5" in result.output

    summary = json.loads((run / "summary.json").read_text())
    epochs = summary["epochs"]
    assert summary["status"] == "finished" and summary["epochs_done"] == epochs
    # The network learns: clearly better than the degraded inputs (not a no-op).
    assert summary["best_val_psnr"] > summary["input_val_psnr"] + 1.0, summary
    assert summary["best_val_ssim"] > summary["input_val_ssim"] + 0.1, summary

    rows = read_rows(run)
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    assert max(float(r["val_psnr"]) for r in rows) == pytest.approx(summary["best_val_psnr"],
                                                                     abs=1e-4)
    for name in ("recipe.json", "model.json", "best.weights.h5", "data/manifest.json"):
        assert (run / name).is_file(), name
    for logs in ("train", "validation"):
        assert list((run / "logs" / logs).iterdir())
    assert (run / "checkpoints" / "checkpoint").is_file()

    from lpie_model.checkpoint import load_model

    model = load_model(run)
    out = model(np.full((1, 20, 28, 3), 0.5, np.float32)).numpy()
    assert out.shape == (1, 20, 28, 3) and np.isfinite(out).all()

    again = runner.invoke(app, ["train", str(ROOT / "recipes/smoke.toml"), "--out", str(run),
                                "--resume"])
    assert again.exit_code == 0, again.output
    assert f"already trained {epochs} epochs" in again.output
    assert len(read_rows(run)) == epochs

    refused = runner.invoke(app, ["train", str(ROOT / "recipes/smoke.toml"), "--out", str(run)])
    assert refused.exit_code == 1
    assert "not empty" in refused.output and "--resume" in refused.output


class Killed(Exception):
    """Stands for the process being killed: raised from the progress callback mid-epoch."""


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path: Path, ramps: str) -> None:
    recipe = tiny_recipe(ramps, epochs=3)
    # The uninterrupted run goes to a non-local filesystem (TensorFlow's in-memory ram://),
    # as runs on gs:// would.
    straight = f"ram://lpie-tests/{tmp_path.name}/straight"
    train(recipe, straight)
    for name in ("recipe.json", "model.json", "best.weights.h5", "summary.json",
                 "checkpoints/checkpoint"):
        assert storage.exists(storage.join(straight, name)), name

    def kill_in_epoch_2(event: TrainEvent) -> None:
        if event.kind == "step" and event.epoch == 2 and event.step == 2:
            raise Killed

    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        train(recipe, killed, progress=kill_in_epoch_2)
    assert [r["epoch"] for r in read_rows(killed)] == ["1"]
    # A kill can also land after an epoch's metrics row was written but before its checkpoint:
    with open(killed / "metrics.csv", "a") as f:
        f.write("2,24x24,0.002,9.9,99.0,0.99,99.0,1.0\n")

    events: list[TrainEvent] = []
    result = train(recipe, killed, resume=True, progress=events.append)
    assert result.resumed_from == 1 and result.epochs_done == 3
    assert [e.epoch for e in events if e.kind == "epoch"] == [2, 3]

    assert without_time(read_rows(killed)) == without_time(read_rows(straight))
    a, b = checkpoint_values(straight, 3), checkpoint_values(killed, 3)
    assert a.keys() == b.keys() and len(a) > 20
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    with storage.open_file(storage.join(straight, "summary.json"), "rb") as f:
        assert json.loads((killed / "summary.json").read_text()) == json.loads(f.read())


def test_plateau_halves_the_rate_down_to_the_minimum() -> None:
    tr = tiny_recipe("x", plateau_patience=2, lr=4e-6, min_lr=1e-6).train
    s = PlateauState(best=30.0, wait=0, lr=4e-6)
    s = plateau_step(s, 29.0, tr)
    assert s == PlateauState(30.0, 1, 4e-6)
    s = plateau_step(s, 30.0, tr)  # not better: patience reached
    assert s == PlateauState(30.0, 0, 2e-6)
    s = plateau_step(plateau_step(s, 1.0, tr), 1.0, tr)
    assert s.lr == 1e-6
    s = plateau_step(plateau_step(s, 1.0, tr), 1.0, tr)
    assert s.lr == 1e-6  # never below min_lr
    assert plateau_step(s, 30.5, tr) == PlateauState(30.5, 0, 1e-6)


MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from lpie_model.recipe import recipe_from_dict
    from lpie_model.train import train
    recipe = json.loads(sys.argv[1])
    replicas, losses = {}, {}

    def record(strategy, e):
        if e.kind == "start":
            replicas[strategy] = e.info["replicas"]
        elif e.kind == "step":  # e.loss: the epoch's running mean; keep each step's own loss
            curve = losses.setdefault(strategy, [])
            curve.append(e.loss * e.step - (e.step - 1) * prev[0] if e.step > 1 else e.loss)
            prev[0] = e.loss

    prev = [0.0]
    for strategy in ("default", "mirrored"):
        recipe["train"]["strategy"] = strategy
        train(recipe_from_dict(recipe), f"{sys.argv[2]}/{strategy}",
              progress=lambda e, s=strategy: record(s, e))
    print("REPLICAS", json.dumps({"replicas": replicas, "losses": losses}))
""")


def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(
    tmp_path: Path, ramps: str
) -> None:
    # Logical devices must be configured before TensorFlow initialises: a fresh process.
    recipe = tiny_recipe(ramps, epochs=2).to_dict()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", MIRRORED, json.dumps(recipe), str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.split("REPLICAS", 1)[1])
    assert report["replicas"] == {"default": 1, "mirrored": 2}
    # Global batch 4 = 2 replicas x 2: the same gradients up to summation order, so the same
    # loss at every step (2 epochs x 3 steps) and the same weights, within these tolerances.
    curves = report["losses"]
    assert len(curves["default"]) == len(curves["mirrored"]) == 6
    np.testing.assert_allclose(curves["mirrored"], curves["default"], rtol=1e-4, atol=1e-5)
    assert curves["default"][-1] < curves["default"][0]  # it learns: a curve, not a constant
    one = checkpoint_values(tmp_path / "default", 2)
    two = checkpoint_values(tmp_path / "mirrored", 2)
    assert one.keys() == two.keys()
    for name in one:
        np.testing.assert_allclose(one[name], two[name], rtol=1e-3, atol=5e-4, err_msg=name)
    rows = {s: read_rows(tmp_path / s) for s in ("default", "mirrored")}
    for a, b in zip(rows["default"], rows["mirrored"], strict=True):
        assert float(a["val_psnr"]) == pytest.approx(float(b["val_psnr"]), abs=1e-3)


def test_a_batch_that_does_not_split_over_the_replicas_is_refused(tmp_path: Path) -> None:
    script = MIRRORED.replace('("default", "mirrored")', '("mirrored",)')
    recipe = tiny_recipe("unused").to_dict()
    recipe["data"]["batch_size"] = 3
    recipe["data"]["datasets"][0]["path"] = write_dataset(tmp_path / "ds", train=4, val=1)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(recipe), str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode != 0
    assert "global batch 3 does not split evenly over 2 replicas" in proc.stderr


def write_recipe(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


FITS = "[data]\ncrop_schedule = [[1, 32]]\n"  # crops that fit the 40x52 fixture


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (FITS + '[[data.datasets]]\npath = "{tmp}/missing"\n', "missing: no such dataset folder"),
        (FITS + '[[data.datasets]]\npath = "{ramps}"\nsplit = "test"\n',
         "no split 'test' (splits: train, validation)"),
        (FITS + 'val_split = "nope"\n[[data.datasets]]\npath = "{ramps}"\n', "no split 'nope'"),
        (FITS + 'val_path = "{tmp}/gone"\n[[data.datasets]]\npath = "{ramps}"\n',
         "gone: no such dataset folder"),
        ('[data]\ncrop_schedule = [[1, 32], [5, 64]]\n[[data.datasets]]\npath = "{ramps}"\n',
         "crop 64x64 (data.crop_schedule) is larger than its 'train' images (40x52)"),
        ('[train]\nepochs = 2\nbogus = 1\n[[data.datasets]]\npath = "{ramps}"\n',
         "train: unknown key(s) bogus; valid keys: epochs"),
        ('[train]\nepochs = "2"\n[[data.datasets]]\npath = "{ramps}"\n',
         "train.epochs: expected an integer"),
        ("[model]\nvariant = 'base'\n", "no training data"),
    ],
)
def test_bad_input_fails_before_training(tmp_path: Path, ramps: str, body: str,
                                         message: str) -> None:
    recipe = write_recipe(tmp_path / "r.toml", body.format(tmp=tmp_path, ramps=ramps))
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", recipe, "--out", str(run)])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split()), result.output
    assert not run.exists()  # nothing written, so a corrected rerun needs no --resume


def test_a_split_without_examples_fails_before_training(tmp_path: Path, ramps: str) -> None:
    import shutil

    data = tmp_path / "empty-split"
    shutil.copytree(ramps, data)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["splits"]["validation"]["examples"] = 0
    (data / "manifest.json").write_text(json.dumps(manifest))
    recipe = write_recipe(tmp_path / "r.toml", FITS + f'[[data.datasets]]\npath = "{data}"\n')
    result = runner.invoke(app, ["train", recipe, "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "split 'validation' has no examples" in " ".join(result.output.split())


def test_a_later_image_smaller_than_the_crop_stops_training_with_a_message(
    tmp_path: Path,
) -> None:
    items = [WorkItem("big", "train", (1, None, 40, 52)),
             WorkItem("small", "train", (1, None, 20, 20)),
             WorkItem("val", "validation", (1, None, 40, 52))]
    data = str(tmp_path / "mixed")
    run_job(data, "mixed", "test", {}, items, produce_ramps, JobOptions(jobs=1),
            extra_manifest={"value_space": "srgb"})
    recipe = tiny_recipe(data, epochs=1, steps_per_epoch=4)
    with pytest.raises(DataError, match="a training image is smaller than the 24x24 crop"):
        train(recipe, tmp_path / "run")


def test_run_folder_rules(tmp_path: Path, ramps: str) -> None:
    from lpie_model.rundir import check_run_dir

    recipe = tiny_recipe(ramps)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(OutputError, match="not empty; continue it with --resume"):
        check_run_dir(recipe, str(tmp_path / "full"), resume=False)
    (tmp_path / "empty").mkdir()
    check_run_dir(recipe, str(tmp_path / "empty"), resume=False)
    with pytest.raises(OutputError, match="nothing to resume"):
        check_run_dir(recipe, str(tmp_path / "empty"), resume=True)

    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.json").write_text(json.dumps(recipe.to_dict()))
    check_run_dir(recipe.replace_epochs(10), str(run), resume=True)  # train longer: allowed
    other = tiny_recipe(ramps, lr=1e-4)
    with pytest.raises(ConfigError, match=r"another recipe \(differs in train.lr\)"):
        check_run_dir(other, str(run), resume=True)


# --------------------------------------------------------------------------- value spaces


def test_datasets_in_different_value_spaces_are_refused_by_name(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a-srgb", train=4, val=1)
    b = write_dataset(tmp_path / "b-reinhard", train=4, val=1, value_space="reinhard")
    recipe = recipe_from_dict({
        "data": {"datasets": [{"path": a}, {"path": b}], "crop_schedule": [[1, 24]]},
        "train": {"epochs": 1},
    })
    with pytest.raises(DataError, match="different value spaces") as e:
        train(recipe, tmp_path / "run")
    assert f"{a} (srgb)" in str(e.value) and f"{b} (reinhard)" in str(e.value)
    assert not (tmp_path / "run").exists()


def test_linear_data_is_refused_with_the_fix_unless_mapped(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "hdr", train=8, val=2, value_space="linear")
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"'linear' value space .* \[data\] value_space = "
                                          r"\"reinhard\""):
        train(tiny_recipe(data, epochs=1, steps_per_epoch=1), run)
    assert not run.exists()

    recipe = tiny_recipe(data, epochs=1, steps_per_epoch=1)
    recipe = recipe_from_dict({**recipe.to_dict(),
                               "data": {**recipe.to_dict()["data"], "value_space": "reinhard"}})
    result = train(recipe, run)
    assert result.value_space == "reinhard"
    saved = json.loads((run / "model.json").read_text())
    assert saved == {"variant": "base", "widths": [8, 16, 8], "activation": "elu",
                     "dw_kernel": 3, "irb_second_input": "m", "value_space": "reinhard"}
    from lpie_model.checkpoint import load_model

    assert load_model(run).lpie_value_space == "reinhard"
    # Validation ran in the Reinhard domain: the stored pairs are target/2 vs target; mapped,
    # their PSNR is that of reinhard(t/2) against reinhard(t).
    from lpie_data import iter_pairs
    from lpie_data.valuespace import reinhard
    from lpie_model.metrics import psnr

    want = np.mean([psnr(reinhard(p.input), reinhard(p.target))
                    for p in iter_pairs(data, "validation")])
    assert result.input_val_psnr == pytest.approx(want, abs=1e-3)


def test_a_run_records_its_datasets_value_space(tmp_path: Path, ramps: str) -> None:
    result = train(tiny_recipe(ramps, epochs=1, steps_per_epoch=1), tmp_path / "run")
    assert result.value_space == "srgb" and result.notes == ()
    assert json.loads((tmp_path / "run" / "model.json").read_text())["value_space"] == "srgb"


def test_bounded_value_spaces_only_in_recipes() -> None:
    with pytest.raises(ConfigError, match="value_space: 'linear' cannot be trained in"):
        recipe_from_dict({"data": {"datasets": [{"path": "x"}], "value_space": "linear"}})
    with pytest.raises(ConfigError, match="valid: reinhard, srgb"):
        recipe_from_dict({"data": {"datasets": [{"path": "x"}], "value_space": "hdr"}})


def test_a_non_chief_workers_private_checkpoints_are_removed(tmp_path: Path, ramps: str) -> None:
    """Other workers of a multi-worker run save checkpoints too (the save is a collective), into
    a private temporary folder: close() (called when training ends) removes it."""
    import os

    import tensorflow as tf

    from lpie_model.trainer import Trainer

    run = tmp_path / "run"
    trainer = Trainer(tiny_recipe(ramps), tf.distribute.get_strategy(), str(run), chief=False)
    private = trainer.private_dir
    assert private is not None and trainer.manager.directory == private
    trainer.manager.save(checkpoint_number=1)
    assert os.listdir(private) and not run.exists()
    trainer.close()
    assert not os.path.exists(private)
    chief = Trainer(tiny_recipe(ramps), tf.distribute.get_strategy(), str(run), chief=True)
    assert chief.private_dir is None
    chief.close()  # nothing to remove

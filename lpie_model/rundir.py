"""The run directory of a training run: layout, checks, recipe, metrics and summary files.

Layout (``RUN``; any path ``tf.io.gfile`` understands)::

    RUN/recipe.json        the resolved recipe (what --resume checks against)
    RUN/model.json         build options of the network (read by lpie_model.load_model)
    RUN/best.weights.h5    weights of the epoch with the best validation PSNR
    RUN/metrics.csv        one row per finished epoch (epoch, crop, lr, loss, val PSNR/SSIM, ...)
    RUN/summary.json       progress and the best epoch so far (status running | finished)
    RUN/checkpoints/       tf.train.Checkpoint of the last finished epochs: weights, Adam state,
                           learning rate, epoch, plateau counters, best PSNR
    RUN/logs/{train,validation}/   TensorBoard event files
    RUN/data/              the synthesised dataset (recipes with a [synth] table only)

Every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any

from lpie_data import storage
from lpie_data.errors import ConfigError, OutputError
from lpie_data.jsonfile import read_json
from lpie_model.recipe import Recipe, recipe_from_dict

RECIPE_FILE = "recipe.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
DATA_DIR = "data"
CSV_FIELDS = ("epoch", "crop", "lr", "train_loss", "val_psnr", "val_ssim", "best_val_psnr",
              "seconds")


def resolve_paths(recipe: Recipe) -> Recipe:
    """The recipe with local relative paths made absolute (from the current folder)."""

    def absolute(p: str) -> str:
        return p if not p or storage.is_remote(p) else str(Path(p).resolve())

    data = recipe.data
    data = dataclasses.replace(
        data,
        datasets=tuple(dataclasses.replace(d, path=absolute(d.path)) for d in data.datasets),
        val_path=absolute(data.val_path),
        synth_sources=tuple(absolute(p) for p in data.synth_sources),
        synth_psfs=tuple(absolute(p) for p in data.synth_psfs),
    )
    return dataclasses.replace(recipe, data=data)


def read_run_json(path: str) -> Any:
    """A run's JSON file; OutputError naming it when it is damaged (DataError when missing)."""
    return read_json(path, hint="restore it, or train into a new --out")


def read_summary(run_dir: str) -> dict[str, Any] | None:
    """The run's summary.json, or None when there is none yet."""
    path = storage.join(run_dir, SUMMARY_FILE)
    if not storage.exists(path):
        return None
    summary = read_run_json(path)
    if not isinstance(summary, dict) or not isinstance(summary.get("epochs_done", 0), int):
        raise OutputError(f"{path}: damaged summary (not the JSON object lpie writes)")
    return summary


def check_run_dir(recipe: Recipe, run_dir: str, resume: bool) -> None:
    """Checks ``run_dir`` can take this run (nothing is written).

    A new run needs a missing or empty folder. ``resume`` needs a run made with the same recipe
    (only ``train.epochs`` may differ, to train longer). Raises OutputError / ConfigError.
    """
    recipe_path = storage.join(run_dir, RECIPE_FILE)
    if resume:
        if not storage.exists(recipe_path):
            raise OutputError(f"{run_dir}: nothing to resume (no {RECIPE_FILE}); "
                              "start it without --resume")
        saved = recipe_from_dict(read_run_json(recipe_path), recipe_path)
        changed = [k for k in saved.differences(recipe) if k != "train.epochs"]
        if changed:
            raise ConfigError(
                f"{run_dir} was started with another recipe (differs in {', '.join(changed)}); "
                "resume it with its own recipe, or train into a new --out"
            )
    elif storage.exists(run_dir):
        if not storage.isdir(run_dir):
            raise OutputError(f"{run_dir}: exists and is not a folder")
        if [n for n in storage.listdir(run_dir) if n != ".lpie-lock"]:  # a killed run's lock
            raise OutputError(
                f"{run_dir}: exists and is not empty; continue it with --resume or choose "
                "another --out"
            )


def read_metrics(path: str, last_epoch: int) -> list[dict[str, str]]:
    """Rows of an existing metrics.csv for epochs <= last_epoch (later rows were not saved)."""
    if not storage.exists(path):
        return []
    with storage.open_file(path, "rb") as f:
        text = f.read().decode(errors="replace")
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
        return [r for r in rows if int(r["epoch"]) <= last_epoch]
    except (ValueError, KeyError, TypeError, csv.Error) as e:
        raise OutputError(f"{path}: damaged metrics file ({type(e).__name__}: {e}); remove it "
                          "to resume without the earlier rows") from None


def write_metrics(path: str, rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    storage.write_atomic(path, buf.getvalue().encode())

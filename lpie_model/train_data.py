"""The data of a training run: its sources (or the synthesised dataset), value spaces, checks."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from lpie_data import storage
from lpie_data.errors import ConfigError, DataError
from lpie_model.data import (
    SplitInfo,
    check_training_sources,
    damaged_shard,
    inspect_split,
)
from lpie_model.recipe import DatasetRef, Recipe
from lpie_model.rundir import (
    DATA_DIR,
)
from lpie_model.train_events import Progress, TrainEvent


def data_sources(recipe: Recipe, run_dir: str) -> tuple[tuple[DatasetRef, ...], str, str]:
    """Training sources and the validation (path, split) of a recipe (``RUN/data`` for a
    recipe with a ``[synth]`` table)."""
    data = recipe.data
    if recipe.synth is None:
        return data.datasets, data.val_path or data.datasets[0].path, data.val_split
    out = storage.join(run_dir, DATA_DIR)
    return (DatasetRef(out, "train"),), data.val_path or out, data.val_split


def synthesize_recipe_data(recipe: Recipe, run_dir: str, progress: Progress | None = None) -> None:
    """Writes the ``[synth]`` dataset into ``RUN/data`` (resumed if killed, a no-op when done)."""
    from lpie_data.jobs import JobOptions
    from lpie_data.synth import synthesize

    def report(done: int, total: int) -> None:
        if progress:
            progress(TrainEvent("synth", done=done, total=total))

    data = recipe.data
    if recipe.synth is None:
        return
    synthesize(
        storage.join(run_dir, DATA_DIR), sources=list(data.synth_sources),
        psfs=list(data.synth_psfs), config=recipe.synth, seed=data.synth_seed,
        val_fraction=data.synth_val_fraction, job=JobOptions(progress=report),
    )


@dataclass(frozen=True)
class ValueSpaces:
    """The value space of a run's data (``data``) and the one the model trains in (``model``);
    ``notes`` say what was assumed for datasets whose manifest records none."""

    data: str
    model: str
    notes: tuple[str, ...] = ()

    @property
    def mapping(self) -> tuple[str, str] | None:
        """(data, model) for the input pipeline, None when no mapping is needed."""
        return None if self.data == self.model else (self.data, self.model)


def value_spaces(recipe: Recipe, sources: tuple[DatasetRef, ...], val_path: str) -> ValueSpaces:
    """Reads the value space of every dataset of the run and decides the model's.

    With a ``[synth]`` table the space follows from its ``tone_map`` (known before synthesis).
    Raises DataError for datasets in different spaces (naming each with its space) and
    ConfigError for data whose values exceed the model's output range (linear HDR) when
    ``[data] value_space`` does not map them into a bounded space.
    """
    from lpie_data.valuespace import TONE_MAP_SPACES, is_bounded, value_space_of

    notes: list[str] = []
    if recipe.synth is not None:
        found = {"[synth]": TONE_MAP_SPACES[recipe.synth.tone_map]}
        if recipe.data.val_path:
            found[val_path] = value_space_of(val_path)[0]
    else:
        found = {}
        for path in dict.fromkeys([*(s.path for s in sources), val_path]):
            space, assumed = value_space_of(path)
            found[path] = space
            if assumed:
                notes.append(f"{path}: manifest.json records no value space; assumed {space!r} "
                             "from the command that made it")
    spaces = sorted(set(found.values()))
    if len(spaces) > 1:
        listed = ", ".join(f"{p} ({s})" for p, s in found.items())
        raise DataError(
            f"the datasets of this run are in different value spaces: {listed}; train on "
            "datasets of one space (re-make the others, e.g. with the same tone map)"
        )
    data_space = spaces[0]
    model_space = recipe.data.value_space or data_space
    if not is_bounded(model_space):
        raise ConfigError(
            f"{', '.join(found)}: the data are in the {data_space!r} value space (values may "
            "exceed 1), but LPIENet's output is clipped to [0, 1), so it could not learn them "
            "and PSNR with peak 1 would mean nothing; set [data] value_space = \"reinhard\" "
            "(or \"srgb\") in the recipe to map them on the fly"
        )
    return ValueSpaces(data_space, model_space, tuple(notes))


def wait_for_dataset(path: str, timeout: float, progress: Progress | None = None,
                     poll: float = 0.5) -> None:
    """Waits until the dataset at ``path`` is finished (its ``manifest.json`` exists): what the
    other workers of a multi-worker run do while the chief synthesises. DataError after
    ``timeout`` seconds, naming the file waited for."""
    from lpie_data.shards import MANIFEST

    manifest = storage.join(path, MANIFEST)
    deadline = time.monotonic() + timeout
    if progress:
        progress(TrainEvent("synth_wait", info={"path": manifest}))
    while not storage.exists(manifest):
        if time.monotonic() > deadline:
            raise DataError(
                f"waited {timeout:g} s (train.join_timeout) for the chief's [synth] dataset: "
                f"{manifest} did not appear; is the chief running with the same --out, on "
                "storage this worker sees?"
            )
        time.sleep(poll)


def check_data(
    recipe: Recipe, sources: tuple[DatasetRef, ...], val_path: str, val_split: str
) -> list[SplitInfo]:
    """Every training source and the validation split exist, have examples and fit the crops."""
    infos = check_training_sources(sources, recipe.data.largest_crop())
    val_info = inspect_split(val_path, val_split)
    val_side = min(val_info.height, val_info.width, recipe.data.val_crop or math.inf)
    if val_side < 11:
        raise DataError(f"{val_path}: validation images of {val_info.height}x{val_info.width} "
                        f"are too small for SSIM (need 11x11)")
    return infos


# --------------------------------------------------------------------------- training


def data_loss(e: Any, datasets: list[tuple[str, str]]) -> DataError:
    """A DataError naming the damaged shard behind TensorFlow's DataLossError ``e``."""
    text = getattr(e, "message", "") or str(e)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    message = next((ln for ln in lines if "corrupt" in ln or "truncated" in ln.lower()),
                   lines[0] if lines else "DataLossError")
    shard = damaged_shard(datasets, message)
    if shard is not None:
        return DataError(f"{shard}: damaged record ({message}); the dataset needs rebuilding "
                         "(lpie-data inspect --verify checks a whole dataset)")
    paths = ", ".join(dict.fromkeys(p for p, _ in datasets))
    return DataError(f"{paths}: damaged TFRecord data ({message}); run lpie-data inspect "
                     "--verify on each dataset to find the shard")

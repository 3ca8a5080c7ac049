"""Training recipes: frozen dataclasses loaded from TOML; every default lives here.

A recipe has the tables ``[model]`` (build options of `build_lpienet`), ``[data]`` (datasets,
crops, augmentation, validation), ``[train]`` (optimiser, schedule, loss, strategy) and, instead of
dataset paths, an optional ``[synth]`` table (:class:`lpie_data.synth.SynthConfig`): the trainer
then synthesises its own dataset into the run directory first. Unknown keys are refused with the
list of valid ones; wrong types and out-of-range values raise :class:`ConfigError` naming the key.

``[model]`` is a `lpie_model.config.ModelConfig`, the one place that knows the valid build options
and their defaults; loading a recipe does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpie_data.errors import ConfigError
from lpie_data.synth.config import SynthConfig
from lpie_data.tomlconfig import from_dict, load_toml, require, to_dict
from lpie_model.config import ModelConfig

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
MIN_CROP = 16  # the SSIM loss needs 11 x 11; a U-Net of 3 stages wants a few pooled pixels


def _choice(value: str, valid: tuple[str, ...], key: str) -> None:
    if value not in valid:
        raise ConfigError(f"{key}: unknown value {value!r}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class DatasetRef:
    """One training source in ``[[data.datasets]]``: an lpie pair dataset and its split.

    path: dataset folder (or gs://, ram:// URL); relative paths are taken from the current folder.
    split: the split to train on. weight: relative sampling weight when mixing several datasets.
    """

    path: str = ""
    split: str = "train"
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("path: every [[data.datasets]] entry needs a dataset path")
        if not self.split:
            raise ConfigError("split: must not be empty")
        require(self.weight > 0 and math.isfinite(self.weight), "weight", "a finite number > 0",
                self.weight)


@dataclass(frozen=True)
class DataRecipe:
    """``[data]``: where pairs come from, how they are cropped, augmented and batched.

    datasets: training sources (``[[data.datasets]]`` tables); leave empty with a ``[synth]`` table.
    batch_size: global batch (split evenly over the replicas of the strategy).
    crop_schedule: progressive training, ``[[first_epoch, size], ...]`` or
        ``[[first_epoch, height, width], ...]``; the first entry starts at epoch 1.
    flips: random horizontal and vertical flips. rotations: random 90-degree rotations (for
        non-square crops only 0 and 180 degrees, so batches keep one shape).
    shuffle_buffer: crops held for shuffling, per dataset.
    val_path: validation dataset ("" = the first training dataset; the synthesised one with
        ``[synth]``). val_split: its split. val_crop: centre crop side for validation (0: full
        images). val_max_examples: validate on the first N pairs only (0: all).
    synth_sources, synth_psfs, synth_seed, synth_val_fraction: inputs of the ``[synth]``
        synthesis (empty sources: the built-in sample photos; empty PSFs: the built-in simulated
        under-display-camera PSF).
    value_space: the value space to train in (``reinhard`` or ``srgb``), mapped from the
        datasets' own space on the fly in the input pipeline (e.g. linear HDR data into
        ``reinhard``); "" trains in the datasets' space, which must then be bounded to [0, 1].
    """

    datasets: tuple[DatasetRef, ...] = ()
    batch_size: int = 4
    crop_schedule: tuple[tuple[int, ...], ...] = ((1, 400),)
    flips: bool = True
    rotations: bool = True
    shuffle_buffer: int = 64
    val_path: str = ""
    val_split: str = "validation"
    val_crop: int = 0
    val_max_examples: int = 0
    synth_sources: tuple[str, ...] = ()
    synth_psfs: tuple[str, ...] = ()
    synth_seed: int = 0
    synth_val_fraction: float = 0.1
    value_space: str = ""

    def __post_init__(self) -> None:
        if self.value_space:
            from lpie_data.valuespace import VALUE_SPACES, is_bounded

            bounded = [s for s in VALUE_SPACES if is_bounded(s)]
            if self.value_space not in bounded:
                raise ConfigError(
                    f"value_space: {self.value_space!r} cannot be trained in (LPIENet's output is "
                    f"clipped to [0, 1)); valid: {', '.join(bounded)}, or \"\" for the data's own"
                )
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        require(self.shuffle_buffer >= 1, "shuffle_buffer", ">= 1", self.shuffle_buffer)
        if self.val_crop != 0 and self.val_crop < MIN_CROP:
            raise ConfigError(f"val_crop: 0 (full images) or >= {MIN_CROP}, got {self.val_crop}")
        require(self.val_max_examples >= 0, "val_max_examples", ">= 0", self.val_max_examples)
        if not 0.0 <= self.synth_val_fraction < 1.0:
            raise ConfigError(
                f"synth_val_fraction: must be in [0, 1), got {self.synth_val_fraction}"
            )
        require(self.synth_seed >= 0, "synth_seed", ">= 0", self.synth_seed)
        object.__setattr__(self, "crop_schedule", _normalise_schedule(self.crop_schedule))

    def crop_for_epoch(self, epoch: int) -> tuple[int, int]:
        """(height, width) of the training crops in ``epoch`` (1-based)."""
        crop = self.crop_schedule[0][1:]
        for start, h, w in self.crop_schedule:
            if epoch >= start:
                crop = (h, w)
        return crop

    def largest_crop(self) -> tuple[int, int]:
        return (max(h for _, h, _ in self.crop_schedule), max(w for _, _, w in self.crop_schedule))


def _normalise_schedule(schedule: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, int, int], ...]:
    """[[epoch, size] | [epoch, h, w], ...] -> ((epoch, h, w), ...), validated."""
    if not schedule:
        raise ConfigError("crop_schedule: needs at least one [first_epoch, crop] entry")
    out = []
    for i, entry in enumerate(schedule):
        key = f"crop_schedule[{i}]"
        if len(entry) == 2:
            start, h, w = entry[0], entry[1], entry[1]
        elif len(entry) == 3:
            start, h, w = entry
        else:
            raise ConfigError(
                f"{key}: expected [first_epoch, size] or [first_epoch, height, width], "
                f"got {list(entry)}"
            )
        if min(h, w) < MIN_CROP:
            raise ConfigError(f"{key}: crops must be at least {MIN_CROP} pixels, got {h}x{w}")
        if out and start <= out[-1][0]:
            raise ConfigError(f"{key}: first epochs must increase, got {start} after {out[-1][0]}")
        out.append((start, h, w))
    if out[0][0] != 1:
        raise ConfigError(
            f"crop_schedule[0]: the first entry must start at epoch 1, not {out[0][0]}"
        )
    return tuple(out)


@dataclass(frozen=True)
class TrainRecipe:
    """``[train]``: optimiser, learning-rate schedule, loss, length, seed and strategy.

    epochs: epochs to train. steps_per_epoch: optimiser steps per epoch (0: one pass over the
        training examples, i.e. examples // batch_size).
    lr: Adam's initial learning rate (paper: 2e-3). plateau_patience: epochs without a new best
        validation PSNR (by more than plateau_min_delta dB) before the rate is multiplied by
        plateau_factor (paper: halved), never below min_lr (paper: 1e-6).
    alpha, beta: loss = alpha * L_SSIM + L_1 + beta * L_Grad (the paper does not publish them).
    seed: seeds weights, crops, augmentation and shuffling. deterministic: make TensorFlow's ops
        deterministic (exact resume; a little slower on GPUs).
    strategy: ``default`` (one device), ``mirrored`` (all GPUs of one host), ``multiworker``
        (hosts listed in TF_CONFIG) or ``tpu``. tpu: TPU name or address for ``tpu`` ("" = local).
    join_timeout: ``multiworker`` only: seconds to wait for every worker to join, and for the
        other workers to wait for the chief's ``[synth]`` dataset.
    log_every: write the training loss to TensorBoard every N steps.
    tensorboard_images: validation pairs shown as input | output | target images each epoch.
    """

    epochs: int = 500
    steps_per_epoch: int = 0
    lr: float = 2e-3
    plateau_patience: int = 10
    plateau_factor: float = 0.5
    plateau_min_delta: float = 0.0
    min_lr: float = 1e-6
    alpha: float = 0.2
    beta: float = 0.1
    seed: int = 0
    deterministic: bool = True
    strategy: str = "default"
    tpu: str = ""
    join_timeout: float = 600.0
    log_every: int = 50
    tensorboard_images: int = 3

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "epochs", ">= 1", self.epochs)
        require(self.steps_per_epoch >= 0, "steps_per_epoch", ">= 0", self.steps_per_epoch)
        require(self.lr > 0 and math.isfinite(self.lr), "lr", "> 0", self.lr)
        require(0 < self.min_lr <= self.lr, "min_lr", f"in (0, lr={self.lr}]", self.min_lr)
        require(0 < self.plateau_factor < 1, "plateau_factor", "in (0, 1)", self.plateau_factor)
        require(self.plateau_patience >= 1, "plateau_patience", ">= 1", self.plateau_patience)
        require(self.plateau_min_delta >= 0, "plateau_min_delta", ">= 0", self.plateau_min_delta)
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name}: loss weights must be finite and >= 0, got {value}")
        require(self.seed >= 0, "seed", ">= 0", self.seed)
        _choice(self.strategy, STRATEGIES, "strategy")
        require(self.join_timeout > 0, "join_timeout", "> 0 seconds", self.join_timeout)
        require(self.log_every >= 1, "log_every", ">= 1", self.log_every)
        require(self.tensorboard_images >= 0, "tensorboard_images", ">= 0", self.tensorboard_images)


@dataclass(frozen=True)
class Recipe:
    """A whole training recipe; training data come from ``[[data.datasets]]`` or ``[synth]``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataRecipe = field(default_factory=DataRecipe)
    train: TrainRecipe = field(default_factory=TrainRecipe)
    synth: SynthConfig | None = None

    def __post_init__(self) -> None:
        if self.synth is None and not self.data.datasets:
            raise ConfigError(
                "no training data: add [[data.datasets]] tables (path, split, weight) "
                "or a [synth] table"
            )
        if self.synth is not None and self.data.datasets:
            raise ConfigError(
                "data.datasets and [synth] both given: train on existing datasets or on a "
                "synthesised one, not both"
            )
        if self.synth is not None:
            crop = self.data.largest_crop()
            if max(crop) > self.synth.crop:
                raise ConfigError(
                    f"data.crop_schedule: crop {crop[0]}x{crop[1]} is larger than the "
                    f"synthesised pairs (synth.crop = {self.synth.crop})"
                )

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def differences(self, other: Recipe) -> list[str]:
        """Dotted keys whose values differ between two recipes."""
        a, b = _flatten(self.to_dict()), _flatten(other.to_dict())
        return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))

    def replace_epochs(self, epochs: int) -> Recipe:
        return dataclasses.replace(self, train=dataclasses.replace(self.train, epochs=epochs))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def recipe_from_dict(data: dict[str, Any], where: str = "recipe") -> Recipe:
    """A validated Recipe from plain data; ConfigError messages start with ``where``."""
    try:
        return from_dict(Recipe, data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe TOML file; ConfigError names the file and the key."""
    return recipe_from_dict(load_toml(path), str(path))

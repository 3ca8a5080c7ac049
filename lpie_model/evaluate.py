"""Score a model on an lpie pair dataset: PSNR and SSIM of its output and of the degraded input.

Every pair of the split is restored whole (a fixed-size .tflite model runs in tiles of its size,
see `lpie_model.runner.predict`), the output is clipped to [0, 1], and both the output and the
degraded input are scored against the target with `lpie_model.metrics` (float64, data range 1).
Scores are computed in the dataset's stored domain, the values `lpie_data.iter_pairs` returns: for
UDC that is the tone-mapped domain x / (x + 0.25), as the MIPI challenge scores it. Means are
plain averages of the per-image scores (PSNR averaged in dB, as the SIDD, GoPro and UDC
benchmarks do).

Value spaces (`lpie_data.valuespace`): a model that records its value space gets the inputs
mapped from the dataset's space into its own, and its output mapped back. `space="srgb"` (or any
other value space) scores output, degraded input and target after mapping all three from the
dataset's space into that one, e.g. to compare models trained in different spaces on what a
person sees.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpie_data.errors import ConfigError, DataError, OutputError
from lpie_data.jsonfile import json_safe
from lpie_model import metrics
from lpie_model.runner import Runner, predict, unrecorded_space_note

STORED = "stored"  # score in the dataset's stored domain (no conversion)
CSV_COLUMNS = ("key", "psnr_input", "ssim_input", "psnr_output", "ssim_output")
SCORES = CSV_COLUMNS[1:]


@dataclass(frozen=True)
class ImageScore:
    """One pair's scores: PSNR in dB (inf for an exact match), SSIM in [-1, 1]."""

    key: str
    psnr_input: float
    ssim_input: float
    psnr_output: float
    ssim_output: float


@dataclass
class Evaluation:
    """The scores of one model on one split, per image in stored order."""

    model: str
    data: str
    split: str
    runner: str
    images: list[ImageScore] = field(default_factory=list)
    seconds: float = 0.0
    space: str = STORED
    notes: list[str] = field(default_factory=list)

    def mean(self) -> dict[str, float]:
        """Mean of each score over the images: {"psnr_input": ..., ..., "ssim_output": ...}."""
        return {s: float(np.mean([getattr(r, s) for r in self.images])) for s in SCORES}

    def gain(self) -> dict[str, float]:
        """Mean output score minus mean input score: {"psnr": dB, "ssim": ...}."""
        m = self.mean()
        return {
            "psnr": m["psnr_output"] - m["psnr_input"],
            "ssim": m["ssim_output"] - m["ssim_input"],
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary; non-finite PSNRs (identical images) become null."""
        return json_safe({
            "model": self.model,
            "data": self.data,
            "split": self.split,
            "runner": self.runner,
            "space": self.space,
            "notes": list(self.notes),
            "count": len(self.images),
            "seconds": round(self.seconds, 3),
            "mean": self.mean(),
            "gain": self.gain(),
            "images": [asdict(r) for r in self.images],
        }, non_finite="null")


def score_pair(
    key: str, degraded: np.ndarray, output: np.ndarray, target: np.ndarray
) -> ImageScore:
    """Scores of `degraded` and `output` against `target` (float H x W x 3 in [0, 1])."""
    if output.shape != target.shape:
        raise DataError(f"{key}: model output shape {output.shape} != target {target.shape}")
    return ImageScore(
        key=key,
        psnr_input=metrics.psnr(degraded, target),
        ssim_input=metrics.ssim(degraded, target),
        psnr_output=metrics.psnr(output, target),
        ssim_output=metrics.ssim(output, target),
    )


def score_spaces(
    runner: Runner, data: str, space: str = STORED
) -> tuple[str | None, str | None, list[str]]:
    """(dataset space, space to score in, notes) for scoring `runner` on dataset `data`.

    `space`: "stored" (the dataset's own values) or a value space. Spaces are None where no
    conversion happens (the dataset's space unknown and only stored scores asked for). Raises
    ConfigError for an unknown `space`, DataError when it needs a dataset space that is unknown.
    """
    from lpie_data.valuespace import VALUE_SPACES, value_space_of

    if space != STORED and space not in VALUE_SPACES:
        raise ConfigError(f"unknown score space {space!r}; valid: {STORED}, "
                          f"{', '.join(VALUE_SPACES)}")
    notes = [n for n in (unrecorded_space_note(runner),) if n]
    try:
        data_space, assumed = value_space_of(data)
    except DataError:
        if space != STORED:
            raise
        if runner.value_space is not None:
            notes.append(f"{data}: its value space is unknown; the model's inputs are fed as "
                         "stored, with no conversion")
        return None, None, notes
    if assumed:
        notes.append(f"{data}: manifest.json records no value space; assumed {data_space!r}")
    return data_space, data_space if space == STORED else space, notes


def evaluate(
    runner: Runner,
    data: str | Path,
    split: str,
    *,
    model_name: str = "",
    limit: int | None = None,
    space: str = STORED,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Restore and score the first `limit` pairs (all when None) of `split` in dataset `data`.

    Inputs are mapped into the model's value space (when it records one) and its output back
    into the dataset's; scores are taken in `space` ("stored": the dataset's values, or a value
    space such as "srgb" that output, input and target are all mapped into).
    `progress(done, total)` is called after each pair. Raises DataError for a missing dataset or
    split, a corrupt record, or an image smaller than SSIM's 11 x 11 window.
    """
    from lpie_data.dataset import iter_pairs, split_info
    from lpie_data.valuespace import convert

    if limit is not None and limit < 1:
        raise ConfigError(f"limit {limit}: must be >= 1")
    data = str(data)
    data_space, scored, notes = score_spaces(runner, data, space)
    model_space = runner.value_space if data_space is not None else None

    def mapped(x: np.ndarray, src: str | None, dst: str | None) -> np.ndarray:
        return x if src is None or dst is None else convert(x, src, dst)

    total = int(split_info(data, split)["examples"])
    if limit is not None:
        total = min(total, limit)
    result = Evaluation(model=model_name, data=data, split=split, runner=runner.description,
                        space=space, notes=notes)
    t0 = time.perf_counter()
    if progress:
        progress(0, total)
    for pair in iter_pairs(data, split):
        if len(result.images) >= total:
            break
        x = mapped(pair.input, data_space, model_space)
        output = np.clip(predict(runner, x), 0.0, 1.0)
        output = mapped(output, model_space or data_space, scored)
        result.images.append(score_pair(
            pair.key, mapped(pair.input, data_space, scored), output,
            mapped(pair.target, data_space, scored),
        ))
        if progress:
            progress(len(result.images), total)
    result.seconds = time.perf_counter() - t0
    return result


def write_csv(evaluation: Evaluation, path: str | Path) -> None:
    """Per-image scores, one row per pair: key, psnr_input, ssim_input, psnr_output, ssim_output."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            for r in evaluation.images:
                writer.writerow([r.key, *(f"{getattr(r, s):.6f}" for s in SCORES)])
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror})") from None



"""What training reports: per-epoch records, progress events (`TrainEvent`) and the result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EpochRecord:
    """What one finished epoch measured (a row of metrics.csv)."""

    epoch: int
    crop: str
    lr: float
    train_loss: float
    val_psnr: float
    val_ssim: float
    best_val_psnr: float
    seconds: float

    def row(self) -> dict[str, str]:
        return {
            "epoch": str(self.epoch),
            "crop": self.crop,
            "lr": f"{self.lr:.6g}",
            "train_loss": f"{self.train_loss:.6f}",
            "val_psnr": f"{self.val_psnr:.4f}",
            "val_ssim": f"{self.val_ssim:.5f}",
            "best_val_psnr": f"{self.best_val_psnr:.4f}",
            "seconds": f"{self.seconds:.1f}",
        }


@dataclass(frozen=True)
class TrainEvent:
    """Progress reported to the caller.

    kind: ``synth`` (done/total source images), ``synth_wait`` (a non-chief worker waits for
    the chief's dataset, info: path), ``start`` (info: replicas, steps, examples,
    input PSNR/SSIM of the validation pairs, resumed epoch), ``step`` (epoch, step/steps, loss),
    ``validate`` (epoch), ``epoch`` (record, improved).
    """

    kind: str
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    done: int = 0
    total: int = 0
    record: EpochRecord | None = None
    improved: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train`."""

    run_dir: str
    epochs_done: int
    epochs: int
    best_epoch: int
    best_val_psnr: float
    best_val_ssim: float
    input_val_psnr: float
    input_val_ssim: float
    weights: str
    resumed_from: int
    seconds: float
    notes: tuple[str, ...] = ()
    value_space: str = ""


Progress = Callable[[TrainEvent], None]


# --------------------------------------------------------------------------- data

"""The noise file `lpie-data calibrate noise` writes (JSON: the fitted betas per group) and that
synth's ``noise_file`` reads back (`read_noise_file` -> `NoiseModel`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpie_data import storage
from lpie_data.calibrate.noise import NoiseCalibration
from lpie_data.errors import DataError


def write_noise_file(calibration: NoiseCalibration, out: str | Path) -> None:
    """Write ``noise.json`` (through a temporary file and a rename)."""
    text = json.dumps(calibration.as_json(), indent=2, allow_nan=False) + "\n"
    storage.write_atomic(str(out), text.encode("utf-8"))


@dataclass(frozen=True)
class NoiseModel:
    """Noise groups read from a ``noise.json``: for synth ``noise = "calibrated"``.

    groups: tuple of (group dict, beta1, beta2, per-channel beta1 (3,), per-channel beta2 (3,)).
    """

    path: str
    groups: tuple[tuple[dict[str, Any], float, float, tuple[float, ...], tuple[float, ...]], ...]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise DataError(f"{where}: must be a finite number >= 0, got {value!r}")
    return float(value)


def read_noise_file(path: str | Path) -> NoiseModel:
    """Read and validate a ``noise.json`` written by ``lpie-data calibrate noise``.

    Raises DataError naming the file and the field at fault.
    """
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such noise file (make one with lpie-data calibrate noise)"
                        ) from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read noise file: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list) \
            or not data["groups"]:
        raise DataError(f"{path}: a noise file needs a non-empty 'groups' list")
    groups = []
    for i, g in enumerate(data["groups"]):
        where = f"{path}: groups[{i}]"
        if not isinstance(g, dict):
            raise DataError(f"{where}: must be an object")
        b1 = _number(g.get("beta1"), f"{where}.beta1")
        b2 = _number(g.get("beta2"), f"{where}.beta2")
        ch = g.get("channels") or {}
        c1 = ch.get("beta1", [b1] * 3) if isinstance(ch, dict) else None
        c2 = ch.get("beta2", [b2] * 3) if isinstance(ch, dict) else None
        if not (isinstance(c1, list) and isinstance(c2, list) and len(c1) == 3 and len(c2) == 3):
            raise DataError(f"{where}.channels: needs beta1 and beta2 lists of 3 numbers")
        groups.append((
            dict(g.get("group") or {}), b1, b2,
            tuple(_number(v, f"{where}.channels.beta1") for v in c1),
            tuple(_number(v, f"{where}.channels.beta2") for v in c2),
        ))
    return NoiseModel(path, tuple(groups))

"""The ``[synth]`` configuration: every default of the simulator lives here.

Loaded from a TOML table with :func:`synth_config_from_toml` (or ``lpie_data.tomlconfig.from_dict``
inside training recipes). Keys that take a range accept a number (fixed) or ``[min, max]``
(drawn uniformly per pair); they are stored as ``(min, max)`` tuples. Integers are accepted
wherever floats are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lpie_data.errors import ConfigError
from lpie_data.synth.noise import NOISE_SAMPLERS
from lpie_data.synth.tonemap import TONE_MAPS
from lpie_data.tomlconfig import from_dict, load_toml

Range = float | tuple[float, float]

SOURCE_SPACES = ("srgb", "linear")


def _as_range(value: Any, key: str) -> tuple[float, float]:
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ConfigError(f"{key}: a range is [min, max], got {list(value)!r}")
        lo, hi = float(value[0]), float(value[1])
    else:
        lo = hi = float(value)
    if math.isnan(lo) or math.isnan(hi):
        raise ConfigError(f"{key}: NaN is not allowed")
    if lo > hi:
        raise ConfigError(f"{key}: inverted range [{lo:g}, {hi:g}] (min must be <= max)")
    if lo != hi and (math.isinf(lo) or math.isinf(hi)):
        raise ConfigError(
            f"{key}: the range [{lo:g}, {hi:g}] has an infinite end, and no value can be drawn "
            f"uniformly from it; give two finite ends (for x_max, inf alone means no clipping)"
        )
    return lo, hi


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of y = gamma(C(x * k + n)); each key: the `[synth]` table in docs/synthesis.md.

    crop: side of the square crops in pixels (smaller sources give smaller crops).
    pairs_per_image: crops drawn from each source image.
    exposure: gain on the linear source before blur ([min, max], uniform), > 0.
    noise: ``none`` | ``fixed`` | ``unprocessing`` | ``sidd`` | ``calibrated``.
    beta1, beta2: shot / read variance for ``noise = "fixed"`` (number or [min, max]), >= 0.
    poisson: exact Poisson-Gaussian noise instead of the Gaussian approximation.
    x_max: clip level of C (number, ``inf`` for none, or [min, max]), > 0.
    tone_map: ``reinhard`` | ``srgb`` | ``none``.
    psf_rotation: maximum random PSF rotation in degrees (uniform in [-r, r]); 0 = off.
    source_space: how photo folders are read: ``srgb`` (linearised) or ``linear``.
    psf_recentre: pad PSF files whose peak or centroid is off the array centre so that the
    centroid is centred (default: warn, keep the file as it is).
    noise_file: for ``noise = "calibrated"``, the ``noise.json`` of ``lpie-data calibrate
    noise`` (a path relative to the current folder or absolute); one group drawn per pair.
    """

    crop: int = 400
    pairs_per_image: int = 4
    exposure: Range = (1.0, 2.0)
    noise: str = "unprocessing"
    beta1: Range = 1e-3
    beta2: Range = 1e-5
    poisson: bool = False
    x_max: Range = 1.0
    tone_map: str = "reinhard"
    psf_rotation: float = 0.0
    source_space: str = "srgb"
    psf_recentre: bool = False
    noise_file: str = ""

    def __post_init__(self) -> None:
        for name in ("exposure", "beta1", "beta2", "x_max"):
            object.__setattr__(self, name, _as_range(getattr(self, name), name))
        if self.crop < 8:
            raise ConfigError(f"crop: must be at least 8 pixels, got {self.crop}")
        if self.pairs_per_image < 1:
            raise ConfigError(f"pairs_per_image: must be at least 1, got {self.pairs_per_image}")
        if not (self.exposure[0] > 0 and math.isfinite(self.exposure[1])):
            raise ConfigError(f"exposure: must be finite and > 0, got {list(self.exposure)}")
        for name in ("beta1", "beta2"):
            lo, hi = getattr(self, name)
            if lo < 0 or not math.isfinite(hi):
                raise ConfigError(f"{name}: must be finite and >= 0, got {[lo, hi]}")
        if not self.x_max[0] > 0:
            raise ConfigError(f"x_max: must be > 0, got {list(self.x_max)}")
        if self.noise not in NOISE_SAMPLERS:
            raise ConfigError(
                f"noise: unknown noise model {self.noise!r}; valid: {', '.join(NOISE_SAMPLERS)}"
            )
        if self.noise == "calibrated" and not self.noise_file:
            raise ConfigError(
                'noise_file: noise = "calibrated" needs noise_file = "noise.json" '
                "(made by lpie-data calibrate noise)"
            )
        if self.tone_map not in TONE_MAPS:
            raise ConfigError(
                f"tone_map: unknown tone map {self.tone_map!r}; valid: {', '.join(TONE_MAPS)}"
            )
        if not 0.0 <= self.psf_rotation <= 180.0:
            raise ConfigError(f"psf_rotation: must be in [0, 180] degrees, got {self.psf_rotation}")
        if self.source_space not in SOURCE_SPACES:
            raise ConfigError(
                f"source_space: unknown {self.source_space!r}; valid: {', '.join(SOURCE_SPACES)}"
            )

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def synth_config_from_dict(data: dict[str, Any], where: str = "synth") -> SynthConfig:
    """A SynthConfig from a ``[synth]`` table; ConfigError names ``where.key`` on a bad key."""
    return from_dict(SynthConfig, data, where)


def synth_config_from_toml(path: str | Path) -> SynthConfig:
    """Read the ``[synth]`` table of a TOML file.

    With a ``[synth]`` table, other top-level tables are ignored (a training recipe can be
    passed as is); without one, the whole file is taken as the table.
    """
    data = load_toml(path)
    table = data["synth"] if "synth" in data else data
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: synth must be a table, got {table!r}")
    try:
        return synth_config_from_dict(table, "synth")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None

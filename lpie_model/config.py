"""The architecture of an LPIENet as plain Python: `ModelConfig`, every build default in one place.

No TensorFlow here: recipes (`lpie_model.recipe`) and run folders (`model.json`) validate their
model table with `ModelConfig` without importing it. `lpie_model.lpienet.build_lpienet` builds the
network a `ModelConfig` describes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lpie_model.errors import ModelConfigError

VARIANTS: dict[str, tuple[int, ...]] = {
    "base": (16, 32, 64, 32, 16),
    "large": (32, 64, 128, 64, 32),
}
ACTIVATIONS = ("elu", "relu")
IRB_SECOND_INPUTS = ("m", "y")


@dataclass(frozen=True)
class ModelConfig:
    """The build options of LPIENet (the ``[model]`` table of a recipe, the keys of ``model.json``).

    variant: ``base`` (16-32-64-32-16, 133,652 parameters) or ``large`` (32-64-128-64-32,
        514,308 parameters).
    widths: stage widths overriding the variant, encoders then decoders (odd length).
    activation: ``elu`` (released code) or ``relu`` (paper figure), inside IRBs and the head.
    dw_kernel: depthwise kernel size in IRBs and the head (odd).
    irb_second_input: ``m`` (released Keras code; the default, int8-friendlier) or ``y`` (the
        paper's figure); see `lpie_model.lpienet.irb`.

    Raises:
        ModelConfigError: a bad value, naming the option and the valid values.
    """

    variant: str = "base"
    widths: tuple[int, ...] | None = None
    activation: str = "elu"
    dw_kernel: int = 3
    irb_second_input: str = "m"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ModelConfigError(
                f"unknown variant {self.variant!r}; valid variants: {', '.join(VARIANTS)}"
            )
        if self.widths is not None:
            try:
                widths = tuple(int(w) for w in self.widths)
            except (TypeError, ValueError) as e:
                raise ModelConfigError(f"widths {self.widths!r}: bad value ({e})") from None
            if len(widths) < 1 or len(widths) % 2 == 0 or min(widths) < 1:
                raise ModelConfigError(
                    f"widths {list(widths)}: need an odd number (>= 1) of positive stage widths, "
                    "encoders then decoders, e.g. [16, 32, 64, 32, 16]"
                )
            object.__setattr__(self, "widths", widths)
        if self.activation not in ACTIVATIONS:
            raise ModelConfigError(
                f"unknown activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}"
            )
        if self.irb_second_input not in IRB_SECOND_INPUTS:
            raise ModelConfigError(
                f"unknown irb_second_input {self.irb_second_input!r}; valid: "
                f"{', '.join(IRB_SECOND_INPUTS)}"
            )
        k = self.dw_kernel
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ModelConfigError(f"dw_kernel {k!r}: must be a positive odd integer")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """A config from a ``model.json``-style mapping; unknown keys are refused with the list
        of valid ones."""
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise ModelConfigError(
                f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(KEYS)}"
            )
        return cls(**data)

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """The stage widths: `widths` if given, else the variant's."""
        return self.widths if self.widths is not None else VARIANTS[self.variant]

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this inside the network (2 ** number of poolings)."""
        return size_multiple(self.stage_widths)

    def build_kwargs(self) -> dict[str, Any]:
        """The options as a JSON-ready dict (``widths`` a list, left out when None): the keyword
        arguments of `build_lpienet` and the keys of ``model.json``."""
        kwargs = dataclasses.asdict(self)
        if kwargs["widths"] is None:
            del kwargs["widths"]
        else:
            kwargs["widths"] = list(kwargs["widths"])
        return kwargs

    def resolved(self) -> dict[str, Any]:
        """Every option, with the stage widths spelled out (a built model's `lpie_config`)."""
        return {**dataclasses.asdict(self), "widths": self.stage_widths}


KEYS = tuple(f.name for f in dataclasses.fields(ModelConfig))


def size_multiple(widths: Sequence[int]) -> int:
    """H and W must be multiples of this inside a network of these stage widths."""
    return 2 ** (len(widths) // 2)

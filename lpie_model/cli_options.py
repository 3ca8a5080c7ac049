"""What the `lpie-model` commands share: error handling, the model argument, choices."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lpie_data.console import error_handler
from lpie_data.valuespace import VALUE_SPACES
from lpie_model.errors import ModelError

# lpie_data's errors and the network's own (lpie_model.errors) become a message and exit 1.
handle_errors = error_handler(ModelError)

ModelArg = Annotated[
    Path,
    typer.Argument(
        exists=True, help="A training run folder, a .weights.h5, a .keras or a .tflite file."
    ),
]
ArchOpt = Annotated[
    str | None,
    typer.Option(
        "--arch",
        help="Architecture of a .weights.h5 without model.json next to it: a model.json file, or "
        "its JSON (e.g. '{\"variant\": \"base\", \"activation\": \"elu\"}').",
    ),
]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", help="LiteRT interpreter threads (.tflite models).")
]
# Value spaces (lpie_data.valuespace) an image can be in; evaluate can also score as stored.
InputSpace = StrEnum("InputSpace", {name: name for name in VALUE_SPACES})  # type: ignore[misc]
ScoreSpace = StrEnum(  # type: ignore[misc]
    "ScoreSpace", {"stored": "stored", **{name: name for name in VALUE_SPACES}}
)


def arch_build(arch: str | None) -> dict | None:
    """``--arch``'s build options (None when not given); ConfigError for a bad value."""
    if arch is None:
        return None
    from lpie_model.checkpoint import architecture

    return architecture(arch)

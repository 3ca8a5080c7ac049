"""lpie_data: verified, sharded pair datasets for image restoration, and their synthesis.

Public reading API: :func:`iter_pairs`, :func:`pair_dataset`, :func:`read_manifest`,
:func:`value_space_of`, :class:`Pair`.

Writing, one entry point per ``lpie-data`` job (each returns a :class:`JobSummary`):
:func:`prepare_sidd`, :func:`prepare_udc`, :func:`prepare_gopro` (:mod:`lpie_data.prepare`) and
:func:`synthesize` (:mod:`lpie_data.synth.pipeline`), all taking ``job=JobOptions(...)``.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("lpie")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

from lpie_data.dataset import iter_pairs, pair_dataset  # noqa: E402
from lpie_data.jobs import JobOptions, JobSummary  # noqa: E402
from lpie_data.record_reader import Pair  # noqa: E402
from lpie_data.shards import read_manifest  # noqa: E402
from lpie_data.valuespace import value_space_of  # noqa: E402

# Imported on first use: the synthesiser pulls in scipy (about a second).
_LAZY = {
    "prepare_sidd": "lpie_data.prepare",
    "prepare_udc": "lpie_data.prepare",
    "prepare_gopro": "lpie_data.prepare",
    "synthesize": "lpie_data.synth.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lpie_data' has no attribute {name!r}")


__all__ = [
    "JobOptions",
    "JobSummary",
    "Pair",
    "__version__",
    "iter_pairs",
    "pair_dataset",
    "prepare_gopro",
    "prepare_sidd",
    "prepare_udc",
    "read_manifest",
    "synthesize",
    "value_space_of",
]

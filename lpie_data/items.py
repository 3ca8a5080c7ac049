"""The contract between a dataset source and the job runner: work items and their plan.

A source (``lpie_data/sources/<name>.py``, or the synthesiser) is a leaf module with:

- ``NAME``: the dataset name written into the manifest;
- ``work_items(root, ...) -> Plan``: every input checked from its headers, nothing written;
- ``produce(item) -> Iterator[Example]``: the worker side, one item's examples (picklable
  arguments in, so it runs in joblib or Dask workers). An example may be yielded as a
  :class:`~lpie_data.records.Later`, finished by the thread that writes it.

:func:`lpie_data.jobs.run_job` turns a plan into shards; :mod:`lpie_data.prepare` wires each
source to it. Sources import this module, never the runner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lpie_data.errors import DataError
from lpie_data.pngfile import both
from lpie_data.records import Example, Later


@dataclass(frozen=True)
class WorkItem:
    """One unit of work: ``key`` is unique and stable, ``args`` is picklable."""

    key: str
    split: str
    args: Any = None


#: What every source's ``work_items`` returns: the items in job order, and notes for the user
#: (e.g. a split whose size differs from the published one).
Plan = tuple[list[WorkItem], list[str]]

#: A source's worker function: one item's examples.
Produce = Callable[[WorkItem], Iterable[Example | Later]]


def load_pair(load: Callable[[Path], np.ndarray], input_path: Path, target_path: Path,
              target_name: str = "target") -> tuple[np.ndarray, np.ndarray]:
    """Worker side: both images of a pair read with ``load`` (which names a bad file); DataError
    naming ``input_path`` if their shapes differ (``target_name``: e.g. "sharp frame").
    The two are read at the same time where the worker may use two cores (pngfile.both)."""
    inp, tgt = both(load, input_path, target_path)
    if inp.shape != tgt.shape:
        raise DataError(f"{input_path}: shape {inp.shape} differs from its {target_name} "
                        f"{target_path} ({tgt.shape})")
    return inp, tgt

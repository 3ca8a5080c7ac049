"""Run a dataset-writing job: parallel work items, resume after a crash, shards, manifest.

A job turns work items (e.g. one source image each) into examples with a top-level
``produce(item) -> Iterable[Example]`` that runs in joblib workers (local processes, or a Dask
cluster through joblib's dask backend). Each finished item leaves a part file in
``OUT/.lpie-work/``; a rerun skips finished items, so a killed job resumes and ends with exactly
the bytes an uninterrupted run writes. Once every item is done the parts become shards and
``manifest.json`` is written last.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lpie_data import __version__, storage
from lpie_data.errors import ConfigError, DataError, OutputError
from lpie_data.records import Example, example_pieces, frame_pieces
from lpie_data.shards import (
    DEFAULT_SHARD_BYTES,
    FORMAT,
    FORMAT_VERSION,
    HASH_IN_WORKER_BYTES,
    MANIFEST,
    Part,
    RecordInfo,
    assemble_split,
    file_sha256,
    write_manifest,
)
from lpie_data.valuespace import manifest_value_space

WORK_DIR = ".lpie-work"
BACKENDS = ("loky", "threading", "dask")


@dataclass(frozen=True)
class WorkItem:
    """One unit of work: ``key`` is unique and stable, ``args`` is picklable."""

    key: str
    split: str
    args: Any = None


@dataclass
class JobSummary:
    """What a job did: per split examples and bytes, items done now / resumed, seconds."""

    out: str
    noop: bool = False
    items: int = 0
    items_resumed: int = 0
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _fingerprint(name: str, command: str, arguments: dict, items: Sequence[WorkItem],
                 shard_bytes: int) -> dict[str, Any]:
    keys = hashlib.sha256("\n".join(f"{i.split}\t{i.key}" for i in items).encode()).hexdigest()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "command": command,
        "arguments": arguments,
        "shard_bytes": shard_bytes,
        "items_sha256": keys,
    }


def _range(a: np.ndarray) -> tuple[float, float]:
    scale = {"uint8": 255.0, "uint16": 65535.0}.get(a.dtype.name, 1.0)
    return float(a.min()) / scale, float(a.max()) / scale


def _part_path(work: str, index: int) -> str:
    return storage.join(work, f"part-{index:06d}")


def _do_item(produce: Callable[[WorkItem], Iterable[Example]], item: WorkItem, index: int,
             work: str) -> int:
    """Worker side: run ``produce`` and write the item's part file + sidecar atomically."""
    base = _part_path(work, index)
    records = []
    dtypes: tuple[str | None, str | None] = (None, None)
    with storage.open_file(base + ".rec.tmp", "wb") as f:
        for ex in produce(item):
            pieces = frame_pieces(example_pieces(ex))
            for piece in pieces:  # written piece by piece: the images are not copied again
                f.write(piece)
            size = sum(map(len, pieces))
            del pieces
            records.append({"key": ex.key, "size": size, "input_range": _range(ex.input),
                            "target_range": _range(ex.target)})
            this = (ex.input.dtype.name, ex.target.dtype.name)
            if dtypes != (None, None) and this != dtypes:
                raise DataError(f"{item.key}: examples mix storage dtypes {dtypes} and {this}")
            dtypes = this
    # A large part likely becomes a shard of its own (hard-linked, not copied): hash it here,
    # in parallel with the other workers, while it is still in the page cache.
    total = sum(r["size"] for r in records)
    sha = file_sha256(base + ".rec.tmp") if total >= HASH_IN_WORKER_BYTES else None
    storage.rename(base + ".rec.tmp", base + ".rec")
    sidecar = {"item": item.key, "split": item.split, "input_dtype": dtypes[0],
               "target_dtype": dtypes[1], "records": records, "sha256": sha}
    storage.write_atomic(base + ".json", json.dumps(sidecar).encode())
    return len(records)


def _load_part(work: str, index: int, item: WorkItem) -> Part | None:
    base = _part_path(work, index)
    if not (storage.exists(base + ".json") and storage.exists(base + ".rec")):
        return None
    with storage.open_file(base + ".json", "rb") as f:
        side = json.loads(f.read())
    if side["item"] != item.key or side["split"] != item.split:
        return None
    recs = tuple(RecordInfo(r["key"], r["size"], tuple(r["input_range"]),
                            tuple(r["target_range"])) for r in side["records"])
    return Part(base + ".rec", item.split, side["input_dtype"], side["target_dtype"], recs,
                side.get("sha256"))


def _prepare_out(out: str, fingerprint: dict, overwrite: bool, name: str) -> str:
    """Check OUT and return 'done', 'resume' or 'new'."""
    if not storage.exists(out):
        storage.makedirs(out)
        return "new"
    if not storage.isdir(out):
        raise OutputError(f"{out}: exists and is not a folder")
    entries = storage.listdir(out)
    manifest_path = storage.join(out, MANIFEST)
    job_path = storage.join(out, WORK_DIR, "job.json")
    previous = None
    for p in (manifest_path, job_path):
        if storage.exists(p):
            with storage.open_file(p, "rb") as f:
                previous = json.loads(f.read())
            break
    if previous is None:
        if entries:
            raise OutputError(
                f"{out}: exists, is not empty and is not an lpie dataset; choose a new folder"
            )
        return "new"
    same = previous.get("job") == fingerprint or previous == fingerprint
    if same:
        return "done" if storage.exists(manifest_path) else "resume"
    if not overwrite:
        raise OutputError(
            f"{out}: holds a dataset made by '{previous.get('command', '?')}' with other "
            "arguments or inputs; use another --out, or --overwrite to replace it"
        )
    for entry in entries:
        if entry == MANIFEST or ".tfrecord-" in entry or entry.startswith(".") and entry.endswith(
            ".tmp"
        ):
            storage.remove(storage.join(out, entry))
    if storage.exists(storage.join(out, WORK_DIR)):
        storage.rmtree(storage.join(out, WORK_DIR))
    return "new"


def run_job(
    out: str,
    name: str,
    command: str,
    arguments: dict[str, Any],
    items: Sequence[WorkItem],
    produce: Callable[[WorkItem], Iterable[Example]],
    *,
    jobs: int = -1,
    backend: str = "loky",
    scheduler: str | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    extra_manifest: dict[str, Any] | None = None,
) -> JobSummary:
    """Write the dataset ``out`` from ``items`` (in the given order) with ``produce``.

    ``arguments`` identifies the output (leave out jobs/backend: they never change bytes).
    ``progress(done, total)`` is called as items finish. Resumes a killed run; a finished,
    identical run is a no-op (``summary.noop``); other content in ``out`` is refused unless
    ``overwrite``. Raises LpieError subclasses; worker errors propagate with their message.
    """
    t0 = time.perf_counter()
    out = str(out)
    if backend not in BACKENDS:
        raise OutputError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if jobs == 0:
        raise ConfigError("jobs must be a number of workers >= 1, or negative (-1: all cores)")
    if not items:
        raise DataError("nothing to do: no input items were found")
    seen: set[str] = set()
    for it in items:
        if it.key in seen:
            raise DataError(f"duplicate work item {it.key!r}")
        seen.add(it.key)
    fingerprint = json.loads(json.dumps(_fingerprint(name, command, arguments, items, shard_bytes)))
    state = _prepare_out(out, fingerprint, overwrite, name)
    summary = JobSummary(out=out, items=len(items))
    if state == "done":
        summary.noop = True
        from lpie_data.shards import read_manifest

        for split, entry in read_manifest(out)["splits"].items():
            summary.splits[split] = {"examples": entry["examples"], "bytes": entry["bytes"]}
        if storage.exists(storage.join(out, WORK_DIR)):  # killed between manifest and cleanup
            storage.rmtree(storage.join(out, WORK_DIR))
        summary.seconds = time.perf_counter() - t0
        return summary
    work = storage.join(out, WORK_DIR)
    storage.makedirs(work)
    storage.write_atomic(storage.join(work, "job.json"), json.dumps(fingerprint).encode())

    parts: dict[int, Part] = {}
    for index, item in enumerate(items):
        part = _load_part(work, index, item)
        if part is not None:
            parts[index] = part
    summary.items_resumed = len(parts)
    todo = [(i, it) for i, it in enumerate(items) if i not in parts]
    done = len(parts)
    if progress:
        progress(done, len(items))
    if todo:
        for _ in _parallel(produce, todo, work, jobs, backend, scheduler):
            done += 1
            if progress:
                progress(done, len(items))
    for index, item in todo:
        part = _load_part(work, index, item)
        if part is None:
            raise DataError(f"{item.key}: worker finished but left no part file")
        parts[index] = part

    splits: dict[str, list[Part]] = {}
    for index in range(len(items)):
        splits.setdefault(items[index].split, []).append(parts[index])
    if not any(p.records for ps in splits.values() for p in ps):
        raise DataError("no examples were produced")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lpie_version": __version__,
        "name": name,
        "command": command,
        "arguments": arguments,
        "job": fingerprint,
        "splits": {},
    }
    if extra_manifest:
        manifest.update(extra_manifest)
    if "value_space" not in manifest:  # what the command implies (prepare sidd/gopro/udc, synth)
        space, _ = manifest_value_space(manifest)
        if space is not None:
            manifest["value_space"] = space
    for split in sorted(splits):
        if not any(p.records for p in splits[split]):
            continue
        entry = assemble_split(out, name, split, splits[split], shard_bytes)
        manifest["splits"][split] = entry
        summary.splits[split] = {"examples": entry["examples"], "bytes": entry["bytes"]}
    write_manifest(out, manifest)
    storage.rmtree(work)
    summary.seconds = time.perf_counter() - t0
    return summary


def _parallel(produce: Callable, todo: list[tuple[int, WorkItem]], work: str, jobs: int,
              backend: str, scheduler: str | None) -> Iterable[int]:
    """Run ``_do_item`` over ``todo`` on ``backend``; yield as each item's part is stored."""
    from lpie_data.backends import run_items

    yield from run_items(_do_item, produce, todo, work, jobs=jobs, backend=backend,
                         scheduler=scheduler)

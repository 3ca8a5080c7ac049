"""Run a dataset-writing job: parallel work items, resume after a crash, shards, manifest.

A job turns work items (e.g. one source image each) into examples with a top-level
``produce(item) -> Iterable[Example]`` that runs in joblib workers (local processes, or a Dask
cluster through joblib's dask backend). Each finished item leaves a part file in
``OUT/.lpie-work/``; a rerun skips finished items, so a killed job resumes and ends with exactly
the bytes an uninterrupted run writes. Once every item is done the parts become shards and
``manifest.json`` is written last.

A job holds an advisory lock on its (local) output folder while it runs (:func:`output_lock`).
Its fingerprint covers the command, arguments, items and the content of every input file
(:func:`item_inputs`), checked cheaply on a rerun (see docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import functools
import hashlib
import json
import os
import socket
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lpie_data import __version__, storage
from lpie_data.errors import ConfigError, DataError, OutputError
from lpie_data.items import Produce, WorkItem
from lpie_data.records import example_pieces, frame_pieces
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
#: The advisory lock file a running job holds inside its (local) output folder.
LOCK_FILE = ".lpie-lock"
BACKENDS = ("loky", "threading", "dask")


__all__ = ["BACKENDS", "JobOptions", "JobSummary", "WorkItem", "run_job"]


@dataclass(frozen=True)
class JobOptions:
    """How a dataset job runs: the bundle every job entry point takes as ``job=``.

    ``jobs``: parallel workers (-1: all cores); ``backend``: joblib backend, one of
    :data:`BACKENDS` (``dask`` runs on the cluster at ``scheduler``); ``shard_bytes``: target
    shard size; ``overwrite``: replace a dataset made with other arguments; ``progress(done,
    total)``: called as items finish; ``warn(note)``: called with each note about the inputs
    before the work starts (the notes are in the summary too). Only ``shard_bytes`` changes the
    bytes written.
    """

    jobs: int = -1
    backend: str = "loky"
    scheduler: str | None = None
    shard_bytes: int = DEFAULT_SHARD_BYTES
    overwrite: bool = False
    progress: Callable[[int, int], None] | None = None
    warn: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise OutputError(f"unknown backend {self.backend!r}; valid: {', '.join(BACKENDS)}")
        if self.jobs == 0:
            raise ConfigError("jobs must be a number of workers >= 1, or negative (-1: all cores)")
        if self.shard_bytes < 1:
            raise ConfigError(f"shard size must be positive, got {self.shard_bytes} bytes")


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


def _strings(obj: Any, found: list[str]) -> None:
    """Every string inside ``obj`` (dataclasses, dicts, lists and tuples are searched)."""
    if isinstance(obj, str):
        found.append(obj)
    elif isinstance(obj, os.PathLike):
        found.append(os.fspath(obj))
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            _strings(getattr(obj, f.name), found)
    elif isinstance(obj, dict):
        for v in obj.values():
            _strings(v, found)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _strings(v, found)


def item_inputs(item: WorkItem) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` of every local file the item's arguments name, sorted.

    A file is named by an absolute path, or by a path relative to a folder the arguments also
    name (a dataset root). Remote URLs are not looked at. Raises DataError for a named path
    that is neither a regular file nor a folder (a FIFO would hang the worker that opens it).
    """
    strings: list[str] = []
    _strings(item.args, strings)
    local = [s for s in dict.fromkeys(strings) if s and "://" not in s and "\0" not in s]
    roots = [s for s in local if os.path.isabs(s) and os.path.isdir(s)]
    found: dict[str, tuple[str, int, int]] = {}
    for s in local:
        for path in [s] if os.path.isabs(s) else [os.path.join(r, s) for r in roots]:
            try:
                st = os.stat(path)
            except (OSError, ValueError):
                continue
            if stat.S_ISREG(st.st_mode):
                found[path] = (path, st.st_size, st.st_mtime_ns)
            elif not stat.S_ISDIR(st.st_mode):
                raise DataError(f"{path}: not a regular file (a FIFO, socket or device); "
                                "lpie reads regular files only")
    return sorted(found.values())


def _inputs_digest(item: WorkItem) -> str:
    """Digest of the *content* of the item's input files (names, sizes and BLAKE2 hashes).

    Content, not modification times: a dataset's bytes stay the same whoever copied the sources
    and how. It is computed by the worker that reads the files anyway; a rerun only rehashes
    when a file is newer than the state it is compared with (:func:`_newer_inputs`).
    """
    digest = hashlib.sha256()
    for path, size, mtime in item_inputs(item):
        digest.update(f"{path}\t{size}\t{_file_blake2(path, size, mtime)}\n".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=4096)
def _file_blake2(path: str, size: int, mtime_ns: int) -> str:
    """BLAKE2 of a file, once per process for each (path, size, mtime): many items can share
    one input (synthesis from a dataset's shards reads one record of a large shard each)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "blake2b").hexdigest()


def _newer_inputs(stats: Sequence[tuple[str, int, int]], than_ns: int) -> bool:
    """Whether any input file was modified after (or in the same clock tick as) ``than_ns``,
    a state file's mtime."""
    return any(mtime >= than_ns for _, _, mtime in stats)


def _combined(digests: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


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


def _same_job(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same command, arguments and items (the content of the inputs is checked separately: the
    manifest's ``job.inputs_sha256`` covers the content of every input file)."""
    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k != "inputs_sha256"}

    return strip(a) == strip(b)


def _read_state(path: str, what: str) -> Any:
    """A JSON state file of the job; OutputError naming it when it is damaged."""
    try:
        with storage.open_file(path, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise OutputError(f"{path}: damaged {what} ({type(e).__name__}: {e}); use --overwrite "
                          "to replace the dataset, or another --out") from None
    if not isinstance(data, dict):
        raise OutputError(f"{path}: damaged {what} (not a JSON object); use --overwrite to "
                          "replace the dataset, or another --out")
    return data


def _range(a: np.ndarray) -> tuple[float, float]:
    scale = {"uint8": 255.0, "uint16": 65535.0}.get(a.dtype.name, 1.0)
    return float(a.min()) / scale, float(a.max()) / scale


def _part_path(work: str, index: int) -> str:
    return storage.join(work, f"part-{index:06d}")


def _do_item(produce: Produce, item: WorkItem, index: int, work: str) -> int:
    """Worker side: run ``produce`` and write the item's part file + sidecar atomically."""
    base = _part_path(work, index)
    inputs = _inputs_digest(item)  # what this part was made from (checked on a resume)
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
               "target_dtype": dtypes[1], "records": records, "sha256": sha, "inputs": inputs}
    storage.write_atomic(base + ".json", json.dumps(sidecar).encode())
    return len(records)


def _load_part(work: str, index: int, item: WorkItem,
               stats: Sequence[tuple[str, int, int]] | None = None,
               notes: list[str] | None = None, digests: dict[int, str] | None = None
               ) -> Part | None:
    """The finished part of ``item``, or None where it must be (re)done.

    A part is redone when its files are missing, its sidecar is damaged or its record file has
    another size than the sidecar says (with a note in ``notes``), or when ``stats`` (the
    item's input files) shows a file modified after the part was made whose content differs.
    ``digests[index]`` receives the content digest of the part's inputs.
    """
    base = _part_path(work, index)
    if not (storage.exists(base + ".json") and storage.exists(base + ".rec")):
        return None
    try:
        with storage.open_file(base + ".json", "rb") as f:
            side = json.loads(f.read())
        recs = tuple(RecordInfo(r["key"], r["size"], tuple(r["input_range"]),
                                tuple(r["target_range"])) for r in side["records"])
        if side["item"] != item.key or side["split"] != item.split:
            return None
        part = Part(base + ".rec", item.split, side["input_dtype"], side["target_dtype"], recs,
                    side.get("sha256"))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        if notes is not None:
            notes.append(f"{base}.json: damaged part file ({type(e).__name__}); {item.key} redone")
        return None
    if storage.size(base + ".rec") != part.size:
        if notes is not None:
            notes.append(f"{base}.rec: {storage.size(base + '.rec')} bytes, its sidecar says "
                         f"{part.size}; {item.key} redone")
        return None
    if (stats is not None and _newer_inputs(stats, storage.mtime_ns(base + ".json"))
            and side.get("inputs") != _inputs_digest(item)):
        if notes is not None:
            notes.append(f"{item.key}: its input files changed since the interrupted run; redone")
        return None
    if digests is not None:
        digests[index] = side.get("inputs", "")
    return part


def _prepare_out(out: str, fingerprint: dict, overwrite: bool, name: str,
                 items: Sequence[WorkItem] = (),
                 stats: Sequence[Sequence[tuple[str, int, int]]] = ()) -> str:
    """Check OUT (which exists) and return 'done', 'resume' or 'new'."""
    if not storage.isdir(out):
        raise OutputError(f"{out}: exists and is not a folder")
    entries = [e for e in storage.listdir(out) if e != LOCK_FILE]
    manifest_path = storage.join(out, MANIFEST)
    job_path = storage.join(out, WORK_DIR, "job.json")
    previous = None
    for p, what in ((manifest_path, "manifest"), (job_path, "job file")):
        if storage.exists(p):
            try:
                previous = _read_state(p, what)
            except OutputError:
                if not overwrite:
                    raise
                previous = {}
            break
    if previous is None:
        if entries:
            raise OutputError(
                f"{out}: exists, is not empty and is not an lpie dataset; choose a new folder"
            )
        return "new"
    done = storage.exists(manifest_path)
    job = previous.get("job", previous)
    same = isinstance(job, dict) and _same_job(job, fingerprint)
    if same and done:
        # Modification times first (cheap); contents only where a file is newer.
        recorded = job.get("inputs_sha256")
        if recorded is None or not _newer_inputs([s for st in stats for s in st],
                                                 storage.mtime_ns(manifest_path)):
            return "done"
        if _combined([_inputs_digest(it) for it in items]) == recorded:
            if not storage.is_remote(manifest_path):  # the same content: hash it once only
                os.utime(manifest_path)
            return "done"
    elif same:
        _remove_tmp(out)  # left by a run killed while joining (a hard-linked part, ...)
        return "resume"
    if not overwrite:
        if same:
            raise OutputError(
                f"{out}: its input files changed (size or modification time) since this "
                "dataset was made; use --overwrite to rebuild it, or another --out"
            )
        raise OutputError(
            f"{out}: holds a dataset made by '{previous.get('command', '?')}' with other "
            "arguments or inputs; use another --out, or --overwrite to replace it"
        )
    for entry in entries:
        if entry == MANIFEST or ".tfrecord-" in entry:
            storage.remove(storage.join(out, entry))
    _remove_tmp(out)
    if storage.exists(storage.join(out, WORK_DIR)):
        storage.rmtree(storage.join(out, WORK_DIR))
    return "new"


def _remove_tmp(out: str) -> None:
    """Remove the temporary files (``.NAME.tmp``) an interrupted run left in ``out``."""
    for entry in storage.listdir(out):
        if entry.startswith(".") and entry.endswith(".tmp"):
            storage.remove(storage.join(out, entry))


@contextlib.contextmanager
def output_lock(out: str, command: str) -> Iterator[None]:
    """Hold an advisory lock on the local folder ``out`` (which exists) while the block runs.

    The lock file ``out/.lpie-lock`` records who holds it (pid, host, command, start time); a
    second run fails at once with OutputError naming the holder. The lock goes when its process
    ends, however it ends. Remote folders (``gs://``, ``ram://``) are not locked.
    """
    if storage.is_remote(out):
        yield
        return
    path = os.path.join(out, LOCK_FILE)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"{out}: cannot write ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode(errors="replace")
            os.close(fd)
            try:
                info = json.loads(holder)
                who = (f"pid {info['pid']} on {info['host']}, '{info['command']}' started "
                       f"{info['started']}")
            except (ValueError, KeyError, TypeError):
                who = "another process"
            raise OutputError(f"{out}: in use by another run ({who}); wait for it to end or "
                              "use another --out") from None
        try:  # the run that held it may have removed the file just before we locked it
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
        os.close(fd)


def run_job(
    out: str,
    name: str,
    command: str,
    arguments: dict[str, Any],
    items: Sequence[WorkItem],
    produce: Produce,
    job: JobOptions = JobOptions(),
    *,
    notes: Sequence[str] = (),
    extra_manifest: dict[str, Any] | None = None,
) -> JobSummary:
    """Write the dataset ``out`` from ``items`` (in the given order) with ``produce``.

    ``arguments`` identifies the output (leave out jobs/backend: they never change bytes).
    ``notes`` about the inputs go to ``job.warn`` before any work and into the summary.
    Resumes a killed run; a finished, identical run is a no-op (``summary.noop``); other
    content in ``out`` is refused unless ``job.overwrite``. Raises LpieError subclasses;
    worker errors propagate with their message.
    """
    t0 = time.perf_counter()
    out = str(out)
    shard_bytes = job.shard_bytes
    if not items:
        raise DataError("nothing to do: no input items were found")
    seen: set[str] = set()
    for it in items:
        if it.key in seen:
            raise DataError(f"duplicate work item {it.key!r}")
        seen.add(it.key)
    inputs = [item_inputs(it) for it in items]  # stat only; refuses FIFOs before any work
    fingerprint = json.loads(json.dumps(_fingerprint(name, command, arguments, items, shard_bytes)))
    for note in notes if job.warn else ():
        job.warn(note)
    if not storage.exists(out):
        try:
            storage.makedirs(out)
        except OSError as e:
            raise OutputError(f"{out}: cannot create the folder ({e.strerror})") from None
    if not storage.isdir(out):
        raise OutputError(f"{out}: exists and is not a folder")
    with output_lock(out, command):
        return _run_locked(out, name, command, arguments, items, produce, fingerprint, inputs,
                           job=job, notes=notes, extra_manifest=extra_manifest, t0=t0)


def _run_locked(out: str, name: str, command: str, arguments: dict[str, Any],
                items: Sequence[WorkItem], produce: Produce, fingerprint: dict[str, Any],
                inputs: Sequence[Sequence[tuple[str, int, int]]], *, job: JobOptions,
                notes: Sequence[str], extra_manifest: dict[str, Any] | None,
                t0: float) -> JobSummary:
    """The body of :func:`run_job`, run while this process holds the output folder's lock."""
    jobs, backend, scheduler = job.jobs, job.backend, job.scheduler
    shard_bytes, overwrite, progress = job.shard_bytes, job.overwrite, job.progress
    state = _prepare_out(out, fingerprint, overwrite, name, items, inputs)
    summary = JobSummary(out=out, items=len(items), notes=list(notes))
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
    try:
        storage.makedirs(work)
        storage.write_atomic(storage.join(work, "job.json"), json.dumps(fingerprint).encode())
    except OSError as e:
        raise OutputError(f"{out}: cannot write ({e.strerror})") from None

    parts: dict[int, Part] = {}
    digests: dict[int, str] = {}
    for index, item in enumerate(items):
        part = _load_part(work, index, item, inputs[index], summary.notes, digests)
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
        part = _load_part(work, index, item, digests=digests)
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
        # The content of every input file: a source changed in place is noticed on a rerun.
        "job": {**fingerprint, "inputs_sha256": _combined([digests[i] for i in range(len(items))])},
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

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

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from lpie_data import __version__, storage
from lpie_data.cores import usable_cores
from lpie_data.errors import ConfigError, DataError, OutputError
from lpie_data.fingerprint import (
    CONTENT_HASH,
    combined_digest,
    inputs_digest,
    item_inputs,
    job_fingerprint,
)
from lpie_data.items import Produce, WorkItem
from lpie_data.joiner import SplitJoiner
from lpie_data.outdir import WORK_DIR, output_lock, prepare_out
from lpie_data.overlap import run_overlapped
from lpie_data.parts import do_item, load_part, write_part
from lpie_data.records import Example, Later
from lpie_data.runwriter import RunWriter
from lpie_data.shards import (
    DEFAULT_SHARD_BYTES,
    FORMAT,
    FORMAT_VERSION,
    Part,
    write_manifest,
)
from lpie_data.valuespace import manifest_value_space

BACKENDS = ("loky", "threading", "dask")


__all__ = ["BACKENDS", "JobOptions", "JobSummary", "WorkItem", "default_jobs", "run_job"]


@dataclass(frozen=True)
class JobOptions:
    """How a dataset job runs: the bundle every job entry point takes as ``job=``.

    ``jobs``: parallel workers; None (the default): :func:`default_jobs`, one per two cores;
    -1: one per core; ``backend``: joblib backend, one of
    :data:`BACKENDS` (``dask`` runs on the cluster at ``scheduler``); ``shard_bytes``: target
    shard size; ``overwrite``: replace a dataset made with other arguments; ``progress(done,
    total)``: called as items finish; ``warn(note)``: called with each note about the inputs
    before the work starts (the notes are in the summary too). Only ``shard_bytes`` changes the
    bytes written.
    """

    jobs: int | None = None
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

    @property
    def workers(self) -> int:
        """``jobs`` as joblib takes it: a number of workers, or negative (-1: all cores)."""
        return default_jobs() if self.jobs is None else self.jobs


def default_jobs(cores: int | None = None) -> int:
    """Workers when ``--jobs`` is not given: one per two cores (``cores``: default
    :func:`~lpie_data.cores.usable_cores`).

    Each worker keeps two cores busy: the two images of a pair are read at once
    (:func:`lpie_data.pngfile.both`; a process worker gets ``cores // jobs`` threads), and in
    one process producing overlaps writing and hashing. One worker per core halves that, and
    adds what process workers cost: on 2 cores ``--jobs 2`` ran udc at 0.43x and synth at
    0.34x the speed of ``--jobs 1`` (docs/benchmarks.md, fifth pass).
    """
    return max(1, (usable_cores() if cores is None else cores) // 2)


@dataclass
class JobSummary:
    """What a job did: per split examples and bytes, items done now / resumed, seconds, and
    the workers that made the items (0: a Dask cluster's)."""

    out: str
    noop: bool = False
    items: int = 0
    items_resumed: int = 0
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    workers: int = 1


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
    fingerprint = job_fingerprint(name, command, arguments, items, shard_bytes)
    fingerprint = json.loads(json.dumps(fingerprint))
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
    jobs, backend, scheduler = job.workers, job.backend, job.scheduler
    shard_bytes, overwrite, progress = job.shard_bytes, job.overwrite, job.progress
    state = prepare_out(out, fingerprint, overwrite, name, items, inputs)
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
        part = load_part(work, index, item, inputs[index], summary.notes, digests)
        if part is not None:
            parts[index] = part
    summary.items_resumed = len(parts)
    todo = [(i, it) for i, it in enumerate(items) if i not in parts]
    summary.workers = _workers_used(jobs, backend, len(todo))
    done = len(parts)
    if progress:
        progress(done, len(items))
    # Each split's shards are joined while the items are made, from the parts in item order.
    joiners: dict[str, SplitJoiner] = {}
    joined = 0

    def join_ready() -> None:
        nonlocal joined
        while joined < len(items) and joined in parts:
            split = items[joined].split
            if split not in joiners:
                joiners[split] = SplitJoiner(out, name, split, shard_bytes)
            joiners[split].add(parts[joined])
            joined += 1

    try:
        join_ready()
        for index in (_parallel(produce, todo, work, jobs, backend, scheduler, shard_bytes)
                      if todo else ()):
            part = load_part(work, index, items[index], digests=digests)
            if part is None:
                raise DataError(f"{items[index].key}: worker finished but left no part file")
            parts[index] = part
            join_ready()
            done += 1
            if progress:
                progress(done, len(items))
        if not any(p.records for p in parts.values()):
            raise DataError("no examples were produced")
        manifest = _manifest(name, command, arguments, fingerprint, extra_manifest,
                             [digests[i] for i in range(len(items))])
        for split in sorted(joiners):
            if not any(p.records for p in joiners[split].parts):
                continue
            entry = joiners[split].finish()
            manifest["splits"][split] = entry
            summary.splits[split] = {"examples": entry["examples"], "bytes": entry["bytes"]}
    except BaseException:
        for joiner in joiners.values():
            joiner.discard()
        raise
    write_manifest(out, manifest)
    storage.rmtree(work)
    summary.seconds = time.perf_counter() - t0
    return summary


def _workers_used(jobs: int, backend: str, items: int) -> int:
    """How many workers ``jobs`` gives for ``items`` work items (joblib's count for -1, -2...);
    0 on a Dask cluster."""
    if backend == "dask":
        return 0
    if jobs < 0:
        jobs = max(1, usable_cores() + 1 + jobs)
    return max(1, min(jobs, items))


def _manifest(name: str, command: str, arguments: dict[str, Any], fingerprint: dict[str, Any],
              extra: dict[str, Any] | None, digests: list[str]) -> dict[str, Any]:
    """The manifest of a finished job, without its splits (filled in by the caller)."""
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lpie_version": __version__,
        "name": name,
        "command": command,
        "arguments": arguments,
        # The content of every input file: a source changed in place is noticed on a rerun.
        "job": {**fingerprint, "inputs_hash": CONTENT_HASH,
                "inputs_sha256": combined_digest(digests)},
        "splits": {},
    }
    if extra:
        manifest.update(extra)
    if "value_space" not in manifest:  # what the command implies (prepare sidd/gopro/udc, synth)
        space, _ = manifest_value_space(manifest)
        if space is not None:
            manifest["value_space"] = space
    return manifest


def _digesting(produce: Produce) -> Produce:
    """``produce``, then the digest of the item's inputs (:func:`inputs_digest`, kept per file
    in the process): computed by the producing thread, it is ready when the writing thread,
    done with the item's examples, asks for it (the writer has the more work per item)."""
    def run(item: WorkItem) -> Iterator[Example | Later]:
        yield from produce(item)
        inputs_digest(item)

    return run


def _parallel(produce: Produce, todo: list[tuple[int, WorkItem]], work: str, jobs: int,
              backend: str, scheduler: str | None, shard_bytes: int) -> Iterator[int]:
    """Run ``do_item`` over ``todo`` on ``backend``; yield each item's index once its part
    is stored. In this process (``jobs=1`` or one item), writing overlaps producing, and on a
    local work folder the items go straight into the files that become the shards
    (:mod:`lpie_data.runwriter`)."""
    from lpie_data.backends import run_items

    if backend != "dask" and (jobs == 1 or len(todo) == 1):
        if storage.is_remote(work):
            yield from run_overlapped(_digesting(produce), write_part, todo, work)
            return
        writer = RunWriter(shard_bytes, write_part)
        try:
            yield from run_overlapped(_digesting(produce), writer.write, todo, work)
        except BaseException:
            writer.abandon()
            raise
        writer.close()
        return
    yield from run_items(do_item, produce, todo, work, jobs=jobs, backend=backend,
                         scheduler=scheduler)

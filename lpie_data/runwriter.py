"""Write a ``--jobs 1`` job's items straight into files that become its shards.

A job with process workers writes one part file per work item and joins the parts into shards
(:mod:`lpie_data.joiner`): every byte is written twice. In one process the items come in order,
so the writer can follow the joiner's greedy plan (:func:`lpie_data.shards.plan_split`) itself:
a split's items are appended to one *run* file for as long as the shard they belong to stays
within ``shard_bytes``; the run is then closed, and the joiner hard-links it as that shard
instead of copying it (its sha256 was computed on the way). The bytes are those of the plan.

Each item still gets its own sidecar (``part-NNNNNN.json``, written once its bytes are in the
run file), naming the run file and the item's offset in it, so a killed run resumes from every
finished item: a run that was not closed (no ``.sha256`` file) is joined by copying its items'
byte ranges, as parts are. Items the plan cuts at record boundaries (larger than a shard), items
without examples, and work folders on remote storage (where a file is not readable before it is
closed) get ordinary part files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from lpie_data import storage
from lpie_data.items import WorkItem
from lpie_data.parts import check_dtypes, record_entry, sidecar
from lpie_data.records import Buffer, Example, Later, example_pieces, finished, frame_pieces

#: The ``.sha256`` file of a closed run: ``{"sha256": hex, "bytes": n}``.
RUN_DIGEST_SUFFIX = ".sha256"


def run_digest(path: str) -> str | None:
    """The sha256 of the closed run file ``path`` (None when it was not closed, or its size
    is not the one recorded at closing)."""
    try:
        with storage.open_file(path + RUN_DIGEST_SUFFIX, "rb") as f:
            info = json.loads(f.read())
        if storage.size(path) != info["bytes"]:
            return None
        return str(info["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _Run:
    def __init__(self, path: str) -> None:
        self.path = path
        self.file = storage.open_file(path, "wb")
        self.digest = hashlib.sha256()
        self.bytes = 0


def _update(digest: Any, pieces: list[Buffer]) -> None:
    for piece in pieces:
        digest.update(piece)


class RunWriter:
    """``write(examples, item, index, work) -> index`` for :func:`lpie_data.overlap.run_overlapped`:
    appends each item to its split's run file (see the module); :meth:`close` closes every run
    once the last item is written. ``part_writer`` writes the items that need a part file of
    their own, with the same signature.

    A run's sha256 is computed by a thread of its own while this one writes (hashlib and file
    writes release the GIL): SHA-256 (~1.7 GB/s) costs more CPU than the write itself."""

    def __init__(self, shard_bytes: int,
                 part_writer: Callable[[Iterable[Example | Later], WorkItem, int, str], int]
                 ) -> None:
        self.shard_bytes, self.part_writer = shard_bytes, part_writer
        self.runs: dict[str, _Run] = {}
        self.failed = False  # a write failed: part files from then on
        self.hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpie-hash")
        self.hashing: Future[None] | None = None  # the last item handed to the hasher

    def write(self, examples: Iterable[Example | Later], item: WorkItem, index: int,
              work: str) -> int:
        # The item's size decides its run (its arrays are held anyway).
        items = [finished(ex) for ex in examples]
        framed = [frame_pieces(example_pieces(ex)) for ex in items]
        sizes = [sum(map(len, pieces)) for pieces in framed]
        total = sum(sizes)
        if not items or total > self.shard_bytes:  # skipped / cut by the plan: a part file
            if total > self.shard_bytes:
                self._close(item.split)
            return self.part_writer(iter(items), item, index, work)
        dtypes: tuple[str | None, str | None] = (None, None)
        for ex in items:
            dtypes = check_dtypes(item, dtypes, ex)
        if self.failed:
            return self.part_writer(iter(items), item, index, work)
        run = self.runs.get(item.split)
        if run is not None and run.bytes + total > self.shard_bytes:
            self._close(item.split)
            run = None
        if run is None:
            run = self.runs[item.split] = _Run(self._new_path(work, index))
        offset = run.bytes
        # One item hashed while the next is written, no more: a backlog would hold its images.
        if self.hashing is not None:
            self.hashing.result()
        self.hashing = self.hasher.submit(
            _update, run.digest, [p for f in framed for p in f])
        try:
            for pieces in framed:
                for piece in pieces:
                    run.file.write(piece)
            run.file.flush()  # the sidecar below says these bytes are there
        except OSError:
            # A full disk (or a file size limit): the finished items stay where they are; this
            # one and the rest get part files, and joining names the shard that cannot be
            # written, as with process workers (a rerun resumes from every finished item).
            self._drop(item.split, offset)
            return self.part_writer(iter(items), item, index, work)
        run.bytes += total
        records = [record_entry(ex, size) for ex, size in zip(items, sizes, strict=True)]
        storage.write_atomic(storage.join(work, f"part-{index:06d}.json"), sidecar(
            item, dtypes, records, None, file=storage.basename(run.path), offset=offset))
        return index

    def close(self) -> None:
        """Close every open run, recording its sha256 (the joiner then links it as a shard)."""
        for split in list(self.runs):
            self._close(split)
        self.hasher.shutdown()

    @staticmethod
    def _new_path(work: str, index: int) -> str:
        """A run file name not in use: an earlier run may have left one for an item that is
        now redone (its input changed) while its other items are kept."""
        path, k = storage.join(work, f"run-{index:06d}.rec"), 0
        while storage.exists(path):
            k += 1
            path = storage.join(work, f"run-{index:06d}.{k}.rec")
        return path

    def _drop(self, split: str, size: int) -> None:
        """Stop writing runs: cut the split's open run back to its finished items (``size``
        bytes) and close every run without a digest."""
        run = self.runs.get(split)
        if run is not None:
            try:
                run.file.truncate(size)
            except OSError:
                pass
        self.failed = True
        self.abandon()

    def abandon(self) -> None:
        """The job failed: close the open runs' files without recording a digest (a rerun
        joins their finished items by copying)."""
        for run in self.runs.values():
            try:
                run.file.close()
            except OSError:
                pass
        self.runs.clear()
        self.hasher.shutdown(cancel_futures=True)

    def _close(self, split: str) -> None:
        run = self.runs.pop(split, None)
        if run is None:
            return
        run.file.close()
        if self.hashing is not None:  # one hashing thread, in order: every update is in
            self.hashing.result()
        storage.write_atomic(run.path + RUN_DIGEST_SUFFIX, json.dumps(
            {"sha256": run.digest.hexdigest(), "bytes": run.bytes}).encode())

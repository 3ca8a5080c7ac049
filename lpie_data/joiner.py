"""Join a split's part files into its shards while the job is still running.

:class:`SplitJoiner` takes the split's parts one by one, in item order, as their work items
finish, and writes each shard as soon as its contents are known (the plan of
:func:`lpie_data.shards.plan_split` is greedy, so a shard is fixed once the next part does not
fit in it). Joining thus overlaps the workers' decoding instead of following it, and reads each
part back while it is still in the page cache. The bytes, names and sha256 digests are exactly
those :func:`lpie_data.shards.assemble_split` gives from the finished parts.

Shards are written under temporary names (``.<name>-<split>.tfrecord-NNNNN.tmp``, removed by a
rerun if the process is killed) and get their final names, which hold the shard count, in
:meth:`SplitJoiner.finish`. An error while writing (a full disk) stops the joining but not the
job: every part is still made, and :meth:`finish` raises it, naming the shard, so that a rerun
resumes from all the parts, as when the shards were joined at the end.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable
from typing import Any

from lpie_data import storage
from lpie_data.errors import DataError, LpieError, OutputError
from lpie_data.runwriter import run_digest
from lpie_data.shards import (
    _COPY_CHUNK,
    Part,
    Segments,
    _check_parts,
    _copy,
    _discard,
    _link,
    file_sha256,
    plan_shards,
    plan_split,
    shard_name,
)


class SplitJoiner:
    """The shards of one split of ``out``, written as the split's parts arrive (:meth:`add`,
    in item order); :meth:`finish` names them and returns the split's manifest entry;
    :meth:`discard` removes what was written (the job failed)."""

    def __init__(self, out: str, name: str, split: str, shard_bytes: int) -> None:
        self.out, self.name, self.split, self.shard_bytes = out, name, split, shard_bytes
        self.parts: list[Part] = []
        self.shards: list[dict[str, Any]] = []  # written: tmp, examples, bytes, sha256
        self._open: list[int] = []  # parts of the shard being filled
        self._open_bytes = 0
        self._file: Any = None  # the shard being filled, once it holds two parts
        self._digest: Any = None
        self._buf: memoryview | None = None
        self._error: tuple[int, BaseException] | None = None

    def add(self, part: Part) -> None:
        """The split's next part (a finished work item); writes every shard it completes."""
        self.parts.append(part)
        if self._error is not None:
            return
        try:
            self._add(len(self.parts) - 1)
        except (OSError, LpieError) as e:  # kept for finish(): every part is made first
            self._error = (len(self.shards), e)
            self._close_file()
            self._discard_written()

    def finish(self, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Write the last shard, check the split (duplicate keys, mixed dtypes), give the
        shards their final names; return the manifest entry. Raises DataError / OutputError
        (a shard that could not be written, named), removing the shards written."""
        try:
            if self._error is None:
                self._close()
            _check_parts(self.split, self.parts)
            if not any(p.records for p in self.parts):
                raise DataError(f"split {self.split!r} has no examples")
            if self._error is not None:
                index, e = self._error
                if not isinstance(e, OSError):
                    raise e
                count = len(plan_split([[r.size for r in p.records] for p in self.parts],
                                       self.shard_bytes))
                where = storage.join(self.out, shard_name(self.name, self.split, index, count))
                raise OutputError(f"{where}: cannot write the shard ({e.strerror or e}); free "
                                  "some space and rerun the same command to finish") from None
            count = len(self.shards)
            for index, shard in enumerate(self.shards):
                shard["file"] = shard_name(self.name, self.split, index, count)
                storage.rename(shard.pop("tmp"), storage.join(self.out, shard["file"]))
                if progress:
                    progress(shard["examples"])
        except BaseException:
            self.discard()
            raise
        records = [r for p in self.parts for r in p.records]
        first = next(p for p in self.parts if p.records)
        return {
            "examples": len(records),
            "bytes": sum(s["bytes"] for s in self.shards),
            "input_dtype": first.input_dtype,
            "target_dtype": first.target_dtype,
            "input_range": [min(r.input_range[0] for r in records),
                            max(r.input_range[1] for r in records)],
            "target_range": [min(r.target_range[0] for r in records),
                             max(r.target_range[1] for r in records)],
            "shards": self.shards,
        }

    def discard(self) -> None:
        """Remove the shards written so far (not yet renamed) and the one being filled."""
        self._close_file()
        self._discard_written()

    # The greedy plan of shards.plan_split, one part at a time.

    def _add(self, i: int) -> None:
        sizes = [r.size for r in self.parts[i].records]
        size = sum(sizes)
        if not sizes:
            return
        if size > self.shard_bytes:  # cut at record boundaries into shards of its own
            self._close()
            for a, b in plan_shards(sizes, self.shard_bytes):
                self._write([(i, a, b)])
            return
        if self._open and self._open_bytes + size > self.shard_bytes:
            self._close()
        self._open.append(i)
        self._open_bytes += size
        if self._file is None and not self._one_file(self._open_segments()):
            # No longer one file's bytes from its start (which is hard-linked): copy from here.
            self._file = storage.open_file(self._tmp(len(self.shards)), "wb")
            self._digest = hashlib.sha256()
            for j in self._open[:-1]:
                self._append(j, 0, len(self.parts[j].records))
        if self._file is not None:
            self._append(i, 0, len(sizes))

    def _close(self) -> None:
        """The shard being filled is complete."""
        if self._open and self._file is None:
            self._write(self._open_segments())
        elif self._open:
            self._file.close()
            self._file = None
            self._done(self._open_segments(), self._digest.hexdigest())
        self._open, self._open_bytes, self._digest = [], 0, None

    def _one_file(self, segments: Segments) -> bool:
        """Whether ``segments`` are whole items lying one after the other in one file from its
        first byte (a part file, or a --jobs 1 run file: :mod:`lpie_data.runwriter`)."""
        at, path = 0, self.parts[segments[0][0]].path
        for i, a, b in segments:
            part = self.parts[i]
            if part.path != path or part.offset != at or (a, b) != (0, len(part.records)):
                return False
            at += part.size
        return True

    def _open_segments(self) -> Segments:
        return [(i, 0, len(self.parts[i].records)) for i in self._open]

    def _tmp(self, index: int) -> str:
        return storage.join(self.out, f".{self.name}-{self.split}.tfrecord-{index:05d}.tmp")

    def _done(self, segments: Segments, sha: str) -> None:
        records = [r for i, a, b in segments for r in self.parts[i].records[a:b]]
        self.shards.append({"tmp": self._tmp(len(self.shards)), "examples": len(records),
                            "bytes": sum(r.size for r in records), "sha256": sha})

    def _write(self, segments: Segments) -> None:
        """One shard from ``segments`` at once: a whole part is hard-linked where possible."""
        tmp = self._tmp(len(self.shards))
        part = self.parts[segments[0][0]]
        size = sum(self.parts[i].size for i, _, _ in segments)
        if (self._one_file(segments) and not storage.is_remote(part.path)
                and storage.size(part.path) == size and _link(part.path, tmp)):
            sha = ((part.sha256 if len(segments) == 1 else None) or run_digest(part.path)
                   or file_sha256(tmp))
        else:
            self._file, self._digest = storage.open_file(tmp, "wb"), hashlib.sha256()
            for seg in segments:
                self._append(*seg)
            self._file.close()
            self._file, sha = None, self._digest.hexdigest()
        self._done(segments, sha)

    def _append(self, i: int, a: int, b: int) -> None:
        """Records [a, b) of part ``i`` onto the shard being written, hashed on the way."""
        part = self.parts[i]
        offset = part.offset + sum(r.size for r in part.records[:a])
        n = sum(r.size for r in part.records[a:b])
        if not storage.is_remote(part.path) and n:
            _append_mapped(part.path, offset, n, self._file, self._digest)
            return
        if self._buf is None:  # one reusable buffer: fresh chunks cost page faults too
            self._buf = memoryview(bytearray(_COPY_CHUNK))
        with storage.open_file(part.path, "rb") as src:
            if offset:
                src.seek(offset)
            _copy(src, self._file, n, self._digest, self._buf, part.path)

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except (OSError, LpieError):
                pass
            self._file = None
            _discard(self._tmp(len(self.shards)))

    def _discard_written(self) -> None:
        for shard in self.shards:
            if "tmp" in shard:
                _discard(shard["tmp"])


def _append_mapped(path: str, offset: int, n: int, dst: Any, digest: Any) -> None:
    """Bytes [offset, offset + n) of the local file ``path`` onto ``dst`` and into ``digest``,
    straight from the page cache (a memory map: no copy through a read buffer)."""
    with open(path, "rb") as src:
        if os.fstat(src.fileno()).st_size < offset + n:
            raise DataError(f"{path}: part file shorter than recorded")
        with mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            with memoryview(mapped) as view, view[offset : offset + n] as chunk:
                digest.update(chunk)
                dst.write(chunk)

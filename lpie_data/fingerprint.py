"""A job's fingerprint: its command, arguments, items and the content of every input file.

`item_inputs` finds the files an item reads; their digests are checked cheaply on a rerun (size
and modification time first; see docs/reliability.md), so a job resumes only over the same
inputs and arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from typing import Any

import xxhash

from lpie_data.errors import DataError
from lpie_data.items import WorkItem
from lpie_data.shards import (
    FORMAT,
    FORMAT_VERSION,
)


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


#: How an input file's content is hashed, by the name recorded with the digests. ``xxh3_128``
#: is written now; ``sha256`` is how datasets made before it recorded theirs (still checked).
#: XXH3-128 (the ``xxhash`` library), not a cryptographic hash: the digest detects a changed or
#: different file, not a forged one (rsync uses it for the same job). It runs at ~22 GB/s
#: here, SHA-256 at 1.7 GB/s: every input of every item is hashed once per run.
FILE_HASHES: dict[str, Callable[[], Any]] = {
    "xxh3_128": xxhash.xxh3_128,
    "sha256": hashlib.sha256,
}
CONTENT_HASH = "xxh3_128"


def inputs_digest(item: WorkItem, hash_name: str = CONTENT_HASH) -> str:
    """Digest of the *content* of the item's input files (names, sizes and content hashes),
    ``"<hash_name>:<hex>"`` (a bare hex: ``sha256``, as older datasets recorded it).

    Content, not modification times: a dataset's bytes stay the same whoever copied the sources
    and how. It is computed by the worker that reads the files anyway; a rerun only rehashes
    when a file is newer than the state it is compared with (:func:`newer_inputs`).
    """
    digest = hashlib.sha256()
    for path, size, mtime in item_inputs(item):
        digest.update(f"{path}\t{size}\t{_file_hash(path, size, mtime, hash_name)}\n".encode())
    return digest.hexdigest() if hash_name == "sha256" else f"{hash_name}:{digest.hexdigest()}"


def same_inputs(recorded: str | None, item: WorkItem) -> bool:
    """Whether ``recorded`` (an :func:`inputs_digest`) is that of the item's inputs now, hashed
    the way it was recorded."""
    if not recorded:
        return False
    name = recorded.split(":", 1)[0] if ":" in recorded else "sha256"
    return name in FILE_HASHES and inputs_digest(item, name) == recorded


#: Content hashes of files a worker has already read whole: (path, size, mtime_ns) -> hex
#: (:data:`CONTENT_HASH`), taken by the next :func:`inputs_digest` that needs one.
_READ: dict[tuple[str, int, int], str] = {}


def note_read(path: str, st: os.stat_result, data: Any) -> None:
    """Hash ``data``, the whole content of the file ``path`` as ``st`` (the ``fstat`` of the
    open file it was read from) describes it, so that the item's :func:`inputs_digest` does
    not read the file again. A file changed since has another size or mtime and is hashed anew.
    """
    if len(_READ) >= 4096:  # notes no digest asked for (a failed item): never many
        _READ.clear()
    _READ[(os.fspath(path), st.st_size, st.st_mtime_ns)] = FILE_HASHES[CONTENT_HASH](
        data).hexdigest()


@functools.lru_cache(maxsize=4096)
def _file_hash(path: str, size: int, mtime_ns: int, hash_name: str) -> str:
    """A file's content hash, once per process for each (path, size, mtime): many items can
    share one input (synthesis from a dataset's shards reads one record of a large shard each)."""
    if hash_name == CONTENT_HASH and (seen := _READ.pop((path, size, mtime_ns), None)):
        return seen
    with open(path, "rb") as f:
        return hashlib.file_digest(f, FILE_HASHES[hash_name]).hexdigest()


def newer_inputs(stats: Sequence[tuple[str, int, int]], than_ns: int) -> bool:
    """Whether any input file was modified after (or in the same clock tick as) ``than_ns``,
    a state file's mtime."""
    return any(mtime >= than_ns for _, _, mtime in stats)


def combined_digest(digests: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def job_fingerprint(name: str, command: str, arguments: dict, items: Sequence[WorkItem],
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


def same_job(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same command, arguments and items (the content of the inputs is checked separately: the
    manifest's ``job.inputs_sha256`` covers the content of every input file, hashed with
    ``job.inputs_hash``)."""
    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in ("inputs_sha256", "inputs_hash")}

    return strip(a) == strip(b)

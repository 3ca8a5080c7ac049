"""Byte-sized, deterministic TFRecord shards, the manifest, and verification.

Workers write each work item's records to a *part* file; once every part exists, the parts
are concatenated in item order into shards of about ``shard_bytes`` each, named
``<name>-<split>.tfrecord-00000-of-000NN``, and ``manifest.json`` is written last, atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lpie_data import storage
from lpie_data.errors import DataError
from lpie_data.records import example_to_pair, read_records

FORMAT = "lpie-pairs"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_SHARD_BYTES = 128 * 2**20
_COPY_CHUNK = 8 * 2**20


@dataclass(frozen=True)
class RecordInfo:
    """One record inside a part file: its key, framed byte size and value range."""

    key: str
    size: int
    input_range: tuple[float, float]
    target_range: tuple[float, float]


@dataclass(frozen=True)
class Part:
    """A finished work item: its records, in order, stored in ``path``."""

    path: str
    split: str
    input_dtype: str | None
    target_dtype: str | None
    records: tuple[RecordInfo, ...]


def shard_name(name: str, split: str, index: int, count: int) -> str:
    return f"{name}-{split}.tfrecord-{index:05d}-of-{count:05d}"


def plan_shards(sizes: Sequence[int], shard_bytes: int) -> list[tuple[int, int]]:
    """Split consecutive records into [start, stop) groups of at most ``shard_bytes`` each
    (a single larger record gets a shard of its own)."""
    groups: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, s in enumerate(sizes):
        if i > start and total + s > shard_bytes:
            groups.append((start, i))
            start, total = i, 0
        total += s
    if start < len(sizes):
        groups.append((start, len(sizes)))
    return groups


def _check_parts(split: str, parts: Sequence[Part]) -> None:
    seen: dict[str, str] = {}
    dtypes = set()
    for part in parts:
        for rec in part.records:
            if rec.key in seen:
                raise DataError(
                    f"duplicate example key {rec.key!r} in split {split!r} "
                    f"(from {seen[rec.key]} and {part.path})"
                )
            seen[rec.key] = part.path
        if part.records:
            dtypes.add((part.input_dtype, part.target_dtype))
    if len(dtypes) > 1:
        raise DataError(f"split {split!r} mixes storage dtypes {sorted(dtypes)}")


def assemble_split(
    out: str,
    name: str,
    split: str,
    parts: Sequence[Part],
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Concatenate ``parts`` (in the given order) into shards under ``out``.

    Returns the split's manifest entry. Raises DataError on duplicate keys or mixed dtypes.
    """
    _check_parts(split, parts)
    flat = [(p, r) for p in parts for r in p.records]
    if not flat:
        raise DataError(f"split {split!r} has no examples")
    groups = plan_shards([r.size for _, r in flat], shard_bytes)
    shards = []
    handles: dict[str, Any] = {}
    try:
        for index, (start, stop) in enumerate(groups):
            fname = shard_name(name, split, index, len(groups))
            tmp = storage.join(out, f".{fname}.tmp")
            digest = hashlib.sha256()
            nbytes = 0
            with storage.open_file(tmp, "wb") as dst:
                for part, rec in flat[start:stop]:
                    src = handles.get(part.path)
                    if src is None:
                        for h in handles.values():
                            h.close()
                        handles = {part.path: storage.open_file(part.path, "rb")}
                        src = handles[part.path]
                    remaining = rec.size
                    while remaining:
                        chunk = src.read(min(remaining, _COPY_CHUNK))
                        if not chunk:
                            raise DataError(f"{part.path}: part file shorter than recorded")
                        digest.update(chunk)
                        dst.write(chunk)
                        remaining -= len(chunk)
                    nbytes += rec.size
                    if progress:
                        progress(1)
            storage.rename(tmp, storage.join(out, fname))
            shards.append(
                {"file": fname, "examples": stop - start, "bytes": nbytes,
                 "sha256": digest.hexdigest()}
            )
    finally:
        for h in handles.values():
            h.close()
    records = [r for _, r in flat]
    first = next(p for p in parts if p.records)
    return {
        "examples": len(flat),
        "bytes": sum(s["bytes"] for s in shards),
        "input_dtype": first.input_dtype,
        "target_dtype": first.target_dtype,
        "input_range": [min(r.input_range[0] for r in records),
                        max(r.input_range[1] for r in records)],
        "target_range": [min(r.target_range[0] for r in records),
                         max(r.target_range[1] for r in records)],
        "shards": shards,
    }


def write_manifest(out: str, manifest: dict[str, Any]) -> None:
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    storage.write_atomic(storage.join(out, MANIFEST), data)


def read_manifest(path: str) -> dict[str, Any]:
    """Load ``path/manifest.json``; DataError if missing or not an lpie dataset."""
    mpath = storage.join(str(path), MANIFEST)
    if not storage.exists(mpath):
        raise DataError(f"{path}: not an lpie dataset (no {MANIFEST}; was it finished?)")
    try:
        with storage.open_file(mpath, "rb") as f:
            manifest = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise DataError(f"{mpath}: unreadable manifest ({e})") from None
    if manifest.get("format") != FORMAT:
        raise DataError(f"{mpath}: not an lpie pair-dataset manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise DataError(
            f"{mpath}: format version {manifest['format_version']} is newer than this lpie "
            f"understands ({FORMAT_VERSION}); upgrade lpie"
        )
    return manifest


def split_entry(manifest: dict[str, Any], split: str, path: str) -> dict[str, Any]:
    splits = manifest.get("splits", {})
    if split not in splits:
        valid = ", ".join(sorted(splits)) or "none"
        raise DataError(f"{path}: no split {split!r} (splits: {valid})")
    entry = splits[split]
    if not entry.get("examples"):
        raise DataError(f"{path}: split {split!r} has no examples")
    return entry


def shard_paths(path: str, split: str) -> list[str]:
    """Full paths of a split's shards, in order."""
    entry = split_entry(read_manifest(path), split, path)
    return [storage.join(str(path), s["file"]) for s in entry["shards"]]


def verify(path: str, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Recompute every shard's sha256 and size, parse every record, check counts and shapes.

    Returns {split: examples}. Raises DataError naming the first bad shard and the problem.
    """
    manifest = read_manifest(path)
    result = {}
    for split, entry in sorted(manifest["splits"].items()):
        count = 0
        for shard in entry["shards"]:
            fpath = storage.join(str(path), shard["file"])
            if not storage.exists(fpath):
                raise DataError(f"{fpath}: shard listed in the manifest is missing")
            digest = hashlib.sha256()
            n = 0
            with storage.open_file(fpath, "rb") as f:
                hashing = _HashingReader(f, digest)
                for data in read_records(hashing, fpath):
                    pair = example_to_pair(data)
                    if pair.input.shape != pair.target.shape or pair.input.ndim != 3:
                        raise DataError(f"{fpath}: record {pair.key!r} has bad shapes")
                    n += 1
                    if progress:
                        progress(1)
            if digest.hexdigest() != shard["sha256"] or hashing.count != shard["bytes"]:
                raise DataError(f"{fpath}: sha256 or size does not match the manifest")
            if n != shard["examples"]:
                raise DataError(f"{fpath}: {n} records, manifest says {shard['examples']}")
            count += n
        if count != entry["examples"]:
            raise DataError(f"{path}: split {split!r} has {count} records, manifest says "
                            f"{entry['examples']}")
        result[split] = count
    return result


class _HashingReader:
    """File wrapper that hashes and counts every byte read through it."""

    def __init__(self, f: Any, digest: Any) -> None:
        self.f, self.digest, self.count = f, digest, 0

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        self.digest.update(data)
        self.count += len(data)
        return data

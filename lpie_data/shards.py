"""Byte-sized, deterministic TFRecord shards, the manifest, and verification.

Workers write each work item's records to a *part* file; once every part exists, the parts
become shards of at most about ``shard_bytes`` each, in item order, named
``<name>-<split>.tfrecord-00000-of-000NN``, and ``manifest.json`` is written last, atomically.

Shards are cut at item boundaries where possible (:func:`plan_split`): consecutive whole parts
are packed while they fit, and a part larger than ``shard_bytes`` is cut at record boundaries.
A shard that is exactly one part is made by hard-linking the part file (no copy; its sha256 was
computed by the worker as it wrote); the others are copied and hashed (:mod:`lpie_data.joiner`,
while the job runs).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lpie_data import storage
from lpie_data.errors import DataError, LpieError
from lpie_data.record_reader import example_to_pair, read_records

FORMAT = "lpie-pairs"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_SHARD_BYTES = 128 * 2**20
_COPY_CHUNK = 8 * 2**20
#: Workers hash part files at least this large themselves (see :func:`assemble_split`).
HASH_IN_WORKER_BYTES = 16 * 2**20


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
    sha256: str | None = None  # of the whole part file, when its worker computed it
    offset: int = 0  # where the records start in ``path`` (a run file holds several items)

    @property
    def size(self) -> int:
        return sum(r.size for r in self.records)


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


#: A shard's contents: (part index, first record, end record) ranges, in order.
Segments = list[tuple[int, int, int]]


def plan_split(part_sizes: Sequence[Sequence[int]], shard_bytes: int) -> list[Segments]:
    """Group the records of consecutive parts (``part_sizes[i]``: record sizes of part i) into
    shards: whole parts are packed while the shard stays within ``shard_bytes``; a part larger
    than ``shard_bytes`` is cut at record boundaries (:func:`plan_shards`) into shards of its
    own. Empty parts are skipped. Deterministic: depends on the sizes only."""
    shards: list[Segments] = []
    current: Segments = []
    total = 0
    for i, sizes in enumerate(part_sizes):
        size = sum(sizes)
        if not sizes:
            continue
        if size > shard_bytes:
            if current:
                shards.append(current)
                current, total = [], 0
            shards += [[(i, a, b)] for a, b in plan_shards(sizes, shard_bytes)]
            continue
        if current and total + size > shard_bytes:
            shards.append(current)
            current, total = [], 0
        current.append((i, 0, len(sizes)))
        total += size
    if current:
        shards.append(current)
    return shards


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
    """Turn ``parts`` (in the given order) into the split's shards under ``out``.

    Returns the split's manifest entry. Raises DataError on duplicate keys or mixed dtypes.
    (A job joins its parts while they are being made: :class:`lpie_data.joiner.SplitJoiner`.)
    """
    from lpie_data.joiner import SplitJoiner

    _check_parts(split, parts)
    if not any(p.records for p in parts):
        raise DataError(f"split {split!r} has no examples")
    joiner = SplitJoiner(out, name, split, shard_bytes)
    try:
        for part in parts:
            joiner.add(part)
    except BaseException:
        joiner.discard()
        raise
    return joiner.finish(progress)


def _discard(path: str) -> None:
    """Remove ``path`` if it is there (a temporary file being given up)."""
    try:
        if storage.exists(path):
            storage.remove(path)
    except (OSError, LpieError):
        pass


def file_sha256(path: str) -> str:
    """sha256 (hex) of a whole file."""
    digest = hashlib.sha256()
    buf = memoryview(bytearray(_COPY_CHUNK))
    with storage.open_file(path, "rb") as f:
        _copy(f, None, storage.size(path), digest, buf, path)
    return digest.hexdigest()


def _link(src: str, dst: str) -> bool:
    """Hard-link ``src`` as ``dst`` (same local filesystem); False where that is impossible."""
    if storage.is_remote(src) or storage.is_remote(dst):
        return False
    try:
        if os.path.lexists(dst):
            os.remove(dst)
        os.link(src, dst)
    except OSError:  # no hard links here (some network or FUSE filesystems)
        return False
    return True


def _copy(src: Any, dst: Any, n: int, digest: Any, buf: memoryview, name: str) -> None:
    """Copy ``n`` bytes from ``src`` to ``dst`` through ``buf``, hashing them on the way."""
    readinto = getattr(src, "readinto", None)
    while n:
        if readinto is not None:
            got = readinto(buf[: min(n, len(buf))])
            chunk: Any = buf[:got]
        else:  # remote (tf.io.gfile) files have no readinto
            chunk = src.read(min(n, len(buf)))
            got = len(chunk)
        if not got:
            raise DataError(f"{name}: part file shorter than recorded")
        digest.update(chunk)
        if dst is not None:
            dst.write(chunk)
        n -= got


def write_manifest(out: str, manifest: dict[str, Any]) -> None:
    from lpie_data.tfds_info import write_tfds_info  # TFDS's description too, before the manifest

    write_tfds_info(out, manifest, skip_unsupported=True)
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
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        raise DataError(f"{mpath}: damaged manifest (no 'splits' table)")
    for split, entry in splits.items():
        shards = entry.get("shards") if isinstance(entry, dict) else None
        if not isinstance(shards, list):
            raise DataError(f"{mpath}: damaged manifest (split {split!r} has no shard list)")
        for shard in shards:
            name = shard.get("file") if isinstance(shard, dict) else None
            if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name
                    or "\\" in name or "://" in name):
                raise DataError(f"{mpath}: shard {name!r} of split {split!r} is not a file name "
                                "inside the dataset folder; refusing to read outside it")
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

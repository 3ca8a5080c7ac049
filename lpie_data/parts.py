"""An item's part: its records' file and its sidecar (``part-NNNNNN.json``), in a job's work
folder (``OUT/.lpie-work/``). Process workers write one part file per item
(:func:`write_part`); ``--jobs 1`` appends items to run files (:mod:`lpie_data.runwriter`),
their sidecars naming the run file and offset. Either way :func:`load_part` finds a finished
item again on a rerun, or says it must be redone. Both writers describe an item's records
with :func:`record_entry`, :func:`check_dtypes` and :func:`sidecar`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from lpie_data import storage
from lpie_data.errors import DataError
from lpie_data.fingerprint import CONTENT_HASH, inputs_digest, newer_inputs, same_inputs
from lpie_data.items import Produce, WorkItem
from lpie_data.records import Example, Later, example_pieces, finished, frame_pieces
from lpie_data.shards import HASH_IN_WORKER_BYTES, Part, RecordInfo, file_sha256


def value_range(a: np.ndarray) -> tuple[float, float]:
    """(min, max) of a stored image in [0, 1] units for uint8 / uint16, as is for floats."""
    scale = {"uint8": 255.0, "uint16": 65535.0}.get(a.dtype.name, 1.0)
    return float(a.min()) / scale, float(a.max()) / scale


def record_entry(ex: Example, size: int) -> dict[str, Any]:
    """How an item's sidecar describes one of its records (framed ``size`` bytes)."""
    return {"key": ex.key, "size": size, "input_range": value_range(ex.input),
            "target_range": value_range(ex.target)}


def check_dtypes(item: WorkItem, dtypes: tuple[str | None, str | None], ex: Example
                 ) -> tuple[str, str]:
    """``ex``'s (input, target) storage dtypes; DataError when they differ from ``dtypes``,
    those of the item's examples before it ((None, None) for its first)."""
    this = (ex.input.dtype.name, ex.target.dtype.name)
    if dtypes != (None, None) and this != dtypes:
        raise DataError(f"{item.key}: examples mix storage dtypes {dtypes} and {this}")
    return this


def sidecar(item: WorkItem, dtypes: tuple[str | None, str | None],
            records: list[dict[str, Any]], sha: str | None, **where: Any) -> bytes:
    """An item's sidecar (``part-NNNNNN.json``): its records, dtypes, the sha256 of its own part
    file (None when not computed or in a run file) and its inputs' content digest; ``where``:
    the run file and offset of an item stored in one."""
    return json.dumps({"item": item.key, "split": item.split, "input_dtype": dtypes[0],
                       "target_dtype": dtypes[1], "records": records, "sha256": sha,
                       "inputs": inputs_digest(item), **where}).encode()


def part_path(work: str, index: int) -> str:
    return storage.join(work, f"part-{index:06d}")


def do_item(produce: Produce, item: WorkItem, index: int, work: str) -> int:
    """Worker side: run ``produce`` and write the item's part file + sidecar atomically;
    returns ``index``."""
    return write_part(produce(item), item, index, work)


def write_part(examples: Iterable[Example | Later], item: WorkItem, index: int,
               work: str) -> int:
    """Write ``examples`` (all of ``item``'s) as its part file + sidecar, atomically; returns
    ``index``. A part of ``HASH_IN_WORKER_BYTES`` or more is hashed as it is written."""
    base = part_path(work, index)
    records = []
    dtypes: tuple[str | None, str | None] = (None, None)
    tmp = base + ".rec.tmp"
    remote = storage.is_remote(work)
    digest: Any = None
    total = 0
    with storage.open_file(tmp, "wb") as f:
        for ex in map(finished, examples):
            pieces = frame_pieces(example_pieces(ex))
            for piece in pieces:  # written piece by piece: the images are not copied
                f.write(bytes(piece) if remote and not isinstance(piece, bytes) else piece)
                if digest is not None:
                    digest.update(piece)
            size = sum(map(len, pieces))
            del pieces
            total += size
            if digest is None and total >= HASH_IN_WORKER_BYTES and not remote:
                # A large part likely becomes a shard of its own (hard-linked, not copied):
                # hash it here, in parallel with the other workers. The records so far are
                # read back once (still in the page cache), the rest hashed as written.
                f.flush()
                with open(tmp, "rb") as written:
                    digest = hashlib.file_digest(written, "sha256")
            records.append(record_entry(ex, size))
            dtypes = check_dtypes(item, dtypes, ex)
    if digest is not None:
        sha = digest.hexdigest()
    else:
        sha = file_sha256(tmp) if total >= HASH_IN_WORKER_BYTES else None
    storage.rename(tmp, base + ".rec")
    storage.write_atomic(base + ".json", sidecar(item, dtypes, records, sha))
    return index


def load_part(work: str, index: int, item: WorkItem,
               stats: Sequence[tuple[str, int, int]] | None = None,
               notes: list[str] | None = None, digests: dict[int, str] | None = None
               ) -> Part | None:
    """The finished part of ``item``, or None where it must be (re)done.

    A part is redone when its files are missing, its sidecar is damaged or its record file has
    another size than the sidecar says (with a note in ``notes``), or when ``stats`` (the
    item's input files) shows a file modified after the part was made whose content differs.
    ``digests[index]`` receives the content digest of the part's inputs.
    """
    base = part_path(work, index)
    if not storage.exists(base + ".json"):
        return None
    try:
        with storage.open_file(base + ".json", "rb") as f:
            side = json.loads(f.read())
        recs = tuple(RecordInfo(r["key"], r["size"], tuple(r["input_range"]),
                                tuple(r["target_range"])) for r in side["records"])
        if side["item"] != item.key or side["split"] != item.split:
            return None
        # A --jobs 1 item lives in a run file shared with the items after it (runwriter).
        path = storage.join(work, side["file"]) if "file" in side else base + ".rec"
        offset = int(side.get("offset", 0))
        part = Part(path, item.split, side["input_dtype"], side["target_dtype"], recs,
                    side.get("sha256"), offset)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        if notes is not None:
            notes.append(f"{base}.json: damaged part file ({type(e).__name__}); {item.key} redone")
        return None
    if not storage.exists(path):
        return None
    have, want = storage.size(path), offset + part.size
    # a part file holds exactly its item; a run file at least up to the item's end
    if (have != want) if path == base + ".rec" else (have < want):
        if notes is not None:
            notes.append(f"{path}: {have} bytes, the sidecar {base}.json says "
                         f"{want}; {item.key} redone")
        return None
    if (stats is not None and newer_inputs(stats, storage.mtime_ns(base + ".json"))
            and not same_inputs(side.get("inputs"), item)):
        if notes is not None:
            notes.append(f"{item.key}: its input files changed since the interrupted run; redone")
        return None
    if digests is not None:
        recorded = side.get("inputs", "")  # hashed by an older lpie: the manifest's hash now
        digests[index] = (recorded if recorded.startswith(CONTENT_HASH + ":")
                          else inputs_digest(item))
    return part

"""One pair <-> one ``tf.train.Example`` inside TFRecord framing, without importing TensorFlow.

The Example is encoded here in protobuf wire format directly: the schema is small and fixed,
features are written in sorted key order (so bytes are deterministic by construction) and
workers avoid the seconds-long TensorFlow import. TensorFlow reads these records natively
(``tf.data.TFRecordDataset`` + ``tf.io.parse_single_example``); tests check that.

Features of every record:
    key           bytes    unique example key
    input, target bytes    raw C-order little-endian array H x W x 3 of the dtype below
    input_dtype, target_dtype  bytes  "uint8" | "uint16" | "float16" | "float32"
    height, width int64
    meta          bytes    UTF-8 JSON object
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import numpy as np

from lpie_data.errors import DataError

#: A piece of a serialised record: ``bytes``, or a flat uint8 array (an image, not copied).
Buffer = bytes | np.ndarray

DTYPES = ("uint8", "uint16", "float16", "float32")
SCALES = {"uint8": 1.0 / 255.0, "uint16": 1.0 / 65535.0, "float16": 1.0, "float32": 1.0}


@dataclass(frozen=True)
class Example:
    """A pair to be written: arrays H x W x 3 of dtype uint8, uint16, float16 or float32.

    Integer arrays represent [0, 1] scaled to the full integer range; float arrays are stored as
    they are. ``meta`` must be JSON-serialisable and hold at least ``source`` and ``box``.
    """

    key: str
    input: np.ndarray
    target: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


class Later:
    """An example whose last steps are left to the thread that writes it: ``finish()`` returns
    the :class:`Example`. With ``--jobs 1`` (:mod:`lpie_data.overlap`) the writing thread then
    finishes one example (noise, tone map, encoding) while the producer makes the next."""

    __slots__ = ("finish",)

    def __init__(self, finish: Callable[[], Example]) -> None:
        self.finish = finish


def finished(ex: Example | Later) -> Example:
    """``ex`` itself, or the Example a :class:`Later` stands for (computed now)."""
    return ex.finish() if isinstance(ex, Later) else ex


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(num: int, payload: bytes) -> bytes:
    return _varint((num << 3) | 2) + _varint(len(payload)) + payload


def _wrap(num: int, pieces: list[Buffer]) -> list[Buffer]:
    """A length-delimited field around ``pieces`` without concatenating them: the images
    (megabytes each) are never copied again once they are bytes."""
    return [_varint((num << 3) | 2) + _varint(sum(map(len, pieces))), *pieces]


def _bytes_feature(value: Buffer) -> list[Buffer]:
    return _wrap(1, _wrap(1, [value]))  # Feature.bytes_list{value}


def _int64_feature(value: int) -> list[bytes]:
    packed = _varint(value & 0xFFFFFFFFFFFFFFFF)
    return _wrap(3, [_len_field(1, packed)])  # Feature.int64_list{packed value}


def _check_image(ex: Example, which: str) -> np.ndarray:
    arr = getattr(ex, which)
    if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"example {ex.key!r}: {which} must be an H x W x 3 array")
    if arr.dtype.name not in DTYPES:
        raise DataError(f"example {ex.key!r}: {which} dtype {arr.dtype} is not one of {DTYPES}")
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"):
        arr = arr.astype(arr.dtype.newbyteorder("<"))  # the format is little-endian
    return arr


def image_bytes(arr: np.ndarray) -> bytes:
    """The C-order bytes of ``arr``: one copy (``tobytes``, also from a strided view), or none
    when ``arr`` is exactly a ``bytes`` object seen as an array (``np.frombuffer(b)``)."""
    base = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, bytes) and len(base) == arr.nbytes and arr.flags.c_contiguous:
        return base  # C-contiguous and as long as the buffer: the whole buffer, in order
    return arr.tobytes()


def image_buffer(arr: np.ndarray) -> Buffer:
    """The C-order bytes of ``arr`` without copying where it is C-contiguous: a flat uint8
    view of the array (or the ``bytes`` object under it); a copy (:func:`image_bytes`) of a
    strided view. The caller must not change ``arr`` while the buffer is in use."""
    base = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, bytes) or not arr.flags.c_contiguous:
        return image_bytes(arr)
    return arr.reshape(-1).view(np.uint8)


def example_pieces(ex: Example) -> list[Buffer]:
    """Serialise ``ex`` as a tf.train.Example, as a few pieces whose concatenation is the
    record (deterministic bytes: features in sorted name order, JSON meta with sorted keys).

    The pieces are ``bytes`` or flat uint8 arrays (the images themselves where they are
    C-contiguous, :func:`image_buffer`: not copied); they are written one after the other,
    never joined. ``ex``'s arrays must stay unchanged until the pieces are written.
    """
    inp = _check_image(ex, "input")
    tgt = _check_image(ex, "target")
    if inp.shape != tgt.shape:
        raise DataError(f"example {ex.key!r}: input {inp.shape} and target {tgt.shape} differ")
    h, w, _ = inp.shape
    meta = json.dumps(ex.meta, sort_keys=True, separators=(",", ":")).encode()
    features = {
        "height": _int64_feature(h),
        "input": _bytes_feature(image_buffer(inp)),
        "input_dtype": _bytes_feature(inp.dtype.name.encode()),
        "key": _bytes_feature(ex.key.encode()),
        "meta": _bytes_feature(meta),
        "target": _bytes_feature(image_buffer(tgt)),
        "target_dtype": _bytes_feature(tgt.dtype.name.encode()),
        "width": _int64_feature(w),
    }
    entries: list[Buffer] = []
    for name, feat in sorted(features.items()):
        entries += _wrap(1, [_len_field(1, name.encode()), *_wrap(2, feat)])
    return _merge_small(_wrap(1, entries))


def _merge_small(pieces: list[Buffer], small: int = 1 << 16) -> list[Buffer]:
    """Join runs of small pieces (headers, meta) so a record is a handful of writes."""
    out: list[Buffer] = []
    run: list[Buffer] = []
    for p in pieces:
        if len(p) < small:
            run.append(p)
            continue
        if run:
            out.append(b"".join(run))
            run = []
        out.append(p)
    if run:
        out.append(b"".join(run))
    return out


def encode_example(ex: Example) -> bytes:
    """Serialise ``ex`` as a tf.train.Example (deterministic bytes)."""
    return b"".join(example_pieces(ex))


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    return _mask(google_crc32c.value(data))


def frame_pieces(pieces: list[Buffer]) -> list[Buffer]:
    """TFRecord framing around a record given as pieces (see :func:`example_pieces`):
    length, masked CRC32C of the length, the data, masked CRC32C of the data. (google_crc32c
    reads ``bytes`` and numpy arrays, not memoryviews.)"""
    length = struct.pack("<Q", sum(map(len, pieces)))
    crc = 0
    for p in pieces:
        crc = google_crc32c.extend(crc, p)
    return [length + struct.pack("<I", _masked_crc(length)), *pieces,
            struct.pack("<I", _mask(crc))]


def frame_record(data: bytes) -> bytes:
    """TFRecord framing of one serialised record (bytes)."""
    return b"".join(frame_pieces([data]))

"""Reading what :mod:`lpie_data.records` writes: TFRecord framing (both CRCs checked), the
tf.train.Example wire format, and a record's ``meta`` alone; without importing TensorFlow."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from lpie_data.errors import DataError
from lpie_data.records import DTYPES, SCALES, _masked_crc


@dataclass(frozen=True)
class Pair:
    """A pair as read back: float32 H x W x 3 arrays (integer data scaled to [0, 1])."""

    key: str
    input: np.ndarray
    target: np.ndarray
    meta: dict[str, Any]


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        num, wire = tag >> 3, tag & 7
        if wire == 2:
            n, pos = _read_varint(buf, pos)
            yield num, wire, buf[pos : pos + n]
            pos += n
        elif wire == 0:
            v, pos = _read_varint(buf, pos)
            yield num, wire, v
        else:
            raise ValueError(f"unsupported wire type {wire}")


def decode_example(data: bytes) -> dict[str, Any]:
    """Parse a record written by :func:`encode_example` into {feature: bytes | int}."""
    out: dict[str, Any] = {}
    buf = memoryview(data)
    for num, _, features in _fields(buf):
        if num != 1:
            continue
        for _, _, entry in _fields(features):
            name, feat = None, None
            for n, _, v in _fields(entry):
                if n == 1:
                    name = bytes(v).decode()
                elif n == 2:
                    feat = v
            if name is None or feat is None:
                continue
            for kind, _, lst in _fields(feat):
                values = [v for _, _, v in _fields(lst)]
                if kind == 1:
                    out[name] = bytes(values[0]) if values else b""
                elif kind == 3:
                    packed = values[0] if values else 0
                    if isinstance(packed, memoryview):
                        packed, _ = _read_varint(packed, 0)
                    out[name] = packed
    return out


def example_to_pair(data: bytes) -> Pair:
    """Decode a serialised record into a :class:`Pair` of float32 arrays."""
    f = decode_example(data)
    try:
        h, w = int(f["height"]), int(f["width"])
        arrays = []
        for which in ("input", "target"):
            dtype = f[f"{which}_dtype"].decode()
            if dtype not in DTYPES:
                raise ValueError(f"unknown dtype {dtype!r}")
            arr = np.frombuffer(f[which], dtype=dtype).reshape(h, w, 3)
            arrays.append(arr.astype(np.float32) * np.float32(SCALES[dtype]))
        return Pair(f["key"].decode(), arrays[0], arrays[1], json.loads(f["meta"]))
    except (KeyError, ValueError) as e:
        raise DataError(f"malformed record: {e}") from None


def read_records(f: IO[bytes], name: str = "<stream>") -> Iterator[bytes]:
    """Yield record payloads from a TFRecord stream, checking both CRCs; errors name ``name``."""
    index = 0
    while True:
        header = f.read(12)
        if not header:
            return
        if len(header) < 12:
            raise DataError(f"{name}: truncated record header at record {index}")
        length_bytes, crc = header[:8], struct.unpack("<I", header[8:])[0]
        if _masked_crc(length_bytes) != crc:
            raise DataError(f"{name}: corrupt length at record {index}")
        (length,) = struct.unpack("<Q", length_bytes)
        data = f.read(length)
        footer = f.read(4)
        if len(data) < length or len(footer) < 4:
            raise DataError(f"{name}: truncated record {index}")
        if _masked_crc(data) != struct.unpack("<I", footer)[0]:
            raise DataError(f"{name}: data checksum mismatch at record {index}")
        yield data
        index += 1


def record_offsets(f: IO[bytes], name: str = "<stream>") -> list[tuple[int, int]]:
    """(offset, framed length) of every record of a seekable TFRecord stream, reading only
    the 12-byte headers (lengths are not CRC-checked here; :func:`read_records` checks)."""
    out: list[tuple[int, int]] = []
    offset = 0
    while True:
        header = f.read(12)
        if not header:
            return out
        if len(header) < 12:
            raise DataError(f"{name}: truncated record header at record {len(out)}")
        (length,) = struct.unpack("<Q", header[:8])
        out.append((offset, 12 + length + 4))
        offset += 12 + length + 4
        f.seek(offset)


def _read_varint_at(f: IO[bytes], name: str) -> int:
    result = shift = 0
    while True:
        b = f.read(1)
        if not b:
            raise DataError(f"{name}: truncated record")
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7


def record_meta(f: IO[bytes], offset: int, name: str = "<stream>") -> dict[str, Any]:
    """The ``meta`` JSON of the framed record at ``offset`` of a seekable TFRecord stream,
    reading only the protobuf headers and the meta itself (the images are skipped, and the
    CRCs are not checked here: :func:`read_records` checks them)."""
    where = f"{name} (record at byte {offset})"
    f.seek(offset)
    header = f.read(12)
    if len(header) < 12:
        raise DataError(f"{where}: truncated record header")
    f.seek(offset + 12)
    if _read_varint_at(f, where) != 0x0A:  # Example.features
        raise DataError(f"{where}: not a tf.train.Example")
    end = _read_varint_at(f, where) + f.tell()
    while f.tell() < end:
        _read_varint_at(f, where)  # Features.feature map entry tag
        size = _read_varint_at(f, where)
        start = f.tell()
        if _read_varint_at(f, where) == 0x0A:  # the entry's key comes first: read only it
            feature = f.read(_read_varint_at(f, where))
            if feature != b"meta":
                f.seek(start + size)
                continue
        f.seek(start)
        entry = f.read(size)
        for num, _, value in _fields(memoryview(entry)):
            if num == 1 and bytes(value) != b"meta":
                break
            if num == 2:
                for kind, _, lst in _fields(value):
                    if kind == 1:
                        values = [bytes(v) for _, _, v in _fields(lst)]
                        try:
                            return json.loads(values[0]) if values else {}
                        except ValueError as e:
                            raise DataError(f"{where}: unreadable meta ({e})") from None
    raise DataError(f"{where}: record has no meta")

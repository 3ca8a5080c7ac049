"""PNG files: the header (`png_header`), the fast reader of 8-bit RGB dataset frames
(`read_png8_rgb`: exactly as stored, EXIF ignored) and the checks every image reader shares
(regular file, size limit `MAX_PIXELS`, corrupt data). Photos of every format are read by
`lpie_data.images.read_image`."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from lpie_data.cores import usable_cores
from lpie_data.errors import DataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


#: Largest image (height x width) any reader decodes: 2^28 pixels (e.g. 16384 x 16384), over
#: 1.5 GB as 16-bit RGB. Larger headers are refused before decoding.
MAX_PIXELS = 1 << 28


# PNG colour types: 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA.
PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


# (colour type, bit depth) that libspng decodes (to G8, RGB8, RGBA8): the fastest decoder here.
_SPNG_FORMATS = {(0, 8), (2, 8), (6, 8), (3, 1), (3, 2), (3, 4), (3, 8), (0, 1), (0, 2),
                 (0, 4)}


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    color_type: int

    @property
    def channels(self) -> int:
        return PNG_CHANNELS.get(self.color_type, 0)


def png_header_from(head: bytes, path: str | Path) -> PngHeader:
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DataError(f"{path}: not a PNG file (bad signature or header)")
    width, height, depth, ctype = struct.unpack(">IIBB", head[16:26])
    return PngHeader(width, height, depth, ctype)


def png_header(path: str | Path) -> PngHeader:
    """Read the IHDR chunk (first 33 bytes) of a PNG; DataError if it is not a PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    return png_header_from(head, path)


def color_type_name(color_type: int) -> str:
    """'grey', 'RGB', 'palette', 'grey+alpha', 'RGBA' for a PNG colour type."""
    return {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}.get(
        color_type, f"colour type {color_type}"
    )


def check_regular(path: Path) -> None:
    if not path.is_file():  # also refuses FIFOs and devices, which would block or never end
        what = "not a regular file" if path.exists() else "no such file"
        raise DataError(f"{path}: {what}")


def read_bytes(path: Path) -> bytes:
    check_regular(path)
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None


def check_size(path: Path, height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise DataError(f"{path}: header gives an empty image ({width} x {height})")
    if height * width > MAX_PIXELS:
        raise DataError(f"{path}: header claims {width} x {height} pixels, more than the "
                        f"{MAX_PIXELS:,} lpie reads (damaged file or decompression bomb)")


def corrupt(path: Path, e: Exception) -> DataError:
    return DataError(f"{path}: corrupt or truncated image ({e})")


def decode_png(path: Path, data: bytes, hdr: PngHeader) -> np.ndarray:
    """Decode PNG bytes whose header was checked; a file cut anywhere before its final IEND
    chunk is refused (a decoder may otherwise return the complete pixels silently)."""
    import imagecodecs

    check_size(path, hdr.height, hdr.width)
    end = data.rfind(b"IEND", -4096)  # data after the IEND chunk is tolerated
    if data[end - 4 : end + 8] != PNG_IEND:
        raise DataError(f"{path}: corrupt or truncated image (no IEND chunk at the end)")
    try:
        if (hdr.color_type, hdr.bit_depth) in _SPNG_FORMATS:
            return imagecodecs.spng_decode(data)
        return imagecodecs.png_decode(data)
    except Exception as e:  # imagecodecs raises SpngError / PngError / RuntimeError
        raise corrupt(path, e) from None


def _require_png8_rgb(hdr: PngHeader, path: str | Path) -> PngHeader:
    if hdr.bit_depth != 8 or hdr.color_type != 2:
        raise DataError(
            f"{path}: expected an 8-bit RGB PNG, found {hdr.bit_depth}-bit "
            f"{color_type_name(hdr.color_type)}"
        )
    return hdr


def png8_rgb_header(path: str | Path) -> PngHeader:
    """The header of an 8-bit RGB PNG (what SIDD and GoPro ship), read without decoding;
    DataError naming the file and what it holds instead."""
    return _require_png8_rgb(png_header(path), path)


def read_png8_rgb(path: str | Path) -> np.ndarray:
    """Decode an 8-bit RGB PNG exactly as stored: uint8 H x W x 3 (no orientation, no colour
    conversion). Anything else -> DataError naming the file."""
    path = Path(path)
    data = read_bytes(path)
    hdr = _require_png8_rgb(png_header_from(data[:33], path), path)
    arr = decode_png(path, data, hdr)
    if arr.shape != (hdr.height, hdr.width, 3):
        raise DataError(f"{path}: decoded shape {arr.shape} does not match its header")
    return arr


def decode_threads() -> int:
    """Threads one worker may use: joblib tells its process workers their share of the cores
    in ``OMP_NUM_THREADS`` (cores // jobs); elsewhere (``--jobs 1``) every core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return usable_cores()


_HELPER: list[ThreadPoolExecutor] = []  # see `both`
T = TypeVar("T")


R = TypeVar("R")


def both(fn: Callable[[T], R], first: T, second: T) -> tuple[R, R]:
    """``(fn(first), fn(second))``, the second computed by a helper thread at the same time
    when the worker has more than one core (:func:`decode_threads`; the decoders, file reads
    and numpy's array loops release the GIL), so ``--jobs 1`` uses both cores of a 2-core
    machine as synth's FFT does. The same results either way; the first call's error wins."""
    if decode_threads() < 2:
        return fn(first), fn(second)
    if not _HELPER:  # one per process, made on first use (never inherited by a fork)
        _HELPER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpie-pair"))
    later = _HELPER[0].submit(fn, second)
    try:
        a = fn(first)
    except BaseException:
        wait([later])  # the helper is idle again before the error propagates
        raise
    return a, later.result()


def read_png8_rgb_pair(first: str | Path, second: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_png8_rgb` of the two frames of a dataset pair, decoded at the same time
    where the worker may use two cores (:func:`both`)."""
    return both(read_png8_rgb, first, second)

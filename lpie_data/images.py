"""Image I/O: one reader for every format lpie reads (8/16-bit PNG, JPEG, TIFF), one PNG writer.

Pixels are decoded by imagecodecs (libspng for the PNGs it covers - 8-bit grey, RGB, RGBA and
palette - libpng for the rest, libjpeg-turbo, and tifffile over imagecodecs for TIFF). No
TensorFlow and no Pillow are imported for reading: Pillow silently truncates 16-bit RGB PNGs to
8 bits, and TensorFlow costs seconds to import in every worker.

Two readers with two purposes:

- :func:`read_png8_rgb` reads a dataset frame (SIDD, GoPro) exactly as stored: an 8-bit RGB
  PNG, nothing converted, EXIF orientation ignored (pairs are matched pixel for pixel).
- :func:`read_image` reads a *photo* (``enhance``, ``synth`` sources) as a person sees it:
  every colour mode becomes RGB (grey replicated, alpha dropped, palette expanded, CMYK and YCCK
  JPEG/TIFF converted), and the EXIF orientation is applied (``orient=False`` keeps the
  stored orientation).

Every failure is a :class:`~lpie_data.errors.DataError` whose message starts with the file:
unreadable, truncated or corrupt files, unsupported modes, and headers that claim more than
:data:`MAX_PIXELS` pixels (a "decompression bomb": refused before any memory is allocated).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lpie_data.errors import DataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: Largest image (height x width) any reader decodes: 2^28 pixels (e.g. 16384 x 16384), over
#: 1.5 GB as 16-bit RGB. Larger headers are refused before decoding.
MAX_PIXELS = 1 << 28
# PNG colour types: 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
# (colour type, bit depth) that libspng decodes (to G8, RGB8, RGBA8): the fastest decoder here.
_SPNG_FORMATS = {(0, 8), (2, 8), (6, 8), (3, 1), (3, 2), (3, 4), (3, 8), (0, 1), (0, 2),
                 (0, 4)}
EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    color_type: int

    @property
    def channels(self) -> int:
        return _PNG_CHANNELS.get(self.color_type, 0)


def _png_header_from(head: bytes, path: str | Path) -> PngHeader:
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
    return _png_header_from(head, path)


def color_type_name(color_type: int) -> str:
    """'grey', 'RGB', 'palette', 'grey+alpha', 'RGBA' for a PNG colour type."""
    return {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}.get(
        color_type, f"colour type {color_type}"
    )


def _check_regular(path: Path) -> None:
    if not path.is_file():  # also refuses FIFOs and devices, which would block or never end
        what = "not a regular file" if path.exists() else "no such file"
        raise DataError(f"{path}: {what}")


def _read_bytes(path: Path) -> bytes:
    _check_regular(path)
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None


def _check_size(path: Path, height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise DataError(f"{path}: header gives an empty image ({width} x {height})")
    if height * width > MAX_PIXELS:
        raise DataError(f"{path}: header claims {width} x {height} pixels, more than the "
                        f"{MAX_PIXELS:,} lpie reads (damaged file or decompression bomb)")


def _corrupt(path: Path, e: Exception) -> DataError:
    return DataError(f"{path}: corrupt or truncated image ({e})")


def _decode_png(path: Path, data: bytes, hdr: PngHeader) -> np.ndarray:
    """Decode PNG bytes whose header was checked; a file cut anywhere before its final IEND
    chunk is refused (a decoder may otherwise return the complete pixels silently)."""
    import imagecodecs

    _check_size(path, hdr.height, hdr.width)
    end = data.rfind(b"IEND", -4096)  # data after the IEND chunk is tolerated
    if data[end - 4 : end + 8] != PNG_IEND:
        raise DataError(f"{path}: corrupt or truncated image (no IEND chunk at the end)")
    try:
        if (hdr.color_type, hdr.bit_depth) in _SPNG_FORMATS:
            return imagecodecs.spng_decode(data)
        return imagecodecs.png_decode(data)
    except Exception as e:  # imagecodecs raises SpngError / PngError / RuntimeError
        raise _corrupt(path, e) from None


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
    data = _read_bytes(path)
    hdr = _require_png8_rgb(_png_header_from(data[:33], path), path)
    arr = _decode_png(path, data, hdr)
    if arr.shape != (hdr.height, hdr.width, 3):
        raise DataError(f"{path}: decoded shape {arr.shape} does not match its header")
    return arr


def decode_threads() -> int:
    """Threads one worker may use: joblib tells its process workers their share of the cores
    in ``OMP_NUM_THREADS`` (cores // jobs); elsewhere (``--jobs 1``) every core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


_HELPER: list[ThreadPoolExecutor] = []

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


# --------------------------------------------------------------------------- photo metadata


def _orientation_entry(tiff: bytes) -> tuple[str, int] | None:
    """(byte order, offset of the value) of the Orientation tag in an EXIF/TIFF block's IFD0."""
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
        for i in range(count):
            at = ifd + 2 + 12 * i
            tag, kind = struct.unpack(order + "HH", tiff[at : at + 4])
            if tag == EXIF_ORIENTATION_TAG and kind == 3:  # SHORT
                return order, at + 8
    except (KeyError, struct.error):
        pass
    return None


def _exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (1-8) of an EXIF/TIFF block; 1 when absent or unreadable."""
    entry = _orientation_entry(tiff)
    if entry is None:
        return 1
    try:
        value = struct.unpack(entry[0] + "H", tiff[entry[1] : entry[1] + 2])[0]
    except struct.error:
        return 1
    return value if 1 <= value <= 8 else 1


def upright_exif(exif: bytes) -> bytes:
    """An EXIF block (``b"Exif\\0\\0"`` + TIFF data, as JPEG APP1 and Pillow hold it) with its
    Orientation set to 1, all else byte for byte: for a photo whose pixels :func:`read_image`
    already turned upright, so viewers do not turn it again."""
    head = 6 if exif[:6] == b"Exif\x00\x00" else 0
    entry = _orientation_entry(exif[head:])
    if entry is None:
        return exif
    at = head + entry[1]
    return exif[:at] + struct.pack(entry[0] + "H", 1) + exif[at + 2 :]


@dataclass(frozen=True)
class _JpegInfo:
    height: int
    width: int
    components: int
    precision: int
    adobe_transform: int | None  # APP14 "Adobe" marker: CMYK/YCCK samples are stored inverted
    orientation: int


def _jpeg_info(path: Path, data: bytes) -> _JpegInfo:
    """Walk the JPEG markers up to the frame header (SOFn): size, components, Adobe, EXIF."""
    if data[:2] != b"\xff\xd8":
        raise DataError(f"{path}: not a JPEG file (bad signature)")
    pos, adobe, orientation = 2, None, 1
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise DataError(f"{path}: corrupt or truncated image (bad JPEG marker)")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        body = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and body[:6] == b"Exif\x00\x00":
            orientation = _exif_orientation(body[6:])
        elif marker == 0xEE and body[:5] == b"Adobe" and len(body) >= 12:
            adobe = body[11]
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if len(body) < 6:
                break
            precision, height, width, comps = struct.unpack(">BHHB", body[:6])
            return _JpegInfo(height, width, comps, precision, adobe, orientation)
        pos += 2 + length
    raise DataError(f"{path}: corrupt or truncated image (no JPEG frame header)")


def _png_orientation(data: bytes) -> int:
    """EXIF orientation from a PNG's eXIf chunk (before the image data), 1 when absent."""
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"eXIf":
            return _exif_orientation(data[pos + 8 : pos + 8 + length])
        if kind in (b"IDAT", b"IEND"):
            return 1
        pos += 12 + length
    return 1


# --------------------------------------------------------------------------- colour modes


def cmyk_to_rgb(cmyk: np.ndarray, inverted: bool) -> np.ndarray:
    """Naive CMYK -> RGB (no ICC profile): ``R = (1 - C)(1 - K)`` etc., uint8 (H, W, 3).

    ``inverted``: the samples store ``1 - ink`` (the Adobe convention of CMYK/YCCK JPEGs).
    """
    white = cmyk.astype(np.uint16)
    if not inverted:
        np.subtract(255, white, out=white)
    rgb = white[..., :3] * white[..., 3:4]
    rgb += 127  # rounded division by 255
    rgb //= 255
    return rgb.astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def _to_rgb(path: Path, arr: np.ndarray, mode: str) -> np.ndarray:
    """H x W x 3 from a decoded array of colour ``mode`` (grey, grey+alpha, RGB, RGBA)."""
    if mode in ("grey", "grey+alpha"):
        return _grey_to_rgb(arr if arr.ndim == 2 else arr[..., 0])
    if mode == "RGBA":
        return np.ascontiguousarray(arr[..., :3])
    if mode == "RGB":
        return arr
    raise DataError(f"{path}: unsupported colour mode {mode}")


def _read_png(path: Path, data: bytes) -> tuple[np.ndarray, int]:
    hdr = _png_header_from(data[:33], path)
    if hdr.color_type not in _PNG_CHANNELS:
        raise DataError(f"{path}: unsupported PNG colour type {hdr.color_type}")
    arr = _decode_png(path, data, hdr)
    mode = {0: "grey", 2: "RGB", 3: "RGB", 4: "grey+alpha", 6: "RGBA"}[hdr.color_type]
    if hdr.color_type == 3 and arr.ndim == 3 and arr.shape[2] == 4:
        mode = "RGBA"  # a palette with transparency decodes to RGBA
    return _to_rgb(path, arr, mode), _png_orientation(data)


def _read_jpeg(path: Path, data: bytes) -> tuple[np.ndarray, int]:
    import imagecodecs

    info = _jpeg_info(path, data)
    _check_size(path, info.height, info.width)
    if info.precision != 8:
        raise DataError(f"{path}: {info.precision}-bit JPEG is not supported (8-bit only)")
    if info.components not in (1, 3, 4):
        raise DataError(f"{path}: JPEG with {info.components} colour components is not "
                        "supported (grey, RGB/YCbCr, CMYK and YCCK are)")
    # libjpeg-turbo fills a cut file with grey and only warns: the end-of-image marker must
    # follow the last scan (0xFFD9 / 0xFFDA cannot occur inside entropy-coded data).
    if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        raise DataError(f"{path}: corrupt or truncated image (JPEG ends before its "
                        "end-of-image marker)")
    try:
        # CMYK and YCCK both decode to the stored CMYK samples.
        arr = imagecodecs.jpeg8_decode(data)
    except Exception as e:  # Jpeg8Error and others
        raise _corrupt(path, e) from None
    if info.components == 4:
        return cmyk_to_rgb(arr, inverted=info.adobe_transform is not None), info.orientation
    return _to_rgb(path, arr, "grey" if info.components == 1 else "RGB"), info.orientation


def _read_tiff(path: Path) -> tuple[np.ndarray, int]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            shape = page.shaped  # (separate samples, depth, height, width, contig samples)
            _check_size(path, shape[2], shape[3])
            photometric = int(page.photometric)
            orientation = int(page.tags.valueof(274, 1) or 1)
            arr = page.asarray()
            colormap = page.colormap
            extrasamples = len(page.extrasamples)
            planar = int(page.planarconfig) == 2
            inkset = int(page.tags.valueof(332, 1) or 1)
    except DataError:
        raise
    except Exception as e:  # tifffile raises many types for bad files
        raise DataError(f"{path}: unreadable TIFF ({e})") from None
    if arr.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{path}: unsupported sample type {arr.dtype} (8 or 16 bits expected)")
    if planar and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim not in (2, 3):
        raise DataError(f"{path}: unexpected TIFF shape {arr.shape}")
    if photometric in (0, 1):  # MINISWHITE, MINISBLACK
        grey = arr if arr.ndim == 2 else arr[..., 0]
        if photometric == 0:
            grey = np.iinfo(grey.dtype).max - grey
        return _grey_to_rgb(grey), orientation
    if photometric == 2 and arr.ndim == 3 and arr.shape[2] >= 3:  # RGB (+ extra samples)
        return np.ascontiguousarray(arr[..., :3]), orientation
    if photometric == 3 and colormap is not None and arr.ndim == 2:  # palette
        rgb = np.ascontiguousarray(colormap.T[arr])
        return rgb.astype(np.uint16, copy=False), orientation
    if (photometric == 5 and inkset == 1 and arr.ndim == 3 and arr.shape[2] - extrasamples == 4
            and arr.dtype == np.uint8):  # SEPARATED: CMYK ink values
        return cmyk_to_rgb(arr[..., :4], inverted=False), orientation
    names = {0: "min-is-white", 1: "grey", 2: "RGB", 3: "palette", 4: "mask", 5: "CMYK/separated",
             6: "YCbCr", 8: "CIELab"}
    raise DataError(f"{path}: unsupported TIFF colour mode "
                    f"{names.get(photometric, f'photometric {photometric}')} with shape "
                    f"{arr.shape} {arr.dtype}")


def check_photo_header(path: str | Path) -> tuple[int, int]:
    """(height, width) from a photo's header, without decoding its pixels; DataError naming
    the file when it is missing, not an image of a known type, or larger than MAX_PIXELS."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PHOTO_SUFFIXES:
        raise DataError(f"{path}: unsupported image type (use PNG, JPEG or TIFF)")
    _check_regular(path)
    if suffix in (".tif", ".tiff"):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                shape = tif.pages.first.shaped
        except Exception as e:  # tifffile raises many types for bad files
            raise DataError(f"{path}: unreadable TIFF ({e})") from None
        height, width = shape[2], shape[3]
    else:
        try:
            with open(path, "rb") as f:
                head = f.read(1 << 18)  # EXIF and ICC segments may precede a JPEG's frame header
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror})") from None
        if suffix == ".png":
            hdr = _png_header_from(head[:33], path)
            height, width = hdr.height, hdr.width
        else:
            try:
                info = _jpeg_info(path, head)
            except DataError:
                if len(head) < 1 << 18:
                    raise
                info = _jpeg_info(path, _read_bytes(path))  # a frame header beyond 256 KiB
            height, width = info.height, info.width
    _check_size(path, height, width)
    return height, width


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` (H, W, C) turned upright for an EXIF orientation 1-8 (as viewers show it)."""
    ops: dict[int, Any] = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: a.transpose(1, 0, 2)[::-1],
    }
    if orientation == 1:
        return image
    return np.ascontiguousarray(ops.get(orientation, ops[1])(image))


def read_image(path: str | Path, *, orient: bool = True) -> np.ndarray:
    """Read a photo as a person sees it: H x W x 3, uint8 or uint16 (its native bit depth).

    PNG (1-16 bit; grey, grey + alpha, RGB, RGBA, palette), JPEG (8-bit grey, RGB, CMYK, YCCK)
    and TIFF (8/16-bit grey, RGB, palette, CMYK) are accepted. Grey is replicated into three
    channels, alpha is dropped (the colour as stored, not composited), palettes are expanded,
    CMYK / YCCK are converted with the naive formula (:func:`cmyk_to_rgb`; no ICC profile).
    ``orient``: apply the EXIF orientation tag (JPEG APP1, PNG eXIf, TIFF Orientation).
    Unreadable, truncated, oversized (:data:`MAX_PIXELS`) or unsupported files raise DataError
    naming the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PHOTO_SUFFIXES:
        raise DataError(f"{path}: unsupported image type (use PNG, JPEG or TIFF)")
    if suffix in (".tif", ".tiff"):
        _check_regular(path)
        arr, orientation = _read_tiff(path)
    else:
        data = _read_bytes(path)
        if suffix == ".png":
            arr, orientation = _read_png(path, data)
        else:
            arr, orientation = _read_jpeg(path, data)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"{path}: unexpected image shape {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{path}: unsupported sample type {arr.dtype} (8 or 16 bits expected)")
    return apply_orientation(arr, orientation) if orient else arr


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write uint8 or uint16 H x W x 3 (or H x W) as PNG of the same bit depth."""
    import imagecodecs

    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png needs uint8 or uint16, got {image.dtype}")
    Path(path).write_bytes(imagecodecs.png_encode(np.ascontiguousarray(image)))


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in [0, 1]; floats pass through as float32."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255)
    if image.dtype == np.uint16:
        return image.astype(np.float32) / np.float32(65535)
    return image.astype(np.float32, copy=False)


def from_float(image: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """float in [0, 1] -> uint8/uint16 with rounding and clipping."""
    top = np.iinfo(dtype).max
    return np.clip(np.rint(image * top), 0, top).astype(dtype)

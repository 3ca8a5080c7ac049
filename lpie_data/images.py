"""Image I/O (8/16-bit PNG, JPEG, TIFF) and the sRGB transfer curve.

imageio's default PNG plugin (Pillow) silently reads a 16-bit RGB PNG as 8-bit, so the PNG
header's bit depth is read first and 16-bit RGB goes through TensorFlow's exact decoder.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpie_data.errors import DataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# PNG colour types: 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    color_type: int

    @property
    def channels(self) -> int:
        return _PNG_CHANNELS.get(self.color_type, 0)


def png_header(path: str | Path) -> PngHeader:
    """Read the IHDR chunk (first 33 bytes) of a PNG; DataError if it is not a PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DataError(f"{path}: not a PNG file (bad signature or header)")
    width, height, depth, ctype = struct.unpack(">IIBB", head[16:26])
    return PngHeader(width, height, depth, ctype)


def _decode_png16(path: Path) -> np.ndarray:
    import tensorflow as tf

    data = path.read_bytes()
    try:
        return tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
    except tf.errors.InvalidArgumentError as e:
        raise DataError(f"{path}: corrupt PNG ({e.message})") from None


def png8_rgb_header(path: str | Path) -> PngHeader:
    """The header of an 8-bit RGB PNG (what SIDD and GoPro ship); DataError naming the file
    and what it holds instead."""
    hdr = png_header(path)
    if hdr.bit_depth != 8 or hdr.color_type != 2:
        raise DataError(
            f"{path}: expected an 8-bit RGB PNG, found {hdr.bit_depth}-bit "
            f"{color_type_name(hdr.color_type)}"
        )
    return hdr


def read_png8_rgb(path: str | Path) -> np.ndarray:
    """Decode an 8-bit RGB PNG: uint8 H x W x 3. Anything else -> DataError naming the file."""
    hdr = png8_rgb_header(path)
    arr = _decode_pillow(Path(path))
    if arr.shape != (hdr.height, hdr.width, 3):
        raise DataError(f"{path}: decoded shape {arr.shape} does not match its header")
    return arr


def color_type_name(color_type: int) -> str:
    """'grey', 'RGB', 'palette', 'grey+alpha', 'RGBA' for a PNG colour type."""
    return {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}.get(
        color_type, f"colour type {color_type}"
    )


def _decode_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: corrupt or truncated image ({e})") from None


def read_image(path: str | Path) -> np.ndarray:
    """Read a photo as H x W x 3, uint8 or uint16 (its native bit depth).

    PNG (8/16-bit, RGB, RGBA, palette), JPEG and TIFF (8/16-bit) are accepted; alpha is
    dropped. Grey images and unreadable files raise DataError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".png":
        hdr = png_header(path)
        if hdr.bit_depth == 16:
            arr = _decode_png16(path)
        else:
            arr = _decode_pillow(path)
            if hdr.color_type == 3:
                from PIL import Image

                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGB"))
    elif suffix in (".tif", ".tiff"):
        import tifffile

        try:
            arr = tifffile.imread(path)
        except Exception as e:  # tifffile raises many types for bad files
            raise DataError(f"{path}: unreadable TIFF ({e})") from None
    elif suffix in (".jpg", ".jpeg"):
        arr = _decode_pillow(path)
    else:
        raise DataError(f"{path}: unsupported image type (use PNG, JPEG or TIFF)")
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] < 3):
        raise DataError(f"{path}: grey image; an RGB photo is needed")
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DataError(f"{path}: unexpected image shape {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{path}: unsupported sample type {arr.dtype} (8 or 16 bits expected)")
    return np.ascontiguousarray(arr[..., :3])


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write uint8 or uint16 H x W x 3 (or H x W) as PNG of the same bit depth."""
    path = Path(path)
    if image.dtype == np.uint16:
        import tensorflow as tf

        arr = image if image.ndim == 3 else image[..., None]
        path.write_bytes(tf.io.encode_png(arr).numpy())
    elif image.dtype == np.uint8:
        import imageio.v3 as iio

        iio.imwrite(path, image, extension=".png")
    else:
        raise ValueError(f"write_png needs uint8 or uint16, got {image.dtype}")


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


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer (IEC 61966-2-1): float in [0, 1] -> linear float32 in [0, 1]."""
    v = np.asarray(v, dtype=np.float32)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """sRGB transfer: linear float >= 0 -> encoded float32 (1 at linear 1; above 1 stays > 1)."""
    v = np.maximum(np.asarray(v, dtype=np.float32), 0)
    return np.where(
        v <= 0.0031308, v * 12.92, 1.055 * np.power(v, 1 / 2.4, dtype=np.float32) - 0.055
    ).astype(np.float32)

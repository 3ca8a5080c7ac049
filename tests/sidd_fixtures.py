"""Tiny SIDD sRGB trees that copy the real layout file for file (datasets.md, SIDD section).

- SIDD-Medium: ``SIDD_Medium_Srgb/Data/<folder>/0001_GT_SRGB_010.PNG`` ... two frames (010, 011)
  per folder, upper-case ``.PNG``, instance prefix on every file name.
- SIDD-Small: ``SIDD_Small_sRGB_Only/Data/<folder>/GT_SRGB_010.PNG`` ... one pair per folder,
  no prefix.
- Both trees have ``Scene_Instances.txt`` listing the folders.
- Validation blocks: ``ValidationNoisyBlocksSrgb.mat`` / ``ValidationGtBlocksSrgb.mat``, uint8
  arrays (N, B, 256, 256, 3), written as MAT v5 (scipy) or as MATLAB writes v7.3: an HDF5 file
  behind a 512-byte MATLAB header block, the array stored with its dimensions reversed.

Images are smooth gradients plus noise (GT) and GT plus extra noise (NOISY), 8-bit RGB,
deterministic for a seed.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

MEDIUM = "SIDD_Medium_Srgb"
SMALL = "SIDD_Small_sRGB_Only"
# instance_scene_phone_ISO_shutter_illuminant_brightness
FOLDERS = (
    "0001_001_S6_00100_00060_3200_L",
    "0052_002_G4_01600_01000_5500_N",
)
FRAMES = ("010", "011")


def frame_images(seed: int, size: tuple[int, int] = (64, 96)) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, gt) uint8 H x W x 3 for ``seed``: a smooth image and the same with noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3).astype(np.float32)
    base = np.stack([0.5 + 0.35 * np.sin(xx / (7 + 3 * c) + yy / 11 + phase[c])
                     for c in range(3)], axis=-1)
    gt = np.clip(base + rng.normal(0, 0.01, base.shape), 0, 1)
    noisy = np.clip(gt + rng.normal(0, 0.06, base.shape), 0, 1)
    to8 = lambda a: np.rint(a * 255).astype(np.uint8)  # noqa: E731
    return to8(noisy), to8(gt)


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")


def make_sidd_tree(
    base: Path,
    *,
    small: bool = False,
    folders: tuple[str, ...] = FOLDERS,
    frames: tuple[str, ...] | None = None,
    size: tuple[int, int] = (64, 96),
    seed: int = 0,
) -> Path:
    """Write a SIDD-Medium (or ``small``) tree under ``base``; returns its top folder.

    Medium gets ``frames`` (default 010 and 011) per folder, Small one pair (010).
    Every image has its own seed, so any two tiles differ.
    """
    top = base / (SMALL if small else MEDIUM)
    data = top / "Data"
    frames = frames or (("010",) if small else FRAMES)
    for fi, folder in enumerate(folders):
        prefix = "" if small else folder[:4] + "_"
        for ki, frame in enumerate(frames):
            noisy, gt = frame_images(seed * 1000 + fi * 10 + ki, size)
            write_png(data / folder / f"{prefix}GT_SRGB_{frame}.PNG", gt)
            write_png(data / folder / f"{prefix}NOISY_SRGB_{frame}.PNG", noisy)
    top.mkdir(parents=True, exist_ok=True)
    (top / "Scene_Instances.txt").write_text("".join(f"{f}\n" for f in folders))
    return top


def medium_path(top: Path, folder: str, kind: str, frame: str) -> Path:
    """Path of one Medium image: kind is 'GT' or 'NOISY'."""
    return top / "Data" / folder / f"{folder[:4]}_{kind}_SRGB_{frame}.PNG"


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


# ---------------------------------------------------------------- validation blocks

VAL_NOISY = "ValidationNoisyBlocksSrgb"
VAL_GT = "ValidationGtBlocksSrgb"


def validation_blocks(n: int = 2, b: int = 3, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, gt) uint8 arrays of shape (n, b, 256, 256, 3)."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (n, b, 256, 256, 3), dtype=np.uint8)
    noise = rng.integers(-20, 21, gt.shape)
    noisy = np.clip(gt.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return noisy, gt


def write_mat_v5(path: Path, variable: str, array: np.ndarray) -> None:
    import scipy.io

    path.parent.mkdir(parents=True, exist_ok=True)
    # MATLAB's default `save` (-v7) is the MAT v5 container with zlib-compressed variables.
    scipy.io.savemat(path, {variable: array}, do_compression=True)


def _matlab_header() -> bytes:
    """The 128 bytes MATLAB puts in front of a v7.3 file (the rest of the 512 are zero)."""
    text = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Mar 13 10:00:00 2018 "
            b"HDF5 schema 1.00 .")
    head = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    assert len(head) == 128
    return head


def write_mat_v73(path: Path, variable: str, array: np.ndarray) -> None:
    """Write ``array`` as MATLAB -v7.3 does: HDF5 with a 512-byte user block holding the MATLAB
    header, the array's dimensions reversed (MATLAB is column-major), ``MATLAB_class`` set."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512, libver="earliest") as f:
        dset = f.create_dataset(variable, data=np.ascontiguousarray(array.transpose()))
        dset.attrs.create("MATLAB_class", np.bytes_(array.dtype.name))
    with open(path, "r+b") as f:
        f.write(_matlab_header() + b"\x00" * (512 - 128))


def make_validation(folder: Path, version: str = "5", n: int = 2, b: int = 3,
                    seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Write both validation .mat files into ``folder`` (MAT ``version`` '5' or '7.3');
    returns (noisy, gt) as MATLAB indexes them: (n, b, 256, 256, 3) uint8."""
    noisy, gt = validation_blocks(n, b, seed)
    writer = write_mat_v73 if version == "7.3" else write_mat_v5
    writer(folder / f"{VAL_NOISY}.mat", VAL_NOISY, noisy)
    writer(folder / f"{VAL_GT}.mat", VAL_GT, gt)
    return noisy, gt


# ---------------------------------------------------------------- damaged files


def png_16bit(path: Path, size: tuple[int, int] = (64, 96)) -> None:
    """A valid 16-bit RGB PNG (Pillow cannot write one, so the chunks are built here)."""
    h, w = size
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_grey(path: Path, size: tuple[int, int] = (64, 96)) -> None:
    write_png(path, np.full(size, 128, np.uint8))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def corrupt_middle(path: Path) -> None:
    """Flip one byte in the middle of the compressed pixel data (the header stays valid)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

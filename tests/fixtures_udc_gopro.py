"""Tiny trees that copy the real UDC SYNTH and GoPro layouts file for file.

UDC: DISCNet's ``synthetic_data/{GT,input/ZTE_new_<pos>}/{train,test}/<name>.npy`` and MIPI's
``{training,validation}/{input,GT}/*.npy`` + ``test/input/*.npy``; float32 H x W x 3 HDR values
in [0, 500] (64 x 64 here instead of 800 x 800). GoPro: ``GOPRO_Large/{train,test}/<sequence>/
{blur,blur_gamma,sharp}/NNNNNN.png`` and the flattened ``{train,test}/{input,target}/
<sequence>-<frame>.png``; 8-bit RGB PNGs (40 x 24 instead of 1280 x 720, W x H).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

UDC_SIZE = 64
UDC_TRAIN = ("101.npy", "1002.npy", "87.npy")
UDC_TEST = ("2001.npy", "95.npy")
GOPRO_W, GOPRO_H = 40, 24
# Frame numbers do not start at 1 and repeat across sequences (000047 twice), as in the real tree.
GOPRO_TRAIN = {"GOPR0372_07_00": ("000047", "000048"), "GOPR0374_11_00": ("000001", "000047")}
GOPRO_TEST = {"GOPR0384_11_01": ("001301", "001302"), "GOPR0396_11_00": ("000047",)}


def hdr_image(rng: np.random.Generator, size: int = UDC_SIZE) -> np.ndarray:
    """float32 size x size x 3 linear HDR in [0, 500]: mostly dark, a few clipped highlights,
    exact zeros and values small enough to be float16 subnormals."""
    x = (500.0 * rng.random((size, size, 3)) ** 6).astype(np.float32)
    x[0, 0] = 0.0
    x[0, 1] = 500.0
    x[1, 0] = [1e-6, 3e-5, 7e-3]
    x[rng.random((size, size)) > 0.97] = 500.0
    return x


def save_npy(path: Path, array: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return array


def make_discnet(root: Path, positions: tuple[int, ...] = (5,), seed: int = 0,
                 with_inputs: bool = True) -> Path:
    """``root/synthetic_data`` with GT/{train,test} and input/ZTE_new_<pos>/{train,test}."""
    rng = np.random.default_rng(seed)
    base = root / "synthetic_data"
    for split, names in (("train", UDC_TRAIN), ("test", UDC_TEST)):
        for name in names:
            gt = save_npy(base / "GT" / split / name, hdr_image(rng))
            if not with_inputs:
                continue
            for pos in positions:
                # A stand-in for the PSF blur: any other HDR image in range will do.
                blurred = np.clip(0.5 * gt + 0.5 * np.roll(gt, pos, axis=1) + pos, 0, 500)
                save_npy(base / "input" / f"ZTE_new_{pos}" / split / name,
                         blurred.astype(np.float32))
    # The PSFs ship next to the data in the real release; prepare must ignore them.
    save_npy(root / "PSF" / "ZTE_new" / "ZTE_new_psf_5.npy",
             np.full((8, 8, 3), 1 / 64, np.float32))
    return base


def make_mipi(root: Path, seed: int = 1, with_inputs: bool = True) -> Path:
    """``root/mipi`` with training/{input,GT}, validation/{input,GT} and test/input."""
    rng = np.random.default_rng(seed)
    base = root / "mipi"
    for folder, names in (("training", UDC_TRAIN), ("validation", UDC_TEST)):
        for name in names:
            gt = save_npy(base / folder / "GT" / name, hdr_image(rng))
            if with_inputs:
                save_npy(base / folder / "input" / name,
                         np.clip(gt * 0.8 + 1.0, 0, 500).astype(np.float32))
    if with_inputs:
        save_npy(base / "test" / "input" / "5000.npy", hdr_image(rng))
    return base


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: Path, image: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(image))
    return image


def frame(rng: np.random.Generator, h: int = GOPRO_H, w: int = GOPRO_W) -> np.ndarray:
    """A noisy uint8 h x w x 3 frame (the worst case for PNG compression)."""
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_gopro_nested(root: Path, seed: int = 2) -> Path:
    """``root/GOPRO_Large/{train,test}/<sequence>/{blur,blur_gamma,sharp}/NNNNNN.png``."""
    rng = np.random.default_rng(seed)
    base = root / "GOPRO_Large"
    for split, seqs in (("train", GOPRO_TRAIN), ("test", GOPRO_TEST)):
        for seq, frames in seqs.items():
            for f in frames:
                for folder in ("blur", "blur_gamma", "sharp"):
                    write_png(base / split / seq / folder / f"{f}.png", frame(rng))
    return base


def make_gopro_flat(root: Path, seed: int = 3) -> Path:
    """``root/GoPro/{train,test}/{input,target}/<sequence>-<frame>.png``."""
    rng = np.random.default_rng(seed)
    base = root / "GoPro"
    for split, seqs in (("train", GOPRO_TRAIN), ("test", GOPRO_TEST)):
        for seq, frames in seqs.items():
            for f in frames:
                for folder in ("input", "target"):
                    write_png(base / split / folder / f"{seq}-{f}.png", frame(rng))
    return base


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes), to compare two outputs."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}

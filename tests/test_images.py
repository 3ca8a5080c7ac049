"""The image reader: every colour mode, EXIF orientation, bit depths, and clean errors.

Fixtures are real files written by Pillow, imagecodecs and tifffile (the libraries cameras and
editors' files are made with); known answers are the pixels written, or Pillow's own reading.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from lpie_data.errors import DataError
from lpie_data.images import (
    MAX_PIXELS,
    check_photo_header,
    cmyk_to_rgb,
    read_image,
    read_png8_rgb,
    upright_exif,
    write_png,
)

RNG = np.random.default_rng(7)
RGB8 = RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (24, 40, 3), dtype=np.uint16)

# CMYK ink patches (0 = no ink) and the RGB a person expects for each.
INKS = [(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255), (0, 0, 0, 0),
        (0, 255, 255, 0), (128, 0, 0, 128)]
EXPECTED = [(0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 0, 0), (255, 255, 255),
            (255, 0, 0), (63, 127, 127)]


def _cmyk_patches() -> np.ndarray:
    img = np.zeros((16, 16 * len(INKS), 4), np.uint8)
    for i, ink in enumerate(INKS):
        img[:, 16 * i : 16 * (i + 1)] = ink
    return img


def _patch_colours(rgb: np.ndarray) -> np.ndarray:
    return rgb[8, 8::16].astype(int)


def test_png_8_and_16_bit_rgb_exact(tmp_path):
    p8, p16 = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(RGB8).save(p8)
    p16.write_bytes(imagecodecs.png_encode(RGB16))
    assert np.array_equal(read_image(p8), RGB8)
    assert np.array_equal(read_png8_rgb(p8), RGB8)
    got = read_image(p16)
    assert got.dtype == np.uint16 and np.array_equal(got, RGB16)  # no 8-bit truncation
    # 16-bit PNG needs no TensorFlow (it used to import it in every worker).
    assert p16.read_bytes()[24] == 16


def test_png_colour_modes(tmp_path):
    grey = RGB8[..., 0]
    files = {
        "grey": Image.fromarray(grey),
        "grey_alpha": Image.fromarray(grey).convert("LA"),
        "rgba": Image.fromarray(RGB8).convert("RGBA"),
        "palette": Image.fromarray(RGB8).convert("P"),
        "bilevel": Image.fromarray(grey > 127),
    }
    for name, im in files.items():
        im.save(tmp_path / f"{name}.png")
    rep = np.repeat(grey[..., None], 3, axis=2)
    assert np.array_equal(read_image(tmp_path / "grey.png"), rep)
    assert np.array_equal(read_image(tmp_path / "grey_alpha.png"), rep)
    assert np.array_equal(read_image(tmp_path / "rgba.png"), RGB8)
    expected_palette = np.asarray(files["palette"].convert("RGB"))
    assert np.array_equal(read_image(tmp_path / "palette.png"), expected_palette)
    assert set(np.unique(read_image(tmp_path / "bilevel.png"))) <= {0, 255}
    grey16 = (grey.astype(np.uint16) * 257 + 3)
    (tmp_path / "g16.png").write_bytes(imagecodecs.png_encode(grey16))
    got = read_image(tmp_path / "g16.png")
    assert got.dtype == np.uint16 and np.array_equal(got[..., 2], grey16)


def test_dataset_reader_refuses_other_modes_by_name(tmp_path):
    Image.fromarray(RGB8).convert("RGBA").save(tmp_path / "x.png")
    with pytest.raises(DataError, match=r"x\.png: expected an 8-bit RGB PNG, found 8-bit RGBA"):
        read_png8_rgb(tmp_path / "x.png")


@pytest.mark.parametrize("writer", ["pillow", "imagecodecs"])
def test_cmyk_jpeg_has_the_right_colours(tmp_path, writer):
    path = tmp_path / "cmyk.jpg"
    cmyk = _cmyk_patches()
    if writer == "pillow":  # Adobe marker, samples stored inverted (as Photoshop does)
        Image.fromarray(cmyk, "CMYK").save(path, quality=100)
    else:  # ink values stored as they are, the Adobe segment removed
        data = imagecodecs.jpeg8_encode(cmyk, level=100, colorspace="CMYK",
                                        outcolorspace="CMYK")
        app14 = data.index(b"\xff\xeeAdobe"[:2] + data[data.index(b"Adobe") - 4:][2:4])
        length = struct.unpack(">H", data[app14 + 2 : app14 + 4])[0]
        path.write_bytes(data[:app14] + data[app14 + 2 + length :])
        assert b"Adobe" not in path.read_bytes()
    got = _patch_colours(read_image(path))
    assert np.abs(got - np.array(EXPECTED)).max() <= 3, got
    # Not the old bug: C, M, Y read as R, G, B.
    assert tuple(got[0]) != (255, 0, 0)


def test_ycck_jpeg_has_the_right_colours(tmp_path):
    path = tmp_path / "ycck.jpg"
    inverted = 255 - _cmyk_patches()  # the Adobe convention, with the Adobe marker written
    path.write_bytes(imagecodecs.jpeg8_encode(inverted, level=100, colorspace="CMYK",
                                              outcolorspace="YCCK"))
    assert b"Adobe" in path.read_bytes()[:200]
    got = _patch_colours(read_image(path))
    assert np.abs(got - np.array(EXPECTED)).max() <= 4, got


def test_cmyk_tiff(tmp_path):
    path = tmp_path / "cmyk.tif"
    tifffile.imwrite(path, _cmyk_patches(), photometric="separated")
    got = _patch_colours(read_image(path))
    assert np.abs(got - np.array(EXPECTED)).max() <= 1


def test_cmyk_formula_known_answers():
    ink = np.array([[[128, 0, 0, 128], [0, 0, 0, 0], [255, 255, 255, 255]]], np.uint8)
    assert cmyk_to_rgb(ink, inverted=False).tolist() == [[[63, 127, 127], [255, 255, 255],
                                                          [0, 0, 0]]]
    assert np.array_equal(cmyk_to_rgb(255 - ink, inverted=True), cmyk_to_rgb(ink, False))


def test_grey_and_rgb_jpeg(tmp_path):
    Image.fromarray(RGB8).save(tmp_path / "c.jpg", quality=100)
    Image.fromarray(RGB8[..., 1]).save(tmp_path / "g.jpg", quality=100)
    expected = np.asarray(Image.open(tmp_path / "c.jpg").convert("RGB")).astype(int)
    assert np.abs(read_image(tmp_path / "c.jpg").astype(int) - expected).max() <= 1
    g = read_image(tmp_path / "g.jpg")
    assert g.shape == (24, 40, 3) and np.array_equal(g[..., 0], g[..., 2])


def test_tiff_modes(tmp_path):
    tifffile.imwrite(tmp_path / "rgb16.tif", RGB16, photometric="rgb")
    tifffile.imwrite(tmp_path / "rgba.tif", np.dstack([RGB8, RGB8[..., :1]]),
                     photometric="rgb", extrasamples=["unassalpha"])
    tifffile.imwrite(tmp_path / "grey.tif", RGB8[..., 0], photometric="minisblack")
    tifffile.imwrite(tmp_path / "planar.tif", RGB8.transpose(2, 0, 1), photometric="rgb",
                     planarconfig="separate")
    assert np.array_equal(read_image(tmp_path / "rgb16.tif"), RGB16)
    assert np.array_equal(read_image(tmp_path / "rgba.tif"), RGB8)
    assert np.array_equal(read_image(tmp_path / "planar.tif"), RGB8)
    assert np.array_equal(read_image(tmp_path / "grey.tif")[..., 1], RGB8[..., 0])
    tifffile.imwrite(tmp_path / "f.tif", RGB8.astype(np.float32), photometric="rgb")
    with pytest.raises(DataError, match=r"f\.tif: unsupported sample type float32"):
        read_image(tmp_path / "f.tif")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_as_viewers_show_it(tmp_path, orientation):
    img = Image.fromarray(RGB8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    png, jpg = tmp_path / "o.png", tmp_path / "o.jpg"
    img.save(png, exif=exif.tobytes())
    img.save(jpg, exif=exif.tobytes(), quality=100, subsampling=0)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(png)).convert("RGB"))
    assert np.array_equal(read_image(png), expected)
    got = read_image(jpg).astype(int)
    assert got.shape == expected.shape
    assert np.abs(got - expected).mean() < 3  # JPEG loss only
    # The EXIF a result copies says "upright" once the pixels are turned.
    exif = Image.open(jpg).info["exif"]
    fixed = upright_exif(exif)
    assert len(fixed) == len(exif)
    reread = Image.Exif()
    reread.load(fixed)
    assert reread[0x0112] == 1
    # Dataset frames and orient=False keep the stored pixels.
    assert np.array_equal(read_image(png, orient=False), RGB8)
    assert np.array_equal(read_png8_rgb(png), RGB8)


def test_orientation_in_big_endian_tiff(tmp_path):
    path = tmp_path / "o.tif"
    tifffile.imwrite(path, RGB8, photometric="rgb", byteorder=">",
                     extratags=[(274, "H", 1, 6, True)])
    assert np.array_equal(read_image(path), np.rot90(RGB8, -1))


def _png_claiming(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR is rewritten to claim another size (CRC fixed)."""
    data = bytearray(imagecodecs.png_encode(RGB8))
    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def test_enormous_header_is_a_clean_error(tmp_path):
    png, jpg = tmp_path / "bomb.png", tmp_path / "bomb.jpg"
    png.write_bytes(_png_claiming(60000, 60000))
    data = bytearray(imagecodecs.jpeg8_encode(RGB8))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)
    jpg.write_bytes(bytes(data))
    assert 60000 * 60000 > MAX_PIXELS
    for path in (png, jpg):
        with pytest.raises(DataError, match=rf"{path.name}: header claims .* decompression bomb"):
            read_image(path)
        with pytest.raises(DataError, match=rf"{path.name}: header claims"):
            check_photo_header(path)
    with pytest.raises(DataError, match="bomb.png: header claims"):
        read_png8_rgb(png)


@pytest.mark.parametrize("cut", [1, 12, 13, 200])
def test_truncated_png_is_named(tmp_path, cut):
    path = tmp_path / "cut.png"
    path.write_bytes(imagecodecs.png_encode(RGB8)[:-cut])
    with pytest.raises(DataError, match=r"cut\.png: corrupt or truncated image"):
        read_png8_rgb(path)
    with pytest.raises(DataError, match=r"cut\.png: corrupt or truncated image"):
        read_image(path)


def test_bad_files_are_named(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"junk\.jpg: not a JPEG"):
        read_image(tmp_path / "junk.jpg")
    good = imagecodecs.jpeg8_encode(RGB8)
    (tmp_path / "half.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"half\.jpg: corrupt or truncated"):
        read_image(tmp_path / "half.jpg")
    with pytest.raises(DataError, match=r"nope\.png: no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(DataError, match=r"x\.gif: unsupported image type"):
        read_image(tmp_path / "x.gif")
    fifo = tmp_path / "frame.png"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"frame\.png: not a regular file"):
        read_image(fifo)  # would block forever if opened


def test_write_png_round_trips_both_depths(tmp_path):
    write_png(tmp_path / "a.png", RGB8)
    write_png(tmp_path / "b.png", RGB16)
    assert np.array_equal(read_image(tmp_path / "a.png"), RGB8)
    assert np.array_equal(read_image(tmp_path / "b.png"), RGB16)
    with Image.open(io.BytesIO((tmp_path / "a.png").read_bytes())) as im:  # others read it
        assert np.array_equal(np.asarray(im), RGB8)


def test_check_photo_header_sizes(tmp_path):
    Image.fromarray(RGB8).save(tmp_path / "a.jpg")
    tifffile.imwrite(tmp_path / "a.tif", RGB8, photometric="rgb")
    Image.fromarray(RGB8).save(tmp_path / "a.png")
    for name in ("a.jpg", "a.tif", "a.png"):
        assert check_photo_header(Path(tmp_path / name)) == (24, 40)


@pytest.mark.parametrize("threads", ["1", "2"])
def test_pair_reader_same_arrays_and_names_the_bad_file(tmp_path, monkeypatch, threads):
    from lpie_data.images import read_png8_rgb_pair

    monkeypatch.setenv("OMP_NUM_THREADS", threads)  # what joblib gives each process worker
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(RGB8).save(a)
    Image.fromarray(RGB8[::-1].copy()).save(b)
    x, y = read_png8_rgb_pair(a, b)
    assert np.array_equal(x, RGB8) and np.array_equal(y, RGB8[::-1])
    b.write_bytes(b.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"b\.png: corrupt or truncated"):
        read_png8_rgb_pair(a, b)
    a.write_bytes(b"junk")
    with pytest.raises(DataError, match=r"a\.png: not a PNG"):  # the first file's error wins
        read_png8_rgb_pair(a, b)

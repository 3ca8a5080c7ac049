"""SIDD sRGB (Medium or Small): full-frame training tiles and the validation blocks.

Layout (see docs): ``SIDD_Medium_Srgb/Data/<instance>_<scene>_<phone>_<ISO>_<shutter>_<K>_<L|N|H>/``
with ``0001_GT_SRGB_010.PNG`` / ``0001_NOISY_SRGB_010.PNG`` (SIDD-Small: no ``0001_`` prefix);
``ValidationNoisyBlocksSrgb.mat`` + ``ValidationGtBlocksSrgb.mat``: uint8 (40, 32, 256, 256, 3).
Pairs are matched by (folder, frame index), never by list position.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpie_data.errors import DataError
from lpie_data.images import png8_rgb_header, read_png8_rgb
from lpie_data.items import Plan, WorkItem, load_pair
from lpie_data.matfile import load_mat_array, mat_array_info
from lpie_data.records import Example
from lpie_data.tiling import tile_starts

NAME = "sidd"
FOLDER_RE = re.compile(
    r"^(?P<instance>\d{4})_(?P<scene>\d{3})_(?P<phone>[A-Z0-9]{2})_(?P<iso>\d{5})_"
    r"(?P<shutter>\d{5})_(?P<illuminant>\d{4})_(?P<brightness>[LNH])$"
)
FILE_RE = re.compile(r"^(?:(?P<prefix>\d{4})_)?(?P<kind>GT|NOISY)_SRGB_(?P<frame>\d{3})\.png$",
                     re.IGNORECASE)
PHONES = {"GP": "Google Pixel", "IP": "iPhone 7", "S6": "Galaxy S6 Edge", "N6": "Nexus 6",
          "G4": "LG G4"}
BRIGHTNESS = {"L": "low", "N": "normal", "H": "high"}
VAL_NOISY, VAL_GT = "ValidationNoisyBlocksSrgb", "ValidationGtBlocksSrgb"


@dataclass(frozen=True)
class FramePair:
    folder: str
    frame: str
    noisy: str  # relative to root
    gt: str
    height: int
    width: int


@dataclass(frozen=True)
class TileArgs:
    root: str
    pair: FramePair
    tile: int
    stride: int


@dataclass(frozen=True)
class ValArgs:
    root: str
    noisy: str
    gt: str


def scenes_dir(root: Path) -> Path:
    """``root`` may be SIDD_Medium_Srgb, its Data/ folder, or a SIDD-Small tree."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected SIDD_Medium_Srgb or its Data/)")
    data = root / "Data"
    return data if data.is_dir() else root


def folder_meta(folder: str) -> dict[str, object]:
    """Fields of a scene folder name, e.g. 0052_002_S6_01600_01000_5500_N."""
    m = FOLDER_RE.match(folder)
    if not m:
        raise DataError(f"{folder}: not a SIDD scene folder name")
    g = m.groupdict()
    return {
        "instance": int(g["instance"]),
        "scene": int(g["scene"]),
        "phone": g["phone"],
        "phone_name": PHONES.get(g["phone"], "unknown"),
        "iso": int(g["iso"]),
        "shutter": int(g["shutter"]),
        "illuminant": int(g["illuminant"]),
        "brightness": g["brightness"],
    }


def skipped_folders(root: Path) -> list[str]:
    """Notes for the folders next to the scene folders whose names do not follow SIDD's scheme
    (they are skipped, so a renamed scene would silently go missing without a word)."""
    sdir = scenes_dir(Path(root))
    odd = sorted(d.name for d in sdir.iterdir() if d.is_dir() and not FOLDER_RE.match(d.name)
                 and not d.name.startswith("."))
    if not odd:
        return []
    shown = ", ".join(odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
    return [f"{sdir}: skipped {len(odd)} folder(s) not named like a SIDD scene "
            f"(0001_001_S6_00100_00060_3200_L): {shown}"]


def find_pairs(root: Path) -> list[FramePair]:
    """Every (NOISY, GT) pair, matched by folder and frame index, headers checked."""
    sdir = scenes_dir(root)
    folders = sorted(d.name for d in sdir.iterdir() if d.is_dir() and FOLDER_RE.match(d.name))
    if not folders:
        raise DataError(
            f"{sdir}: no SIDD scene folders (names like 0001_001_S6_00100_00060_3200_L)"
        )
    pairs = []
    for folder in folders:
        frames: dict[str, dict[str, Path]] = {}
        for f in sorted((sdir / folder).iterdir()):
            m = FILE_RE.match(f.name)
            if m:
                slot = frames.setdefault(m["frame"], {})
                kind = m["kind"].upper()
                if kind in slot:
                    raise DataError(f"{f}: a second {kind} image for frame {m['frame']} "
                                    f"(also {slot[kind].name})")
                slot[kind] = f
        if not frames:
            raise DataError(f"{sdir / folder}: no GT_SRGB / NOISY_SRGB images")
        for frame, files in sorted(frames.items()):
            for kind, other in (("GT", "NOISY"), ("NOISY", "GT")):
                if kind not in files:
                    raise DataError(
                        f"{files[other]}: its {kind} partner (frame {frame}) is missing"
                    )
            hn, hg = png8_rgb_header(files["NOISY"]), png8_rgb_header(files["GT"])
            if (hn.height, hn.width) != (hg.height, hg.width):
                raise DataError(f"{files['NOISY']}: size {hn.height}x{hn.width} differs from "
                                f"{files['GT'].name} ({hg.height}x{hg.width})")
            pairs.append(FramePair(folder, frame, str(files["NOISY"].relative_to(root)),
                                   str(files["GT"].relative_to(root)), hn.height, hn.width))
    return pairs


def find_validation(root: Path, val_dir: Path | None) -> tuple[Path, Path] | None:
    """The validation .mat pair under ``val_dir`` or ROOT (or one folder below), if present."""
    candidates = [val_dir] if val_dir else [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    for d in candidates:
        noisy, gt = d / f"{VAL_NOISY}.mat", d / f"{VAL_GT}.mat"
        if noisy.exists() or gt.exists():
            if not (noisy.exists() and gt.exists()):
                missing = gt if noisy.exists() else noisy
                raise DataError(f"{missing}: missing (both validation .mat files are needed)")
            return noisy, gt
    if val_dir:
        raise DataError(f"{val_dir}: no {VAL_NOISY}.mat / {VAL_GT}.mat")
    return None


def work_items(root: Path, tile: int, stride: int, val_dir: Path | None = None) -> Plan:
    """One item per training frame pair (split ``train``), one for the validation blocks
    (first); notes name folders skipped for not being named like a SIDD scene."""
    root = Path(root).absolute()  # workers may run elsewhere (Dask)
    val_dir = Path(val_dir).absolute() if val_dir else None
    if tile < 8 or stride < 1 or stride > tile:
        raise DataError(f"bad tiling: tile {tile}, stride {stride} (need 8 <= tile, "
                        "1 <= stride <= tile)")
    pairs = find_pairs(root)
    for p in pairs:
        if p.height < tile or p.width < tile:
            raise DataError(f"{root / p.noisy}: {p.height}x{p.width} is smaller than the "
                            f"{tile}x{tile} tile")
    items = [WorkItem(f"{p.folder}/{p.frame}", "train", TileArgs(str(root), p, tile, stride))
             for p in pairs]
    # The validation item goes first: a .mat that fails to load fails the job at once.
    val = find_validation(root, val_dir)
    if val:
        shapes = [_check_blocks(path, var) for path, var in zip(val, (VAL_NOISY, VAL_GT),
                                                                  strict=True)]
        if shapes[0] != shapes[1]:
            raise DataError(f"{val[0]}: shape {shapes[0]} differs from {val[1]} ({shapes[1]})")
        items.insert(0, WorkItem("validation-blocks", "validation",
                              ValArgs(str(val_dir or root), str(val[0]), str(val[1]))))
    return items, skipped_folders(root)


def _check_blocks(path: Path, variable: str) -> tuple[int, ...]:
    """Shape and dtype of a validation array from the file's headers, before any work starts."""
    shape, dtype = mat_array_info(path, variable)
    if len(shape) != 5 or shape[2:] != (256, 256, 3):
        raise DataError(f"{path}: expected shape (N, B, 256, 256, 3), found {shape}")
    if dtype != "uint8":
        raise DataError(f"{path}: expected uint8 blocks, found {dtype}")
    return shape


def produce(item: WorkItem) -> Iterator[Example]:
    """Worker: the examples of one item (tiles of one frame pair, or all validation blocks)."""
    if isinstance(item.args, ValArgs):
        yield from _validation_examples(item.args)
        return
    a: TileArgs = item.args
    root = Path(a.root)
    noisy, gt = load_pair(read_png8_rgb, root / a.pair.noisy, root / a.pair.gt, "GT")
    meta = {"source": a.pair.noisy, "target_source": a.pair.gt, "frame": a.pair.frame,
            "folder": a.pair.folder, **folder_meta(a.pair.folder)}
    h, w, _ = noisy.shape
    for y in tile_starts(h, a.tile, a.stride):
        for x in tile_starts(w, a.tile, a.stride):
            box = [y, x, a.tile, a.tile]
            yield Example(
                f"{a.pair.folder}/{a.pair.frame}/{y:05d}_{x:05d}",
                _crop(noisy, y, x, a.tile), _crop(gt, y, x, a.tile), {**meta, "box": box},
            )


def _crop(image: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """A tile as a contiguous array over a ``bytes`` copy: the writer's passes over it (value
    range, CRC) run several times faster than on a strided view of the frame, and the record
    encoder uses those bytes as they are (records.image_bytes) instead of copying again."""
    tile = image[y : y + size, x : x + size]
    return np.frombuffer(tile.tobytes(), tile.dtype).reshape(tile.shape)


def _validation_examples(a: ValArgs) -> Iterator[Example]:
    noisy = _load_blocks(Path(a.noisy), VAL_NOISY)
    gt = _load_blocks(Path(a.gt), VAL_GT)
    if noisy.shape != gt.shape:
        raise DataError(f"{a.noisy}: shape {noisy.shape} differs from {a.gt} ({gt.shape})")
    n_img, n_blk, bh, bw, _ = noisy.shape
    for i in range(n_img):
        for b in range(n_blk):
            yield Example(
                f"validation/{i:02d}/{b:02d}", noisy[i, b], gt[i, b],
                {"source": _relative(a.noisy, a.root), "target_source": _relative(a.gt, a.root),
                 "box": [0, 0, bh, bw], "image": i, "block": b},
            )


def _relative(path: str, root: str) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


def _load_blocks(path: Path, variable: str) -> np.ndarray:
    arr = load_mat_array(path, variable)
    if arr.ndim != 5 or arr.shape[2:] != (256, 256, 3):
        raise DataError(f"{path}: expected shape (N, B, 256, 256, 3), found {arr.shape}")
    if arr.dtype != np.uint8:
        raise DataError(f"{path}: expected uint8 blocks, found {arr.dtype}")
    return arr

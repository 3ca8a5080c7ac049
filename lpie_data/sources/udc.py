"""UDC SYNTH (DISCNet, CVPR 2021; MIPI 2022 UDC): HDR .npy pairs cut into patches.

Two layouts, ROOT being the folder that holds them:

- DISCNet's ``synthetic_data/``: ``GT/{train,test}/<name>.npy`` and
  ``input/ZTE_new_<pos>/{train,test}/<name>.npy`` (one ``<pos>`` per PSF, 1..9).
- MIPI 2022's: ``{training,validation}/{input,GT}/<name>.npy`` (``validation`` becomes the
  ``test`` split; ``test/input`` has no ground truth and is skipped).

Every file is float32 HDR linear RGB, H x W x 3 (800 x 800 x 3), values in [0, 500]. Pairs are
matched by file name. Stored values, per tone map (:data:`ENCODINGS`):

- ``reinhard``: ``x / (x + 0.25)`` computed in float32, in [0, 1), stored as uint16
  ``round(65535 * y)`` (readers divide by 65535: round-trip error <= 7.7e-6).
- ``none``: linear HDR kept, stored as float16 (relative error <= 2**-11 ~ 4.9e-4).

Headers (shape, dtype, file length) are checked when the work is planned, so a bad tree fails
before any work starts; the data itself (NaN, Inf, negative values) is checked in the worker.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpie_data.errors import ConfigError, DataError
from lpie_data.fingerprint import note_read
from lpie_data.items import Plan, WorkItem, load_pair
from lpie_data.pngfile import both
from lpie_data.records import Example
from lpie_data.tiling import tile_starts
from lpie_data.valuespace import FLOAT16_MAX, REINHARD_KNEE

NAME = "udc"
DEFAULT_PSF_POS = 5
PSF_DIR_RE = re.compile(r"^ZTE_new_(?P<pos>\d+)$")
#: Map every page when the file is mapped (Linux); elsewhere pages are mapped as they are read.
MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
DISCNET_SPLITS = {"train": "train", "test": "test"}  # split -> folder under GT/ and input/*/
MIPI_SPLITS = {"train": "training", "test": "validation"}  # split -> MIPI folder


#: Values per block of :func:`reinhard_uint16`: its float32 temporaries (2 x 256 KiB) stay in a
#: core's L2 cache, so each step's pass reads and writes cache, not memory: ~2x faster over
#: an 800 x 800 x 3 image than whole-array steps (bench/prepare_udc.py).
BLOCK_VALUES = 1 << 16


def reinhard_uint16(x: np.ndarray) -> np.ndarray:
    """Reinhard tone map for storage: float32 H x W x 3 >= 0 -> uint16 ``round(65535 y)``
    with ``y = x / (x + 0.25)`` in [0, 1) (:mod:`lpie_data.valuespace`'s map and encoding).

    The same operations, value by value, as ``encode(reinhard(x), "reinhard")``, in blocks of
    rows: ``y`` is never above 1 (``x + 0.25 >= x`` after rounding) nor below 0, so the clip to
    [0, 1] is left out. ``x`` may be a strided view (a patch of a larger image).
    """
    out = np.empty(x.shape, np.uint16)
    if x.size == 0:
        return out
    rows = max(1, BLOCK_VALUES // (x[0].size or 1))
    pos = np.empty((min(rows, len(x)), *x.shape[1:]), np.float32)
    den = np.empty_like(pos)
    zero = np.zeros_like(pos)  # maximum with an array runs ~5x faster than with a scalar
    for start in range(0, len(x), rows):
        block = x[start : start + rows]
        y, d = pos[: len(block)], den[: len(block)]
        np.maximum(block, zero[: len(block)], out=y, dtype=np.float32)
        np.add(y, np.float32(REINHARD_KNEE), out=d)
        np.divide(y, d, out=y)
        y *= np.float32(65535.0)
        np.rint(y, out=y)
        out[start : start + rows] = y
    return out


def linear_float16(x: np.ndarray) -> np.ndarray:
    """No tone map: float32 H x W x 3 linear HDR (<= 65504) -> float16, values kept."""
    return x.astype(np.float16)


# --tonemap name -> the encoder of a float32 linear patch into its stored array (uint16 /
# float16). Not the float32 maps of lpie_data.synth.tonemap.TONE_MAPS.
ENCODINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "reinhard": reinhard_uint16,
    "none": linear_float16,
}


@dataclass(frozen=True)
class NpyHeader:
    """What a .npy header says: shape, dtype, where the data starts, the file's length."""

    shape: tuple[int, ...]
    dtype: np.dtype
    data_offset: int
    file_size: int
    fortran_order: bool = False

    @property
    def data_end(self) -> int:
        """The file length the header promises: where the array's data ends."""
        return self.data_offset + int(np.prod(self.shape)) * self.dtype.itemsize


@dataclass(frozen=True)
class UdcArgs:
    """One pair to cut: paths relative to ``root``; ``prefix`` starts every example key."""

    root: str
    input: str
    target: str
    prefix: str
    patch: int
    tone_map: str
    meta: dict


def read_npy_header(path: Path) -> NpyHeader:
    """Read a .npy header without the data; DataError naming ``path`` if it is not one."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:
        raise DataError(f"{path}: not a readable .npy file ({e})") from None
    return NpyHeader(tuple(shape), dtype, offset, size, bool(fortran))


def check_header(path: Path, h: NpyHeader) -> None:
    """H x W x 3 float data, and as many bytes in the file as the header promises."""
    if len(h.shape) != 3 or h.shape[2] != 3:
        raise DataError(f"{path}: expected an H x W x 3 array, found shape {h.shape}")
    if h.dtype.kind != "f":
        raise DataError(f"{path}: expected float HDR data (float32), found dtype {h.dtype}")
    if h.file_size < h.data_end:
        raise DataError(f"{path}: truncated .npy ({h.file_size} bytes, its header needs "
                        f"{h.data_end})")


def map_npy(path: Path) -> np.ndarray:
    """The H x W x 3 float array of a .npy file, mapped read-only, not copied: its pages are
    the page cache's, so the checks and the tone map read them in place (a copy into fresh
    memory cost as much CPU as the tone map). Header and length are checked first
    (:func:`check_header`); DataError names ``path``.

    The pages are mapped up front (``MAP_POPULATE``): left to fault one by one, they cost
    several times the copy. The file's content hash is taken from the mapping too
    (:func:`lpie_data.fingerprint.note_read`). A file cut short *while* mapped ends the process
    (SIGBUS).
    """
    h = read_npy_header(path)
    check_header(path, h)
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            mapped = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | MAP_POPULATE,
                               prot=mmap.PROT_READ)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(mapped) < h.data_end:  # cut between the header's check and the mapping
        raise DataError(f"{path}: truncated .npy ({len(mapped)} bytes, its header needs "
                        f"{h.data_end})")
    note_read(str(path), st, mapped)  # the item's input digest, from the pages mapped here
    return np.ndarray(h.shape, h.dtype, buffer=mapped, offset=h.data_offset,
                      order="F" if h.fortran_order else "C")


def load_hdr(path: Path) -> np.ndarray:
    """Load and check one HDR image: float32 H x W x 3, finite, >= 0. DataError names ``path``.

    A C-ordered float32 file is mapped (:func:`map_npy`), any other a float32 copy.
    """
    arr = map_npy(path)
    if arr.size == 0:
        raise DataError(f"{path}: empty image (shape {arr.shape})")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    # min/max propagate NaN, and see +-Inf and negatives: two passes check everything.
    lo, hi = float(arr.min()), float(arr.max())
    if np.isnan(lo) or np.isnan(hi):
        raise DataError(f"{path}: contains NaN values")
    if np.isinf(lo) or np.isinf(hi):
        raise DataError(f"{path}: contains infinite values")
    if lo < 0:
        raise DataError(f"{path}: contains negative values (min {lo:g}); HDR light is >= 0")
    return arr


def parse_psf_pos(value: str | int) -> int | str:
    """``--psf-pos``: a PSF position (int >= 1) or ``"all"``; ConfigError otherwise."""
    text = str(value).strip().lower()
    if text == "all":
        return "all"
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ConfigError(f"--psf-pos: expected a PSF position (1-9) or 'all', got {value!r}")


def check_tone_map(name: str) -> None:
    if name not in ENCODINGS:
        raise ConfigError(f"unknown tone map {name!r}; valid: {', '.join(ENCODINGS)}")


def _npy_files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() == ".npy"}


def _synth_refusal(gt_dir: Path) -> DataError:
    return DataError(
        f"{gt_dir}: ground truth without degraded inputs; make them with "
        f"`lpie-data synth --source {gt_dir} --out ...` (blurs the ground truth with a PSF), "
        "or point --root at a tree that has the inputs"
    )


def _pair_files(input_dir: Path, gt_dir: Path) -> list[tuple[Path, Path]]:
    """(input, GT) files matched by name; a file without its partner is an error."""
    inputs, gts = _npy_files(input_dir), _npy_files(gt_dir)
    for name, path in inputs.items():
        if name not in gts:
            raise DataError(f"{path}: its ground-truth partner {gt_dir / name} is missing")
    for name, path in gts.items():
        if name not in inputs:
            raise DataError(f"{path}: its input partner {input_dir / name} is missing")
    if not inputs:
        raise DataError(f"{input_dir}: no .npy files")
    return [(inputs[n], gts[n]) for n in sorted(inputs)]


@dataclass(frozen=True)
class _Group:
    """One split's folder pair: (split, input folder, GT folder, PSF position or None)."""

    split: str
    input_dir: Path
    gt_dir: Path
    psf_pos: int | None


def _discnet_groups(root: Path, psf_pos: int | str) -> list[_Group]:
    gt_root, in_root = root / "GT", root / "input"
    if not gt_root.is_dir():
        raise DataError(f"{gt_root}: missing (DISCNet's synthetic_data holds GT/ and input/)")
    gt_splits = [s for s, d in DISCNET_SPLITS.items() if (gt_root / d).is_dir()]
    if not gt_splits:
        raise DataError(f"{gt_root}: no train/ or test/ folder")
    positions = {}
    if in_root.is_dir():
        for d in in_root.iterdir():
            m = PSF_DIR_RE.match(d.name)
            if m and d.is_dir():
                positions[int(m["pos"])] = d
    if not positions:
        raise _synth_refusal(gt_root / DISCNET_SPLITS[gt_splits[0]])
    if psf_pos == "all":
        chosen = sorted(positions)
    elif psf_pos in positions:
        chosen = [int(psf_pos)]
    else:
        valid = ", ".join(str(p) for p in sorted(positions))
        raise DataError(f"{in_root / f'ZTE_new_{psf_pos}'}: no such PSF folder "
                        f"(positions present: {valid}; or --psf-pos all)")
    groups = []
    for pos in chosen:
        for split in gt_splits:
            in_dir = positions[pos] / DISCNET_SPLITS[split]
            if not in_dir.is_dir():
                raise DataError(f"{in_dir}: missing, but {gt_root / DISCNET_SPLITS[split]} "
                                "has ground truth for it")
            groups.append(_Group(split, in_dir, gt_root / DISCNET_SPLITS[split], pos))
        for split, folder in DISCNET_SPLITS.items():
            if split not in gt_splits and (positions[pos] / folder).is_dir():
                raise DataError(f"{positions[pos] / folder}: inputs without ground truth "
                                f"({gt_root / folder} is missing)")
    return groups


def _mipi_groups(root: Path, psf_pos: int | str, notes: list[str]) -> list[_Group]:
    if psf_pos != DEFAULT_PSF_POS:
        raise ConfigError("--psf-pos applies to DISCNet's layout (input/ZTE_new_<pos>/); "
                          f"MIPI's tree at {root} has a single set of inputs")
    groups = []
    for split, folder in MIPI_SPLITS.items():
        in_dir, gt_dir = root / folder / "input", root / folder / "GT"
        if gt_dir.is_dir() and not in_dir.is_dir():
            raise _synth_refusal(gt_dir)
        if in_dir.is_dir() and not gt_dir.is_dir():
            # MIPI released validation inputs before their ground truth.
            notes.append(f"{root / folder}: inputs without ground truth (no GT/), skipped")
        elif in_dir.is_dir():
            groups.append(_Group(split, in_dir, gt_dir, None))
    if not groups:
        raise DataError(f"{root}: no training/ or validation/ folder with input/ and GT/")
    if (root / "test").is_dir():
        notes.append(f"{root / 'test'}: skipped (MIPI's test inputs have no public ground "
                     "truth; validation/ becomes the test split)")
    return groups


def detect_layout(root: Path) -> str:
    """``"discnet"`` (GT/ + input/) or ``"mipi"`` (training/, validation/)."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    if (root / "GT").is_dir() or (root / "input").is_dir():
        return "discnet"
    if any((root / d).is_dir() for d in MIPI_SPLITS.values()):
        return "mipi"
    hint = ""
    for guess in (root / "synthetic_data", root.parent, root.parent.parent):
        if (guess / "GT").is_dir():
            hint = f"; did you mean {guess}?"
            break
    raise DataError(f"{root}: neither DISCNet's layout (GT/ + input/, i.e. synthetic_data) nor "
                    f"MIPI's (training/, validation/){hint}")


def work_items(root: Path, patch: int = 400, tone_map: str = "reinhard",
               psf_pos: int | str = DEFAULT_PSF_POS) -> Plan:
    """One work item per (input, GT) pair, headers checked; also notes for the user.

    Splits ``train`` then ``test``; with ``psf_pos="all"`` one group of items per PSF position
    (ascending) and example keys starting ``ZTE_new_<pos>/``.
    """
    if patch < 8:
        raise ConfigError(f"--patch must be at least 8, got {patch}")
    check_tone_map(tone_map)
    psf_pos = parse_psf_pos(psf_pos)
    root = Path(root).absolute()  # workers may run elsewhere (Dask)
    layout = detect_layout(root)
    notes: list[str] = []
    if layout == "discnet":
        groups = _discnet_groups(root, psf_pos)
    else:
        groups = _mipi_groups(root, psf_pos, notes)
    items = []
    for g in sorted(groups, key=lambda g: (list(DISCNET_SPLITS).index(g.split),
                                           g.psf_pos or 0)):
        folder_meta = {"layout": layout, "psf_position": g.psf_pos, "tone_map": tone_map,
                       "source_folder": str(g.input_dir.relative_to(root)),
                       "target_folder": str(g.gt_dir.relative_to(root))}
        for inp, gt in _pair_files(g.input_dir, g.gt_dir):
            hi, hg = read_npy_header(inp), read_npy_header(gt)
            check_header(inp, hi)
            check_header(gt, hg)
            if hi.shape != hg.shape:
                raise DataError(f"{inp}: shape {hi.shape} differs from its ground truth "
                                f"{gt} ({hg.shape})")
            if hi.shape[0] < patch or hi.shape[1] < patch:
                raise DataError(f"{inp}: {hi.shape[0]}x{hi.shape[1]} is smaller than the "
                                f"{patch}x{patch} patch")
            stem = inp.name[: -len(inp.suffix)]
            prefix = f"ZTE_new_{g.psf_pos}/{stem}" if psf_pos == "all" else stem
            meta = {**folder_meta, "source": str(inp.relative_to(root)),
                    "target_source": str(gt.relative_to(root)), "image": stem}
            items.append(WorkItem(f"{g.split}/{prefix}", g.split,
                                  UdcArgs(str(root), meta["source"], meta["target_source"],
                                          prefix, patch, tone_map, meta)))
    return items, notes


def produce(item: WorkItem) -> Iterator[Example]:
    """Worker: the non-overlapping ``patch`` x ``patch`` crops of one pair, tone-mapped and
    encoded for storage (uint16 for ``reinhard``, float16 for ``none``)."""
    a: UdcArgs = item.args
    root = Path(a.root)
    inp, gt = load_pair(load_hdr, root / a.input, root / a.target, "ground truth")
    if a.tone_map == "none":
        for path, arr in ((a.input, inp), (a.target, gt)):
            if float(arr.max()) > FLOAT16_MAX:
                raise DataError(f"{root / path}: values above {FLOAT16_MAX:g} do not fit "
                                "float16; use --tonemap reinhard")
    encode = ENCODINGS[a.tone_map]
    p = a.patch
    h, w, _ = inp.shape
    for y in tile_starts(h, p, p):
        for x in tile_starts(w, p, p):
            stored_inp, stored_gt = both(encode, inp[y : y + p, x : x + p],
                                         gt[y : y + p, x : x + p])
            yield Example(f"{a.prefix}/{y:05d}_{x:05d}", stored_inp, stored_gt,
                          {**a.meta, "box": [y, x, p, p]})

"""Point spread functions k: reading, validation, unit-sum normalisation, rotation.

A :class:`Psf` holds a float32 (h, w, 3) kernel in linear RGB whose channels each sum to 1,
centred at (h // 2, w // 2). Files: ``.npy``, ``.npz``, ``.mat`` (MATLAB v5 via scipy.io and
v7.3, which is HDF5, via h5py: told apart by the header), ``.h5`` / ``.hdf5``; arrays of shape
(h, w) (one kernel for all channels), (h, w, 1) or (h, w, 3), any size.

A PSF whose peak or centroid lies more than :data:`CENTRE_TOLERANCE_PX` from the array centre
would shift every blurred input against its target: it gets a ``warning`` naming the file and
the offsets, or, with ``recentre=True``, is padded so that its centroid sits on the centre.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.ndimage

from lpie_data import storage
from lpie_data.errors import DataError, OutputError
from lpie_data.matfile import load_mat_array, pick_array

PSF_SUFFIXES = (".npy", ".npz", ".mat", ".h5", ".hdf5")
PREFERRED_NAMES = ("psf", "PSF", "kernel", "k")
UNIT_SUM_TOLERANCE = 1e-4
CENTRE_TOLERANCE_PX = 1.0


@dataclass(frozen=True, eq=False)
class Psf:
    """A validated PSF. ``kernel``: float32 (h, w, 3), each channel sums to 1.

    id: short name recorded in the meta of every pair it blurs. source: file or "builtin".
    note: set when the file was changed on loading (normalised, recentred). digest: content
    hash. dirac: (row, col) of the single non-zero tap when the PSF is a Dirac, else None.
    warning: set when the peak or centroid is off the array centre (and not recentred).
    """

    id: str
    kernel: np.ndarray
    source: str = ""
    note: str | None = None
    digest: str = field(default="", repr=False)
    dirac: tuple[int, int] | None = None
    warning: str | None = None


def centre_offsets(kernel: np.ndarray) -> tuple[tuple[int, int], tuple[float, float]]:
    """(peak, centroid) of a (h, w, 3) kernel, each as (rows, cols) from the array centre
    (h // 2, w // 2); computed on the sum of the three channels."""
    total = kernel.sum(axis=2, dtype=np.float64)
    h, w = total.shape
    peak = np.unravel_index(int(np.argmax(total)), total.shape)
    mass = total.sum()
    rows = float(total.sum(axis=1) @ np.arange(h)) / mass
    cols = float(total.sum(axis=0) @ np.arange(w)) / mass
    return ((int(peak[0]) - h // 2, int(peak[1]) - w // 2), (rows - h // 2, cols - w // 2))


def _off_centre(offset: tuple[float, float]) -> bool:
    """More than :data:`CENTRE_TOLERANCE_PX` off in rows or in columns."""
    return max(abs(offset[0]), abs(offset[1])) > CENTRE_TOLERANCE_PX


def _recentred(kernel: np.ndarray, centroid: tuple[float, float]) -> np.ndarray:
    """``kernel`` zero-padded so that its centroid (rounded to a pixel) is the new array's
    centre (h // 2, w // 2); no light is lost."""
    pads = []
    for axis, off in enumerate(centroid):
        n, shift = kernel.shape[axis], round(off)
        at = n // 2 + shift  # the pixel that becomes the centre
        if shift == 0:
            pads.append((0, 0))
        elif shift > 0:
            pads.append((0, 2 * at + 1 - n))
        else:
            pads.append((n - 2 * at - 1, 0))
    return np.pad(kernel, (*pads, (0, 0)))


def make_psf(array: np.ndarray, psf_id: str, source: str = "", *,
             recentre: bool = False) -> Psf:
    """Validate and normalise an array into a :class:`Psf`; errors name ``source``.

    Accepts (h, w), (h, w, 1) or (h, w, 3) real numbers: all finite, none negative, every
    channel with a positive sum. Channels not summing to 1 (within 1e-4) are scaled to unit
    sum and ``note`` says so. A peak or centroid more than 1 px off the array centre sets
    ``warning``; with ``recentre`` the kernel is padded to put its centroid on the centre
    instead (no light lost), and ``note`` says so.
    """
    where = source or psf_id
    array = np.asarray(array)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{where}: PSF must hold numbers, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise DataError(f"{where}: PSF must be real, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise DataError(
            f"{where}: PSF must have shape (h, w) or (h, w, 3), got {tuple(np.shape(array))}"
        )
    kernel = array.astype(np.float64)
    if not np.all(np.isfinite(kernel)):
        raise DataError(f"{where}: PSF has NaN or infinite values")
    if np.any(kernel < 0):
        raise DataError(f"{where}: PSF has negative values (min {kernel.min():g})")
    sums = kernel.sum(axis=(0, 1))
    if np.any(sums <= 0):
        zero = ", ".join("RGB"[c] for c in range(3) if sums[c] <= 0)
        raise DataError(f"{where}: PSF channel(s) {zero} sum to zero")
    note = None
    if np.any(np.abs(sums - 1.0) > UNIT_SUM_TOLERANCE):
        sums_text = ", ".join(f"{'RGB'[c]}={sums[c]:.6g}" for c in range(3))
        note = f"{where}: normalised each channel to unit sum (sums were {sums_text})"
    kernel = (kernel / sums).astype(np.float32)
    (peak, centroid), warning = centre_offsets(kernel), None
    if _off_centre(peak) or _off_centre(centroid):
        h, w = kernel.shape[:2]
        where_off = (f"peak at ({peak[0]:+d}, {peak[1]:+d}) px and centroid at "
                     f"({centroid[0]:+.1f}, {centroid[1]:+.1f}) px (rows, cols) from the array "
                     f"centre ({h // 2}, {w // 2})")
        if recentre:
            kernel = _recentred(kernel, centroid)
            text = (f"{where}: recentred the PSF ({where_off}): zero-padded to "
                    f"{kernel.shape[0]} x {kernel.shape[1]} with its centroid at the centre")
            note = f"{note}; {text}" if note else text
        else:
            warning = (f"{where}: PSF off centre: {where_off}; every input would be shifted "
                       "against its target (recentre it: psf_recentre = true in [synth])")
    kernel.setflags(write=False)
    return Psf(
        id=psf_id,
        kernel=kernel,
        source=source,
        note=note,
        warning=warning,
        digest=hashlib.blake2b(
            kernel.tobytes() + repr(kernel.shape).encode(), digest_size=16
        ).hexdigest(),
        dirac=_dirac_position(kernel),
    )


def _dirac_position(kernel: np.ndarray) -> tuple[int, int] | None:
    nonzero = np.argwhere(kernel.any(axis=2))
    if len(nonzero) != 1:
        return None
    r, c = (int(v) for v in nonzero[0])
    return (r, c) if np.all(kernel[r, c] == 1.0) else None


def _psf_array_name(path: Path, names: list[str]) -> str:
    return pick_array(path, names, PREFERRED_NAMES, what="is the PSF")


def _read_hdf5(path: Path) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visititems(
            lambda name, obj: names.append(name)
            if isinstance(obj, h5py.Dataset) and not name.startswith("#")
            else None
        )
        return np.asarray(f[_psf_array_name(path, names)][()])


def read_psf_array(path: str | Path) -> np.ndarray:
    """The raw array stored in a PSF file (no validation); DataError naming the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PSF_SUFFIXES:
        raise DataError(f"{path}: unknown PSF file type; use one of {', '.join(PSF_SUFFIXES)}")
    magic = {".npy": (b"\x93NUMPY", "NumPy .npy"), ".npz": (b"PK", "NumPy .npz (zip)")}
    if suffix in magic and path.is_file():
        with open(path, "rb") as f:
            head = f.read(len(magic[suffix][0]))
        if head != magic[suffix][0]:  # np.load would try to unpickle it and say so
            raise DataError(f"{path}: not a {magic[suffix][1]} file (it does not start like "
                            "one); is it another kind of file renamed?")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return np.asarray(data[_psf_array_name(path, list(data.files))])
        if suffix == ".mat":
            return load_mat_array(path, PREFERRED_NAMES)
        return _read_hdf5(path)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as e:  # numpy, scipy.io and h5py raise many types on corrupt files
        raise DataError(f"{path}: cannot read PSF: {e}") from None


def load_psf(path: str | Path, psf_id: str | None = None, *, recentre: bool = False) -> Psf:
    """Read, validate and normalise one PSF file (id defaults to the file's stem); ``recentre``:
    see :func:`make_psf`."""
    path = Path(path)
    return make_psf(read_psf_array(path), psf_id or path.stem, str(path), recentre=recentre)


def psf_files(paths: list[Path]) -> list[Path]:
    """PSF files named by ``paths``: files as given, folders expanded to their PSF files."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in PSF_SUFFIXES)
            if not found:
                raise DataError(f"{path}: no PSF files ({', '.join(PSF_SUFFIXES)}) in folder")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file")
    return files


def load_psfs(paths: list[Path], *, recentre: bool = False) -> list[Psf]:
    """Load every PSF named by ``paths`` (files or folders). Ids are file stems, made unique
    with their folder when two files share a stem. ``recentre``: see :func:`make_psf`."""
    files = psf_files(paths)
    stems = [f.stem for f in files]
    ids = [
        stem if stems.count(stem) == 1 else f"{f.parent.name}/{stem}"
        for stem, f in zip(stems, files, strict=True)
    ]
    if len(set(ids)) != len(ids):
        ids = [str(f) for f in files]
    if len(set(ids)) != len(ids):
        raise DataError(f"the same PSF file is given twice: {', '.join(ids)}")
    return [load_psf(f, i, recentre=recentre) for f, i in zip(files, ids, strict=True)]


def rotate_psf(psf: Psf, degrees: float) -> Psf:
    """The PSF rotated by ``degrees`` (counter-clockwise) about its centre (h//2, w//2).

    Bilinear interpolation, zeros outside; each channel renormalised to unit sum. Light
    rotated out of the array is lost, which is negligible for PSFs that fade to their border.
    """
    if degrees == 0.0:
        return psf
    kernel = psf.kernel
    h, w = kernel.shape[:2]
    centre = np.array([h // 2, w // 2], dtype=np.float64)
    a = math.radians(degrees)
    # output (row, col) -> input coordinates: rotation about the centre (rows point down).
    matrix = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    offset = centre - matrix @ centre
    out = np.empty_like(kernel)
    for c in range(3):
        scipy.ndimage.affine_transform(
            kernel[:, :, c], matrix, offset=offset, output=out[:, :, c], order=1,
            mode="constant", cval=0.0,
        )
    np.maximum(out, 0.0, out=out)
    sums = out.sum(axis=(0, 1), dtype=np.float64)
    if np.any(sums <= 0):
        return psf
    out /= sums.astype(np.float32)
    return Psf(
        id=psf.id,
        kernel=out,
        source=psf.source,
        digest=f"{psf.digest}@{degrees!r}",
        dirac=_dirac_position(out),
    )


def save_psf(path: str | Path, kernel: np.ndarray) -> None:
    """Write a (h, w, 3) kernel as float32 ``.npy`` (through a temporary file and a rename)."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise OutputError(f"{path}: PSFs are written as .npy; name the file *.npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    with storage.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(kernel, dtype=np.float32))

"""MATLAB .mat arrays: v5 through scipy, v7.3 (HDF5) through h5py, told apart by the header."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lpie_data.errors import DataError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def mat_version(path: Path) -> str:
    """'7.3' (HDF5 container) or '5'; DataError for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(520)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if head[:8] == HDF5_SIGNATURE or head[512:520] == HDF5_SIGNATURE:
        return "7.3"
    if head[:6] == b"MATLAB" and len(head) >= 128:
        return "5"
    raise DataError(f"{path}: not a MATLAB .mat file (no MAT v5 or v7.3/HDF5 header)")


def mat_array_info(path: Path, variable: str | Sequence[str] | None = None
                   ) -> tuple[tuple[int, ...], str]:
    """(shape, dtype name) of one array, as :func:`load_mat_array` would return it, read from
    the file's headers only (cheap: lets a job check a large .mat before starting)."""
    version = mat_version(path)
    if version == "7.3":
        import h5py

        try:
            with h5py.File(path, "r") as f:
                names = [k for k in f.keys() if not k.startswith("#")]
                dset = f[pick_array(path, names, variable)]
                return tuple(dset.shape[::-1]), dset.dtype.name
        except (OSError, KeyError, AttributeError) as e:
            raise DataError(f"{path}: unreadable MAT v7.3 file ({e})") from None
    import scipy.io

    try:
        found = {name: (shape, cls) for name, shape, cls in scipy.io.whosmat(path)}
    except Exception as e:  # scipy raises several types for corrupt files
        raise DataError(f"{path}: unreadable MAT v5 file ({e})") from None
    shape, cls = found[pick_array(path, list(found), variable)]
    return tuple(shape), cls


def load_mat_array(path: Path, variable: str | Sequence[str] | None = None) -> np.ndarray:
    """Load one array from a .mat file in C (row-major) order, as MATLAB indexes it.

    ``variable``: a name, or names in order of preference; otherwise (or when none is present)
    the only array in the file (:func:`pick_array`). v7.3 arrays are transposed back
    (HDF5 stores MATLAB's column-major data with reversed dimensions).
    """
    version = mat_version(path)
    if version == "7.3":
        import h5py

        try:
            with h5py.File(path, "r") as f:
                names = [k for k in f.keys() if not k.startswith("#")]
                name = pick_array(path, names, variable)
                arr = f[name][()]
        except (OSError, KeyError, AttributeError, TypeError) as e:
            raise DataError(f"{path}: unreadable MAT v7.3 file ({e})") from None
        return np.ascontiguousarray(arr.transpose(tuple(range(arr.ndim))[::-1]))
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several types for corrupt files
        raise DataError(f"{path}: unreadable MAT v5 file ({e})") from None
    names = [k for k in data if not k.startswith("__")]
    return np.asarray(data[pick_array(path, names, variable)])


def pick_array(path: str | Path, names: Sequence[str], wanted: str | Sequence[str] | None = None,
               what: str = "to read") -> str:
    """Which of a file's arrays ``names`` to read (.mat, .npz, .h5): the first of ``wanted``
    present, else the only array; DataError listing the arrays otherwise."""
    preferred = [wanted] if isinstance(wanted, str) else list(wanted or ())
    for name in preferred:
        if name in names:
            return name
    if len(names) == 1:
        return names[0]
    advice = "keep one array" + (f" or name it {' or '.join(preferred[:2])}" if preferred else "")
    raise DataError(f"{path}: cannot tell which array {what} (arrays: "
                    f"{', '.join(names) or 'none'}); {advice}")


"""Restore real photos with a trained model: any size, 8/16-bit PNG, JPEG or TIFF in and out.

Value spaces (`lpie_data.valuespace`): photos (PNG, JPEG, TIFF) are taken as sRGB, and `.npy`
arrays (float H x W x 3) as linear light, unless `EnhanceOptions.input_space` says otherwise. Each
image is mapped into the model's value space (from the run's model.json or the .tflite's
metadata), restored, and mapped back into the input's space: for a Reinhard-domain model an sRGB
photo goes sRGB -> linear -> Reinhard -> model -> linear -> sRGB. A model that records no value
space gets the stored values unchanged (and `EnhanceReport.notes` says so).

Each result is written into the output folder under the input's own file name and format, at the
input's size and bit depth:

- PNG: 8-bit or 16-bit RGB, like the input (16-bit goes through TensorFlow's encoder).
- JPEG: quality 95 with full-resolution chroma (4:4:4), EXIF and ICC profile copied from the input.
- TIFF: the input's dtype (uint8 or uint16), RGB, zlib compression.
- NPY: float32 H x W x 3 in the input's space (linear results may exceed 1).

Alpha channels are dropped (the network restores RGB). Large photos run in overlapping, blended
tiles (`lpie_model.runner.predict`), so memory stays bounded whatever the size. A compare image
(`<stem>_compare.png`: input | result, side by side, shown in sRGB, the input's bit depth; 16-bit
for .npy inputs) can be written too.
Nothing is overwritten unless asked; every file is written to a temporary name and renamed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lpie_data import storage
from lpie_data.errors import ConfigError, DataError, LpieError, OutputError
from lpie_data.images import (
    PHOTO_SUFFIXES,
    from_float,
    read_image,
    to_float,
    upright_exif,
    write_png,
)
from lpie_data.valuespace import check_space, convert
from lpie_model.runner import Runner, predict, unrecorded_space_note

JPEG_QUALITY = 95
COMPARE_SUFFIX = "_compare.png"
NPY_SUFFIX = ".npy"
INPUT_SUFFIXES = (*PHOTO_SUFFIXES, NPY_SUFFIX)


def file_space(path: Path) -> str:
    """The value space an input file is taken to be in: ``linear`` for .npy, else ``srgb``."""
    return "linear" if path.suffix.lower() == NPY_SUFFIX else "srgb"


@dataclass(frozen=True)
class EnhanceOptions:
    """How `enhance_images` runs.

    tile: largest tile side in pixels (0: whole image in one call); a fixed-size .tflite model
        uses its own size instead. overlap: pixels shared by neighbouring tiles (< tile / 2).
    compare: also write `<stem>_compare.png`. overwrite: replace existing output files.
    input_space: the value space of every input ("" = by file type, see `file_space`); e.g.
        the model's own space for inputs that are already in it.
    """

    tile: int = 1024
    overlap: int = 32
    compare: bool = False
    overwrite: bool = False
    input_space: str = ""

    def __post_init__(self) -> None:
        if self.input_space:
            check_space(self.input_space)
        if self.tile < 0:
            raise ConfigError(f"tile {self.tile}: must be >= 0 (0: no tiling)")
        if self.overlap < 0:
            raise ConfigError(f"overlap {self.overlap}: must be >= 0")
        if self.tile and 2 * self.overlap >= self.tile:
            raise ConfigError(
                f"overlap {self.overlap} must be less than half the tile ({self.tile})"
            )


@dataclass(frozen=True)
class Job:
    """One photo to restore and where its result (and compare image) go."""

    source: Path
    target: Path
    compare: Path | None = None


@dataclass
class EnhanceReport:
    """What `enhance_images` did: files written, and inputs skipped with the reason."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def expand_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """The photos named by `paths`: files as given, folders as their photo files (sorted).

    Missing files are kept (they are reported as unreadable later, with the others still run).
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(
                sorted(c for c in p.iterdir() if c.is_file() and c.suffix.lower() in INPUT_SUFFIXES)
            )
        else:
            out.append(p)
    return out


def plan(sources: Sequence[Path], out_dir: Path, options: EnhanceOptions) -> list[Job]:
    """Decide every output path before any work; refuse clashes and unwanted overwrites.

    Raises:
        DataError: no inputs at all (an unsupported or unreadable input is skipped later).
        OutputError: two inputs with the same file name, an output that would replace its own
            input, or existing outputs without `overwrite` (all listed).
    """
    if not sources:
        raise DataError(
            "no input images (folders given contained no PNG, JPEG, TIFF or .npy files)"
        )
    jobs: list[Job] = []
    owners: dict[Path, Path] = {}
    for src in sources:
        target = out_dir / src.name
        compare = out_dir / f"{src.stem}{COMPARE_SUFFIX}" if options.compare else None
        for dest in (target, compare):
            if dest is None:
                continue
            if dest in owners:
                raise OutputError(
                    f"{src} and {owners[dest]} would both be written to {dest}; "
                    "enhance them into different --out folders"
                )
            owners[dest] = src
            if dest.exists() and src.exists() and dest.resolve() == src.resolve():
                raise OutputError(
                    f"{src}: the output would replace the input; choose another --out"
                )
        jobs.append(Job(src, target, compare))
    if not options.overwrite:
        existing = [str(d) for d in owners if d.exists()]
        if existing:
            shown = ", ".join(existing[:5]) + (
                f" and {len(existing) - 5} more" if len(existing) > 5 else ""
            )
            raise OutputError(
                f"{len(existing)} output file(s) already exist: {shown}; "
                "use --overwrite to replace them"
            )
    return jobs


def restore(
    runner: Runner,
    image: np.ndarray,
    options: EnhanceOptions,
    progress: Callable[[int, int], None] | None = None,
    *,
    space: str = "srgb",
) -> np.ndarray:
    """Restore one H x W x 3 image whose values are in value space `space`.

    uint8 / uint16 photos come back in the same dtype; float arrays as float32 (a linear result
    may exceed 1). The image goes `space` -> the model's value space -> model -> `space`; with a
    model that records no value space the values are fed unchanged.
    """
    x = to_float(image)
    model_space = runner.value_space
    if model_space is not None:
        x = convert(x, space, model_space)
    out = np.clip(
        predict(runner, x, tile=options.tile or None, overlap=options.overlap, progress=progress),
        0.0, 1.0,
    )
    if model_space is not None:
        out = convert(out, model_space, space)
    if image.dtype in (np.uint8, np.uint16):
        return from_float(out, image.dtype)
    return out.astype(np.float32, copy=False)


def read_input(path: Path) -> np.ndarray:
    """A photo (uint8/uint16 H x W x 3, see `read_image`) or a .npy float array (H x W x 3)."""
    if path.suffix.lower() != NPY_SUFFIX:
        return _read(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read .npy ({e})") from None
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype.kind != "f":
        raise DataError(
            f"{path}: expected a float H x W x 3 array, got {array.dtype} of shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise DataError(f"{path}: holds non-finite values")
    return array.astype(np.float32, copy=False)


def compare_image(image: np.ndarray, result: np.ndarray, space: str) -> np.ndarray:
    """input | result side by side, in sRGB, uint8/uint16 like the input (uint16 for floats)."""
    dtype = image.dtype if image.dtype in (np.uint8, np.uint16) else np.dtype(np.uint16)
    both = np.concatenate([to_float(image), to_float(result)], axis=1)
    return from_float(convert(both, space, "srgb"), dtype)


def enhance_images(
    runner: Runner,
    sources: Sequence[Path],
    out_dir: str | Path,
    options: EnhanceOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EnhanceReport:
    """Restore each photo in `sources` into `out_dir` (see the module docstring for formats).

    Unreadable or unsupported images (any LpieError, and any error of the image decoders, such as
    Pillow's decompression-bomb guard) and results that cannot be written are skipped and listed
    in `report.failed` with the reason; the others are still written. `progress(done, total)`
    is called after each image.

    Raises:
        OutputError/DataError: from `plan` (before anything is written), or an unwritable folder.
    """
    options = options or EnhanceOptions()
    out_dir = Path(out_dir)
    jobs = plan(list(sources), out_dir, options)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out_dir}: cannot create folder ({e.strerror})") from None
    report = EnhanceReport()
    note = unrecorded_space_note(runner)
    if note:
        report.notes.append(note)
    if progress:
        progress(0, len(jobs))
    for done, job in enumerate(jobs, start=1):
        try:
            space = options.input_space or file_space(job.source)
            image = read_input(job.source)
            result = restore(runner, image, options, space=space)
            write_photo(job.target, result, like=job.source)
            report.written.append(job.target)
            if job.compare is not None:
                _write_atomic(job.compare, compare_image(image, result, space), write_png)
                report.written.append(job.compare)
        except LpieError as e:  # bad input, or this result not writable: on to the next one
            report.failed.append((job.source, str(e)))
        if progress:
            progress(done, len(jobs))
    return report


def _read(path: Path) -> np.ndarray:
    """`read_image`, with any decoder error (not only lpie's own) as a DataError naming `path`."""
    from PIL import Image

    try:
        return read_image(path)
    except LpieError:
        raise
    except (OSError, ValueError, MemoryError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------- writing


def write_photo(path: Path, image: np.ndarray, like: Path | None = None) -> None:
    """Write uint8/uint16 H x W x 3 `image` in the format of `path`'s suffix (atomically);
    .npy takes a float H x W x 3 array (written as float32).

    `like`: the source photo, whose EXIF and ICC profile a JPEG result keeps.
    """
    suffix = path.suffix.lower()
    if suffix == ".png":
        _write_atomic(path, image, write_png)
    elif suffix in (".jpg", ".jpeg"):
        if image.dtype != np.uint8:
            raise DataError(f"{path}: JPEG holds 8-bit images only, got {image.dtype}")
        _write_atomic(path, image, lambda p, a: _write_jpeg(p, a, like))
    elif suffix in (".tif", ".tiff"):
        _write_atomic(path, image, _write_tiff)
    elif suffix == NPY_SUFFIX:
        _write_atomic(path, image.astype(np.float32), _write_npy)
    else:
        raise DataError(f"{path}: unsupported output type (use PNG, JPEG, TIFF or .npy)")


def _write_npy(path: Path, image: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save(path) would append ".npy" to the temporary name
        np.save(f, image, allow_pickle=False)


def _write_jpeg(path: Path, image: np.ndarray, like: Path | None) -> None:
    from PIL import Image

    extra = {}
    if like is not None and like.suffix.lower() in (".jpg", ".jpeg"):
        try:
            with Image.open(like) as src:
                if src.info.get("icc_profile"):
                    extra["icc_profile"] = src.info["icc_profile"]
                if src.info.get("exif"):
                    extra["exif"] = upright_exif(src.info["exif"])  # pixels read upright
        except OSError:
            pass  # metadata is a courtesy; the pixels were already read successfully
    Image.fromarray(image).save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=0, **extra)


def _write_tiff(path: Path, image: np.ndarray) -> None:
    import tifffile

    tifffile.imwrite(path, image, photometric="rgb", compression="zlib")


def _write_atomic(
    path: Path, image: np.ndarray, writer: Callable[[Path, np.ndarray], None]
) -> None:
    """Write through `storage.atomic_path`: never a half-written file; OutputError naming
    `path` if it cannot be written."""
    with storage.atomic_path(path) as tmp:
        writer(Path(tmp), image)

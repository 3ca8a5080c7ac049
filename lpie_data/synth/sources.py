"""Clean source images x for the simulator: photo folders, .npy HDR folders, lpie datasets.

Every source image gets a stable key ``<label>/<name>`` (label: the folder's name; name: the
file's path inside it without suffix, or ``<split>/<index>`` for a dataset record); keys seed
the per-pair random generators and decide the train/validation split.

Loading returns linear light, float32 (H, W, 3), values >= 0:
- photos (8/16-bit PNG, JPEG, TIFF) scaled to [0, 1], linearised with the inverse sRGB curve
  unless ``source_space = "linear"``;
- ``.npy`` arrays (H, W, 3) as stored (e.g. UDC SYNTH ground truth in [0, 500]);
- dataset targets decoded from the value space they were stored in (record meta ``tone_map``,
  else the dataset's value space, :func:`lpie_data.valuespace.value_space_of`).

A dataset source uses its ``train`` split unless another is named (``DATASET:split``, e.g.
``data/udc:test``), so test records never become training data by accident. Every source image
has a ``group``: the image file it was cut from (a record's ``target_source`` or ``source``
meta), so that all pairs made from one image can go to the same synth split.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpie_data import storage
from lpie_data.errors import DataError
from lpie_data.images import PHOTO_SUFFIXES, check_photo_header, read_image, to_float
from lpie_data.synth.samples import sample_photo_files
from lpie_data.valuespace import TONE_MAP_SPACES, manifest_value_space, to_linear

NPY_SUFFIX = ".npy"
SOURCE_KINDS = ("photo", "npy", "record")


@dataclass(frozen=True)
class SourceImage:
    """One clean image. ``kind``: photo | npy | record. For records, ``path`` is the shard and
    ``offset``/``length`` locate the framed record; ``encoding`` is the dataset's value space;
    ``group`` names the image the record was cut from (empty: the source is its own image)."""

    key: str
    kind: str
    path: str
    offset: int = 0
    length: int = 0
    encoding: str = ""
    group: str = ""

    @property
    def image(self) -> str:
        """The source image this one was cut from: pairs of one image share a split."""
        return self.group or self.key


def _label(path: str) -> str:
    return storage.basename(str(path).rstrip("/")) or "source"


def _unique_labels(paths: list[str]) -> list[str]:
    """Folder names, lengthened with parent folders where two sources share a name."""
    parts = [[p for p in str(path).replace("\\", "/").split("/") if p] for path in paths]
    depth = [1] * len(paths)
    for _ in range(64):
        labels = ["/".join(p[-d:]) if p else "source" for p, d in zip(parts, depth, strict=True)]
        clashes = {lab for lab in labels if labels.count(lab) > 1}
        if not clashes:
            return labels
        for i, lab in enumerate(labels):
            if lab in clashes and depth[i] < len(parts[i]):
                depth[i] += 1
        if all(depth[i] >= len(parts[i]) for i, lab in enumerate(labels) if lab in clashes):
            break
    raise DataError(f"the same source is given twice: {', '.join(paths)}")


def _check_photo_header(path: Path) -> None:
    check_photo_header(path)


def _check_npy_header(path: Path) -> None:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # numpy raises ValueError/OSError/EOFError on bad files
        raise DataError(f"{path}: unreadable .npy file ({e})") from None
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"{path}: expected an H x W x 3 array, got shape {arr.shape}")


def _folder_sources(folder: Path, label: str) -> list[SourceImage]:
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in (*PHOTO_SUFFIXES, NPY_SUFFIX)
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        kinds = ", ".join((*PHOTO_SUFFIXES, NPY_SUFFIX))
        raise DataError(f"{folder}: no source images ({kinds}) in this folder")
    out = []
    for f in files:
        name = f.relative_to(folder).with_suffix("").as_posix()
        if f.suffix.lower() == NPY_SUFFIX:
            _check_npy_header(f)
            out.append(SourceImage(f"{label}/{name}", "npy", str(f)))
        else:
            _check_photo_header(f)
            out.append(SourceImage(f"{label}/{name}", "photo", str(f)))
    keys = [s.key for s in out]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise DataError(f"{folder}: files differ only by suffix: {', '.join(dup)}")
    return out


DEFAULT_DATASET_SPLIT = "train"


def split_dataset_path(raw: str) -> tuple[str, str | None]:
    """``DATASET:split`` -> (DATASET, split); (raw, None) when no split is named (a URL's
    ``scheme://`` or an existing path containing ':' is not a split)."""
    head, sep, tail = raw.rpartition(":")
    if not sep or not head or not tail or "/" in tail or "\\" in tail or storage.exists(raw):
        return raw, None
    return head, tail


def _dataset_sources(path: str, label: str, split: str | None) -> list[SourceImage]:
    from lpie_data.record_reader import record_meta, record_offsets
    from lpie_data.shards import read_manifest

    manifest = read_manifest(path)
    encoding = manifest_value_space(manifest)[0] or ""
    splits = manifest.get("splits", {})
    split = split or DEFAULT_DATASET_SPLIT
    if split not in splits:
        raise DataError(f"{path}: no split {split!r} to take source images from (splits: "
                        f"{', '.join(sorted(splits)) or 'none'}); name one as {path}:<split>")
    out = []
    index = 0
    for shard in splits[split].get("shards", []):
        shard_path = storage.join(path, shard["file"])
        if not storage.exists(shard_path):
            raise DataError(f"{shard_path}: shard listed in the manifest is missing")
        with storage.open_file(shard_path, "rb") as f:
            for offset, length in record_offsets(f, shard_path):
                meta = record_meta(f, offset, shard_path)
                image = meta.get("target_source") or meta.get("source")
                key = f"{label}/{split}/{index:06d}"
                group = f"{label}/{image}" if image else key
                out.append(SourceImage(key, "record", shard_path, offset, length, encoding,
                                       group))
                index += 1
    if not out:
        raise DataError(f"{path}: split {split!r} has no records")
    return out


def find_sources(paths: list[str]) -> list[SourceImage]:
    """Every source image under ``paths`` (photo / .npy folders, single files, lpie datasets),
    in a stable order; an empty list gives the built-in sample photos.

    Raises DataError naming the path for a missing path, an empty folder or a file whose
    header cannot be read (checked here so nothing is written for bad inputs).
    """
    if not paths:
        return [SourceImage(f"samples/{name}", "photo", str(p))
                for name, p in sample_photo_files().items()]
    named = [split_dataset_path(str(p)) for p in paths]
    # Absolute paths: workers (a Dask cluster's included) may run in another folder.
    paths = [p if storage.is_remote(p) else str(Path(p).resolve()) for p, _ in named]
    labels = _unique_labels([str(p) for p in paths])
    sources: list[SourceImage] = []
    for raw, label, (_, split) in zip(paths, labels, named, strict=True):
        raw = str(raw)
        if storage.is_remote(raw) or storage.exists(storage.join(raw, "manifest.json")):
            sources.extend(_dataset_sources(raw, label, split))
            continue
        if split is not None:
            raise DataError(f"{raw}: not an lpie dataset, so ':{split}' names no split")
        path = Path(raw)
        if path.is_dir():
            sources.extend(_folder_sources(path, label))
        elif path.is_file():
            suffix = path.suffix.lower()
            if suffix == NPY_SUFFIX:
                _check_npy_header(path)
                sources.append(SourceImage(f"{label}", "npy", str(path)))
            elif suffix in PHOTO_SUFFIXES:
                _check_photo_header(path)
                sources.append(SourceImage(f"{label}", "photo", str(path)))
            else:
                raise DataError(f"{path}: not a photo, .npy file or lpie dataset")
        else:
            raise DataError(f"{path}: no such file or folder")
    keys = [s.key for s in sources]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise DataError(f"two sources give the same image key(s): {', '.join(dup[:5])}")
    return sources


def _finish(image: np.ndarray, where: str) -> np.ndarray:
    if not np.all(np.isfinite(image)):
        raise DataError(f"{where}: source image has NaN or infinite values")
    np.maximum(image, 0.0, out=image)
    return image


def _decode_record(source: SourceImage, source_space: str) -> np.ndarray:
    from lpie_data.record_reader import example_to_pair, read_records

    with storage.open_file(source.path, "rb") as f:
        f.seek(source.offset)
        data = f.read(source.length)
    where = f"{source.path} (record at byte {source.offset})"
    payloads = list(read_records(io.BytesIO(data), where))
    if len(payloads) != 1:
        raise DataError(f"{where}: expected one record")
    pair = example_to_pair(payloads[0])
    target = np.array(pair.target, dtype=np.float32)
    space = TONE_MAP_SPACES.get(str(pair.meta.get("tone_map")), source.encoding)
    return to_linear(target, space or ("srgb" if source_space == "srgb" else "linear"))


def load_source(source: SourceImage, source_space: str = "srgb") -> np.ndarray:
    """Linear float32 (H, W, 3), values >= 0, of one source image; DataError naming the file."""
    if source.kind == "photo":
        image = to_linear(to_float(read_image(source.path)), source_space)
    elif source.kind == "npy":
        try:
            image = np.load(source.path, allow_pickle=False)
        except Exception as e:  # numpy raises ValueError/OSError/EOFError on bad files
            raise DataError(f"{source.path}: unreadable .npy file ({e})") from None
        if image.ndim != 3 or image.shape[2] != 3 or not np.issubdtype(image.dtype, np.number):
            raise DataError(
                f"{source.path}: expected an H x W x 3 numeric array, got {image.shape} "
                f"{image.dtype}"
            )
        image = np.array(image, dtype=np.float32)
    elif source.kind == "record":
        image = _decode_record(source, source_space)
    else:
        raise DataError(f"{source.key}: unknown source kind {source.kind!r}")
    return _finish(image, source.path)

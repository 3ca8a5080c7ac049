"""The TensorFlow Datasets description of an lpie dataset: ``dataset_info.json`` and
``features.json``, written next to ``manifest.json`` so that

    tfds.builder_from_directory(OUT).as_dataset(split="train")

reads the shards as they are (lpie already names shards the way TFDS does). Written by hand as
JSON: writing them needs neither TensorFlow nor tensorflow-datasets.

Each TFDS example holds ``key`` (bytes), ``input`` and ``target`` (the stored arrays, in their
stored dtype: ``uint8``/``uint16`` not scaled), ``height``, ``width`` (int64) and ``meta``
(the UTF-8 JSON bytes). TFDS's built-in ``Tensor`` feature decodes raw bytes with a static
width only, so the image shape in ``features.json`` is ``(H, W, 3)`` when every record of the
dataset has that size, ``(None, W, 3)`` when only the width is shared; otherwise the images
are stored flat in ``features.json`` and its top-level feature is lpie's own FeaturesDict
(:mod:`lpie_data.tfds_feature`, which TFDS imports by name: lpie must be installed where such a
dataset is read) that reshapes them to ``(height, width, 3)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from lpie_data import storage
from lpie_data.errors import DataError
from lpie_data.record_reader import _fields, _read_varint, decode_example, record_offsets
from lpie_data.shards import read_manifest

DATASET_INFO = "dataset_info.json"
FEATURES = "features.json"
#: The files that describe a dataset to TFDS (removed with the dataset by ``--overwrite``).
TFDS_FILES = (FEATURES, DATASET_INFO)
TFDS_FILES = (DATASET_INFO, FEATURES)
#: How lpie's shard names look to TFDS (``sidd-train.tfrecord-00000-of-00004``).
FILEPATH_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
_TFDS = "tensorflow_datasets.core.features."
_HEAD, _TAIL = 64, 48  # bytes of a record holding its first (height) and last (width) feature


def _read_span(f: Any, offset: int, n: int) -> bytes:
    f.seek(offset)
    return f.read(n)


def _header(buf: memoryview, pos: int) -> tuple[int, int]:
    """A length-delimited field's header at ``pos``: (payload length, payload position)."""
    _, pos = _read_varint(buf, pos)
    return _read_varint(buf, pos)


def _int_entry(entry: memoryview) -> tuple[str | None, int | None]:
    """(name, value) of one complete Features map entry holding an int64 feature."""
    name, value = None, None
    for num, _, v in _fields(entry):
        if num == 1:
            name = bytes(v).decode()
        elif num == 2:
            for kind, _, lst in _fields(v):
                for _, wire, packed in _fields(lst) if kind == 3 else ():
                    value = packed if wire == 0 else _read_varint(packed, 0)[0]
    return name, value


def _shape_from_ends(head: bytes, tail: bytes) -> tuple[int, int] | None:
    """Height and width of a record from its first and last bytes (lpie writes the features
    in sorted name order: ``height`` first, ``width`` last); None where they do not parse."""
    try:
        buf = memoryview(head)
        _, pos = _header(buf, 0)  # Example.features
        n, pos = _header(buf, pos)  # its first map entry
        if pos + n > len(buf):
            return None
        name, height = _int_entry(buf[pos : pos + n])
        marker = tail.rfind(b"\n\x05width")
        if name != "height" or height is None or marker < 2:
            return None
        n = tail[marker - 1]
        if marker + n != len(tail):  # the width entry must end the record
            return None
        name, width = _int_entry(memoryview(tail)[marker:])
        if name != "width" or width is None:
            return None
        return int(height), int(width)
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def _record_shapes(path: str) -> Iterator[tuple[int, int]]:
    """(height, width) of every record of one shard, reading only a few bytes of each."""
    with storage.open_file(path, "rb") as f:
        spans = record_offsets(f, path)
        for offset, length in spans:
            payload = length - 16
            head = _read_span(f, offset + 12, min(_HEAD, payload))
            tail = _read_span(f, offset + 12 + max(0, payload - _TAIL), min(_TAIL, payload))
            shape = _shape_from_ends(head, tail)
            if shape is None:  # not laid out as lpie writes it: parse the whole record
                fields = decode_example(_read_span(f, offset + 12, payload))
                shape = int(fields["height"]), int(fields["width"])
            yield shape


def dataset_shapes(path: str, manifest: dict[str, Any]) -> set[tuple[int, int]]:
    """Every (height, width) that occurs in the dataset's shards."""
    shapes: set[tuple[int, int]] = set()
    for entry in manifest["splits"].values():
        for shard in entry["shards"]:
            shapes.update(_record_shapes(storage.join(path, shard["file"])))
    return shapes


def image_shape(shapes: set[tuple[int, int]]) -> list[int]:
    """The TFDS tensor shape (-1 = any) of the images, given every (height, width) stored."""
    heights, widths = {h for h, _ in shapes}, {w for _, w in shapes}
    if len(widths) != 1:
        return [-1]
    (width,) = widths
    return [heights.pop() if len(heights) == 1 else -1, width, 3]


def _tensor(shape: list[int], dtype: str, description: str, encoding: str = "none") -> dict:
    spec: dict[str, Any] = {"shape": {"dimensions": [str(d) for d in shape]} if shape else {},
                            "dtype": dtype, "encoding": encoding}
    cls = "scalar.Scalar" if not shape else "tensor_feature.Tensor"
    return {"pythonClassName": _TFDS + cls, "tensor": spec, "description": description}


def _text(description: str) -> dict:
    return {"pythonClassName": _TFDS + "text_feature.Text", "text": {},
            "description": description}


def features_json(manifest: dict[str, Any], shape: list[int]) -> dict[str, Any]:
    """``features.json``: a FeaturesDict whose names are the records' own feature names."""
    dtypes = {(e["input_dtype"], e["target_dtype"]) for e in manifest["splits"].values()}
    if len(dtypes) != 1:
        raise DataError(f"splits store different dtypes {sorted(dtypes)}: TFDS needs one "
                        "feature spec for the whole dataset")
    ((input_dtype, target_dtype),) = dtypes
    # Images of several widths: TFDS's FeaturesDict would return them flat; lpie's subclass
    # (imported by TFDS from this name) reshapes them to height x width x 3.
    kind = "lpie_data.tfds_feature.LpiePairFeatures" if len(shape) == 1 else (
        _TFDS + "features_dict.FeaturesDict")
    return {
        "type": kind,
        "content": {"features": {
            "key": _text("unique key of the example within its split"),
            "input": _tensor(shape, input_dtype, f"the degraded image, {input_dtype}, as "
                             f"stored (integers span [0, 1] over their full range)",
                             "bytes"),
            "target": _tensor(shape, target_dtype, f"the clean image, {target_dtype}, as "
                              f"stored", "bytes"),
            "height": _tensor([], "int64", "image height"),
            "width": _tensor([], "int64", "image width"),
            "meta": _text("UTF-8 JSON object: source, box and what the command recorded"),
        }},
        "proto_cls": "tensorflow_datasets.FeaturesDict",
    }


def dataset_info_json(manifest: dict[str, Any]) -> dict[str, Any]:
    """``dataset_info.json``: name, description, split sizes and shard lengths."""
    splits = []
    for split, entry in sorted(manifest["splits"].items()):
        splits.append({
            "name": split,
            "numBytes": str(entry["bytes"]),
            "shardLengths": [str(s["examples"]) for s in entry["shards"]],
            "filepathTemplate": FILEPATH_TEMPLATE,
        })
    command = manifest.get("command", "lpie-data")
    arguments = json.dumps(manifest.get("arguments", {}), sort_keys=True)
    return {
        "name": manifest["name"],
        "description": (f"lpie image-restoration pairs written by `lpie-data {command}` "
                        f"(lpie {manifest.get('lpie_version', '?')}, format "
                        f"{manifest['format']} v{manifest['format_version']}) with arguments "
                        f"{arguments}. Each example: key, input (degraded), target (clean), "
                        "height, width, meta (JSON). See docs/format.md of lpie."),
        "version": "1.0.0",
        "moduleName": "lpie_data",
        "fileFormat": "tfrecord",
        "disableShuffling": True,  # records are stored in a fixed, meaningful order
        "supervisedKeys": {"tuple": {"items": [{"featureKey": "input"},
                                               {"featureKey": "target"}]}},
        "splits": splits,
    }


def single_dtypes(manifest: dict[str, Any]) -> bool:
    """True when every split stores the same dtypes (TFDS has one feature spec per dataset)."""
    return len({(e["input_dtype"], e["target_dtype"])
                for e in manifest["splits"].values()}) == 1


def write_tfds_info(path: str, manifest: dict[str, Any] | None = None,
                    *, skip_unsupported: bool = False) -> tuple[str, str] | None:
    """Write ``dataset_info.json`` and ``features.json`` for the dataset at ``path`` (local or
    a tf.io.gfile URL). ``manifest``: the dataset's manifest when it is not written yet (a job
    finishing); otherwise it is read. Returns the two paths. Raises DataError, e.g. where
    splits store different dtypes, unless ``skip_unsupported`` (then writes nothing, removes
    the description an earlier dataset in ``path`` left, and returns None)."""
    path = str(path)
    manifest = manifest if manifest is not None else read_manifest(path)
    if skip_unsupported and not single_dtypes(manifest):
        for name in TFDS_FILES:  # it would describe other shards
            if storage.exists(storage.join(path, name)):
                storage.remove(storage.join(path, name))
        return None
    shape = image_shape(dataset_shapes(path, manifest))
    written = []
    for name, content in ((FEATURES, features_json(manifest, shape)),
                          (DATASET_INFO, dataset_info_json(manifest))):
        target = storage.join(path, name)
        storage.write_atomic(target, (json.dumps(content, indent=2) + "\n").encode())
        written.append(target)
    return written[0], written[1]

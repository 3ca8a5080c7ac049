"""Reading and writing .tflite flatbuffers: the ops a model uses (builtin only?) and lpie's
metadata entry (what the model says about itself)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lpie_data.errors import DataError, LpieError


class ExportError(LpieError):
    """The converter failed, or produced ops that a stock TFLite runtime cannot run."""


def op_names(content: bytes) -> list[str]:
    """Sorted distinct op names of a .tflite flatbuffer ("CONV_2D", ..., custom ops by code)."""
    from ai_edge_litert import schema_py_generated as schema

    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    try:
        model = schema.Model.GetRootAs(content, 0)
        names = set()
        for s in range(model.SubgraphsLength()):
            sub = model.Subgraphs(s)
            for i in range(sub.OperatorsLength()):
                opcode = model.OperatorCodes(sub.Operators(i).OpcodeIndex())
                code = max(opcode.BuiltinCode(), opcode.DeprecatedBuiltinCode())
                if code == schema.BuiltinOperator.CUSTOM:
                    names.add((opcode.CustomCode() or b"CUSTOM").decode())
                else:
                    names.add(codes.get(code, f"BUILTIN_{code}"))
    except Exception as e:  # a truncated or foreign file raises from deep inside flatbuffers
        raise DataError(f"not a readable .tflite model ({e})") from None
    return sorted(names)


def check_builtin_ops(content: bytes) -> list[str]:
    """The model's op names; raises ExportError naming any Flex (TF) or custom op."""
    names = op_names(content)
    from ai_edge_litert import schema_py_generated as schema

    builtin = {k for k in vars(schema.BuiltinOperator) if not k.startswith("_")} - {"CUSTOM"}
    bad = [n for n in names if n not in builtin]
    if bad:
        raise ExportError(
            f"the converted model needs non-builtin ops {', '.join(bad)} "
            "(Flex/custom ops do not run on a stock TFLite runtime)"
        )
    return names


METADATA_NAME = "lpie"


def add_metadata(content: bytes, info: dict[str, Any], name: str = METADATA_NAME) -> bytes:
    """The .tflite flatbuffer `content` with `info` as JSON in its `Model.metadata` entry `name`.

    The entry's buffer holds UTF-8 JSON; an earlier entry of that name is replaced and the
    converter's own entries (e.g. "min_runtime_version") are kept. Readable with
    `read_metadata`, or with any flatbuffer reader of the TFLite schema.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    except Exception as e:  # flatbuffers raises from deep inside on foreign bytes
        raise DataError(f"not a readable .tflite model ({e})") from None
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(info, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers = list(model.buffers or [])
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) != name]
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers)
    model.buffers.append(buffer)
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(model: bytes | str | Path, name: str = METADATA_NAME) -> dict[str, Any] | None:
    """The JSON object of a .tflite's metadata entry `name` (see `add_metadata`); None without it.

    `model`: the flatbuffer's bytes or a local path. Raises DataError for unreadable files.
    """
    from ai_edge_litert import schema_py_generated as schema

    where = "model"
    if not isinstance(model, bytes):
        where = str(model)
        try:
            model = Path(model).read_bytes()
        except OSError as e:
            raise DataError(f"{where}: cannot read ({e.strerror})") from None
    try:
        root = schema.Model.GetRootAs(model, 0)
        for i in range(root.MetadataLength()):
            entry = root.Metadata(i)
            if _text(entry.Name()) == name:
                data = root.Buffers(entry.Buffer()).DataAsNumpy()
                info = json.loads(bytes(data).decode())
                return info if isinstance(info, dict) else None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{where}: unreadable {name!r} metadata ({e})") from None
    except Exception as e:  # a truncated or foreign file raises from deep inside flatbuffers
        raise DataError(f"{where}: not a readable .tflite model ({e})") from None
    return None


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")

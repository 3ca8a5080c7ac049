"""JSON files: values made strict-JSON-safe, read and written (atomically) in one place.

Used for manifests' config tables, run folders (``model.json``, ``recipe.json``), evaluation
and export reports. Local paths and URLs (``gs://``, ``ram://``) alike, through
:mod:`lpie_data.storage`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from lpie_data import storage
from lpie_data.errors import OutputError


def json_safe(value: Any, *, non_finite: Literal["string", "null"] = "string") -> Any:
    """``value`` as plain, strict JSON data: dicts and lists (tuples become lists), numpy
    scalars as Python numbers; a non-finite float becomes its name (``"inf"``, ``"-inf"``,
    ``"nan"``: configs keep meaning it) or, with ``non_finite="null"``, ``None`` (scores)."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value) if non_finite == "string" else None
    if isinstance(value, dict):
        return {k: json_safe(v, non_finite=non_finite) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, non_finite=non_finite) for v in value]
    return value


def read_json(path: str | Path, *, what: str = "JSON", hint: str = "") -> Any:
    """Parse the JSON file at ``path`` (local or URL); a file that does not parse is an
    OutputError naming it: ``PATH: damaged WHAT (Error: detail); HINT``."""
    with storage.open_file(str(path), "rb") as f:
        data = f.read()
    try:
        return json.loads(data)
    except ValueError as e:
        tail = f"; {hint}" if hint else ""
        raise OutputError(f"{path}: damaged {what} ({type(e).__name__}: {e}){tail}") from None


def write_json(path: str | Path, data: Any, *, sort_keys: bool = True) -> None:
    """Write ``data`` as indented JSON (and a final newline) through a temporary file and a
    rename; the parent folder is created. OutputError naming ``path`` if it cannot be written."""
    path = str(path)
    text = json.dumps(data, indent=2, sort_keys=sort_keys) + "\n"
    try:
        if not storage.is_remote(path) and Path(path).parent != Path("."):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        storage.write_atomic(path, text.encode())
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None

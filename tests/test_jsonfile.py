"""The one JSON-safe conversion, JSON writer and atomic write (lpie_data.jsonfile, storage)."""

import json
import math

import numpy as np
import pytest

from lpie_data import storage
from lpie_data.errors import OutputError
from lpie_data.jsonfile import json_safe, read_json, write_json


def test_json_safe_converts_tuples_numpy_and_non_finite():
    value = {"a": (1, 2.5), "b": [math.inf, {"c": -math.inf}], "d": np.float32(0.5),
             "e": math.nan, "f": None}
    assert json_safe(value) == {"a": [1, 2.5], "b": ["inf", {"c": "-inf"}], "d": 0.5,
                                "e": "nan", "f": None}
    assert json_safe(value, non_finite="null")["b"] == [None, {"c": None}]
    json.dumps(json_safe(value), allow_nan=False)  # strict JSON


def test_write_json_round_trip_sorted_and_atomic(tmp_path):
    path = tmp_path / "deep" / "x.json"
    write_json(path, {"b": 1, "a": [1, 2]})
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert read_json(path) == {"b": 1, "a": [1, 2]}
    write_json(path, {"b": 1, "a": 2}, sort_keys=False)
    assert path.read_text().index('"b"') < path.read_text().index('"a"')
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.json"]  # no temporary left
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        write_json(tmp_path / "file" / "x.json", {})


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "out.bin"
    storage.write_atomic(str(path), b"old")
    with pytest.raises(RuntimeError), storage.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("writer failed")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]

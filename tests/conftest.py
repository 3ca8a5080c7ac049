"""Shared fixtures. Dataset trees that mirror the real layouts live in ``tests/fixtures/``
(``from fixtures.sidd import make_sidd_tree``); pytest puts this folder on ``sys.path``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.sidd import make_sidd_tree, make_validation
from typer.testing import CliRunner

from lpie_data.cli import app as data_app


@pytest.fixture(scope="session")
def sidd_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SIDD-Medium tree prepared by ``lpie-data prepare sidd --tile 32``: 24 train tiles
    (uint8 sRGB) and 2 validation blocks. Shared by every test: copy it before changing it."""
    base = tmp_path_factory.mktemp("sidd")
    root = make_sidd_tree(base)
    make_validation(root, "5", n=1, b=2)
    out = base / "ds"
    r = CliRunner().invoke(data_app, ["prepare", "sidd", "--root", str(root), "--out", str(out),
                                      "--tile", "32", "--jobs", "1"])
    assert r.exit_code == 0, r.output
    return out

"""bench/perpair.py: the benches say when the host reclaims the VM's memory (the sysfs files
Linux shows for free page reporting and DAMON, copied here with their names and values)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import perpair  # noqa: E402


@pytest.fixture
def sysfs(tmp_path, monkeypatch):
    params = tmp_path / "module/page_reporting/parameters"
    params.mkdir(parents=True)
    for name, value in {"page_reporting_order": "5\n", "min_free_ms": "0\n",
                        "reported_kib": "52000000\n", "free_bitmap_enable": "Y\n"}.items():
        (params / name).write_text(value)
    scheme = tmp_path / "kdamonds/0/contexts/0/schemes/0"
    scheme.mkdir(parents=True)
    (scheme / "action").write_text("pageout\n")
    (tmp_path / "kdamonds/0/state").write_text("on\n")
    (tmp_path / "kdamonds/1/contexts/0/schemes/0").mkdir(parents=True)  # off: not listed
    (tmp_path / "kdamonds/1/contexts/0/schemes/0/action").write_text("hugepage\n")
    (tmp_path / "kdamonds/1/state").write_text("off\n")
    monkeypatch.setattr(perpair, "PAGE_REPORTING", params)
    monkeypatch.setattr(perpair, "DAMON", tmp_path / "kdamonds")
    return params


def test_host_memory_reports_page_reporting_and_damon(sysfs):
    host = perpair.host_memory(reported_kib_before=52000000 - 10 * 1024)
    assert host["free_page_reporting"] == {"order": "5", "min_free_ms": "0",
                                           "reported_mib_during_run": 10}
    assert host["damon_schemes"] == ["pageout"]
    assert "reclaims" in host["note"]
    assert perpair.host_memory()["free_page_reporting"]["reported_mib_during_run"] is None


def test_host_memory_is_empty_without_them(tmp_path, monkeypatch):
    monkeypatch.setattr(perpair, "PAGE_REPORTING", tmp_path / "none")
    monkeypatch.setattr(perpair, "DAMON", tmp_path / "none2")
    assert perpair.host_memory(123) == {}

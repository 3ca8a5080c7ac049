"""Benchmark: multiply-add counts (known answers), latency/memory records, CLI and help."""

import json

import keras
import pytest
from typer.testing import CliRunner

from lpie_model import build_lpienet
from lpie_model import convert as cv
from lpie_model.benchmark import benchmark, count_macs, format_table
from lpie_model.cli import app

BASE_MACS_256 = 18_281 * 256 * 256  # lpienet.md: 1.198 G at 256x256, ~18.3 k per pixel


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_lpienet("base")


def test_macs_known_answers(model):
    assert count_macs(model, 256, 256) == BASE_MACS_256
    assert count_macs(model, 512, 1024) == 8 * BASE_MACS_256  # per pixel, any multiple of 4
    assert count_macs(model, 37, 53) == count_macs(model, 40, 56)  # padded to a multiple of 4
    assert count_macs(build_lpienet("large"), 256, 256) == 4_391_632_896  # 4.39 G (lpienet.md)


def test_benchmark_records_latency_and_memory(model):
    result = benchmark(model, sizes=[(32, 32)], precisions=["fp32"], threads=1, runs=2, warmup=1)
    assert result["params"] == 133_652 and result["threads"] == 1
    (row,) = result["rows"]
    assert row["macs"] == count_macs(model, 32, 32)
    assert len(row["times_s"]) == 2 and row["median_s"] > 0 and row["min_s"] <= row["median_s"]
    assert row["peak_mib"] > 0 and row["model_mib"] is not None
    header, line = format_table(result)
    assert header[:3] == ["Resolution", "GMACs", "GFLOPs"] and line[0] == "32x32"


def test_export_needs_half_the_plain_builds_indirection_memory(model):
    from lpie_model.benchmark import indirection_bytes
    from lpie_model.deploy import rebuild_for_shape

    size = (64, 96)
    plain = cv.convert_keras(rebuild_for_shape(model, *size, fused_attention=True), size=size)
    export = cv.convert(model, size=size, memory="low")  # auto: "fast" at this size
    # Known answer for the plain build: full-res 3x3 convs (enc1 conv, 2 dw, attention conv,
    # head dw) and the 7x7 / 5x5 / 3x3 gate, then the half and quarter resolution stages.
    px = size[0] * size[1]
    full = px * (5 * 9 + 49 + 25 + 9)
    assert indirection_bytes(plain) == 8 * (full + 8 * 9 * px // 4 + 8 * 9 * px // 16)
    assert indirection_bytes(export) <= 0.5 * indirection_bytes(plain)


def test_cli_benchmark_macs_only(tmp_path):
    out = tmp_path / "bench.json"
    args = ["benchmark", "--size", "256x256", "--size", "1080x1920", "--no-latency"]
    result = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "1.198" in result.output and "1080x1920 (FHD)" in result.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["macs"] for r in rows] == [BASE_MACS_256, count_macs(build_lpienet(), 1080, 1920)]


def test_cli_benchmark_tflite_file(model, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(cv.convert(model, size=(32, 32)))
    out = tmp_path / "bench.json"
    args = ["benchmark", str(path), "--threads", "1", "--runs", "2", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["rows"]
    assert (row["height"], row["width"], row["precision"]) == (32, 32, "fp32")


def test_cli_errors_are_clean():
    result = CliRunner().invoke(app, ["benchmark", "--size", "12", "--no-latency"])
    assert result.exit_code == 1 and "HxW" in result.output


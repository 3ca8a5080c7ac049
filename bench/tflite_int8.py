"""int8 benches behind `bench/tflite_latency.py elu` and `bench/tflite_latency.py oneconv`.

    # the int8 export (ELU in int8, identity clip dropped) against the quantizer's own graph
    python bench/tflite_latency.py elu build/elu --sizes 256x256,800x800 --threads 2
    # one 3x3 conv 32->32 at 800x800, fp32 against int8: what this CPU's int8 kernels give
    python bench/tflite_latency.py oneconv --threads 2
    # what an ELU and the output clip cost in int8, before and after the rewrites
    python bench/tflite_latency.py parts --threads 1,2

Both time their models in interleaved rounds (every model in every round, each warmed up
first, interpreters kept for all rounds) and report wall-clock and process CPU time per
inference (median over rounds x runs); ratios are taken between models of the same run.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from pathlib import Path

WARMUP_S = 1.0
INT8_VARIANTS = ("int8-quantizer", "int8-elu", "int8")


def ab_time(models: dict[str, Path], threads: int, rounds: int, runs: int) -> dict[str, dict]:
    """Median wall and CPU seconds per inference of each model, in interleaved rounds."""
    from ai_edge_litert.interpreter import Interpreter

    from lpie_model.runtime import random_input

    its = {}
    for name, path in models.items():
        it = Interpreter(model_path=str(path), num_threads=threads)
        it.allocate_tensors()
        detail = it.get_input_details()[0]
        it.set_tensor(detail["index"], random_input(detail))
        its[name] = it
    wall: dict[str, list[float]] = {n: [] for n in its}
    cpu: dict[str, list[float]] = {n: [] for n in its}
    for r in range(rounds):
        for name, it in its.items():
            t_start = time.perf_counter()
            while time.perf_counter() - t_start < WARMUP_S:
                it.invoke()
            for _ in range(runs):
                w0, c0 = time.perf_counter(), time.process_time()
                it.invoke()
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return {
        n: {
            "wall_s": statistics.median(wall[n]),
            "cpu_s": statistics.median(cpu[n]),
            "n": len(wall[n]),
        }
        for n in its
    }


def graph_facts(path: Path) -> dict:
    """Op counts of the interpreter's graph and the number of XNNPACK partitions."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=2)
    it.allocate_tensors()
    ops = Counter(d["op_name"] for d in it._get_ops_details())
    partitions = ops.pop("DELEGATE", 0)
    return {"ops": dict(ops), "xnnpack_partitions": partitions}


def make_elu(folder: Path, sizes: list[tuple[int, int]]) -> None:
    """Per size: fp32 export; int8 as the quantizer leaves it ("int8-quantizer"), with only
    ELU made int8 ("int8-elu"), and with every rewrite, as exported ("int8")."""
    import keras

    from lpie_model import convert as cv
    from lpie_model import samples as smp
    from lpie_model.int8_rewrite import int8_elu, rewrite_int8
    from lpie_model.lpienet import build_lpienet

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = build_lpienet("base")
    photos = [img for _, img in smp.sample_photos()]
    # Calibrate on the first two photos; the third is held out for the PSNR check.
    crops = smp.calibration_crops(photos[:2], count=8, crop=(256, 256), per_image=4)
    for h, w in sizes:
        tag = f"{h}x{w}"
        raw = cv.convert(
            model, precision="int8", size=(h, w), calibration=crops, simplify_int8=False
        )
        files = {
            "fp32": cv.convert(model, size=(h, w)),
            "int8-quantizer": raw,
            "int8-elu": int8_elu(raw),
            "int8": rewrite_int8(raw),
        }
        for variant, content in files.items():
            (folder / f"{variant}-{tag}.tflite").write_bytes(content)
            print(f"{variant}-{tag}.tflite: {len(content)} bytes", flush=True)


def elu(folder: Path, sizes: list[tuple[int, int]], threads: int, rounds: int, runs: int) -> dict:
    """Graph facts, held-out PSNR against fp32 and the interleaved latency ratio per size."""
    import numpy as np

    from lpie_model import runtime as rt
    from lpie_model import samples as smp

    held_out = [img for _, img in smp.sample_photos()][2]
    rows = []
    for h, w in sizes:
        tag = f"{h}x{w}"
        paths = {v: folder / f"{v}-{tag}.tflite" for v in ("fp32", *INT8_VARIANTS)}
        x = smp.fit_to_size(held_out, (h, w))
        ref = rt.LiteRTRunner(paths["fp32"], threads)(x)
        psnr, facts = {}, {}
        for v in INT8_VARIANTS:
            got = rt.LiteRTRunner(paths[v], threads)(x)
            psnr[v] = float(10 * np.log10(1.0 / max(np.mean((got - ref) ** 2), 1e-12)))
            facts[v] = graph_facts(paths[v])
        timed = ab_time({v: paths[v] for v in INT8_VARIANTS}, threads, rounds, runs)
        base = timed["int8-quantizer"]
        rows.append(
            {
                "size": tag,
                "psnr_vs_fp32_db": psnr,
                "graph": facts,
                "time": timed,
                "wall_ratio": {v: timed[v]["wall_s"] / base["wall_s"] for v in INT8_VARIANTS},
                "cpu_ratio": {v: timed[v]["cpu_s"] / base["cpu_s"] for v in INT8_VARIANTS},
            }
        )
    return {"threads": threads, "rounds": rounds, "runs": runs, "rows": rows}


def elu_table(result: dict) -> str:
    lines = [
        f"{result['threads']} thread(s), {result['rounds']} interleaved rounds x "
        f"{result['runs']} runs; ratios against int8-quantizer",
        "",
        "| size | int8 file | wall (s) | CPU (s) | x wall / CPU | PSNR vs fp32 (dB) | "
        "QUANTIZE+DEQUANTIZE | MINIMUM | XNNPACK partitions |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        for v in INT8_VARIANTS:
            t, g = r["time"][v], r["graph"][v]
            qd = g["ops"].get("QUANTIZE", 0) + g["ops"].get("DEQUANTIZE", 0)
            lines.append(
                f"| {r['size']} | {v} | {t['wall_s']:.4f} | {t['cpu_s']:.4f} | "
                f"{r['wall_ratio'][v]:.2f} / {r['cpu_ratio'][v]:.2f} | "
                f"{r['psnr_vs_fp32_db'][v]:.2f} | {qd} | {g['ops'].get('MINIMUM', 0)} | "
                f"{g['xnnpack_partitions']} |"
            )
    return "\n".join(lines)


def make_oneconv(folder: Path, size: tuple[int, int], channels: int) -> dict[str, Path]:
    """One 3x3 conv (channels -> channels, bias, no activation): fp32, and int8 with int8 I/O
    (so that the int8 file is the convolution alone, no QUANTIZE / DEQUANTIZE)."""
    import keras
    import numpy as np
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    inp = keras.Input((*size, channels), batch_size=1)
    model = keras.Model(inp, keras.layers.Conv2D(channels, 3, padding="same")(inp))
    rng = np.random.default_rng(0)
    out = {}
    for precision in ("fp32", "int8"):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if precision == "int8":

            def representative():  # noqa: ANN202 - the converter's generator protocol
                for _ in range(4):
                    yield [rng.standard_normal((1, *size, channels)).astype(np.float32)]

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        path = folder / f"oneconv-{precision}-{size[0]}x{size[1]}x{channels}.tflite"
        path.write_bytes(converter.convert())
        out[precision] = path
    return out


def oneconv(
    folder: Path, size: tuple[int, int], channels: int, threads: int, rounds: int, runs: int
) -> dict:
    """int8 vs fp32 latency of one convolution layer, interleaved, in the same interpreter."""
    paths = make_oneconv(folder, size, channels)
    facts = {p: graph_facts(path) for p, path in paths.items()}
    timed = ab_time(paths, threads, rounds, runs)
    macs = size[0] * size[1] * channels * channels * 9
    return {
        "size": list(size),
        "channels": channels,
        "gmacs": macs / 1e9,
        "threads": threads,
        "rounds": rounds,
        "runs": runs,
        "graph": facts,
        "time": timed,
        "wall_ratio": timed["int8"]["wall_s"] / timed["fp32"]["wall_s"],
        "cpu_ratio": timed["int8"]["cpu_s"] / timed["fp32"]["cpu_s"],
    }


def oneconv_table(r: dict) -> str:
    (h, w), c = r["size"], r["channels"]
    a, b = r["time"]["fp32"], r["time"]["int8"]
    return "\n".join(
        [
            f"one 3x3 conv {c}->{c} at {h}x{w} ({r['gmacs']:.2f} GMACs), {r['threads']} "
            f"thread(s), {r['rounds']} interleaved rounds x {r['runs']} runs",
            "",
            "| build | wall (s) | CPU (s) | GMAC/s (wall) | XNNPACK partitions |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| fp32 | {a['wall_s']:.4f} | {a['cpu_s']:.4f} | {r['gmacs'] / a['wall_s']:.1f} | "
            f"{r['graph']['fp32']['xnnpack_partitions']} |",
            f"| int8 | {b['wall_s']:.4f} | {b['cpu_s']:.4f} | {r['gmacs'] / b['wall_s']:.1f} | "
            f"{r['graph']['int8']['xnnpack_partitions']} |",
            "",
            f"int8 / fp32: {r['wall_ratio']:.2f}x wall, {r['cpu_ratio']:.2f}x CPU",
        ]
    )


PARTS = {
    "convs16": (16, None),
    "elu": (16, "elu"),
    "convs3": (3, None),
    "clip": (3, "clip"),
}


def make_parts(folder: Path, size: tuple[int, int]) -> dict[str, Path]:
    """Two 1x1 convs with nothing, an ELU or LPIENet's output clip between them, int8 with
    int8 I/O, each as the quantizer leaves it and (ELU, clip) after `rewrite_int8`."""
    import keras
    import numpy as np
    import tensorflow as tf

    from lpie_model.int8_rewrite import rewrite_int8

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (ch, between) in PARTS.items():
        keras.utils.set_random_seed(0)
        inp = keras.Input((*size, ch), batch_size=1)
        x = keras.layers.Conv2D(ch, 1)(inp)
        if between == "elu":
            x = keras.layers.ELU()(x)
        elif between == "clip":
            x = keras.layers.ReLU()(keras.ops.minimum(x, 1.0 - 1e-5))
        model = keras.Model(inp, keras.layers.Conv2D(ch, 1)(x))
        rng = np.random.default_rng(0)
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda rng=rng, ch=ch: (
            [rng.standard_normal((1, *size, ch)).astype(np.float32)] for _ in range(2)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        content = bytes(converter.convert())
        out[name] = folder / f"{name}.tflite"
        out[name].write_bytes(content)
        if between is not None:
            out[f"{name}-rewritten"] = folder / f"{name}-rewritten.tflite"
            out[f"{name}-rewritten"].write_bytes(rewrite_int8(content))
    return out


def parts(folder: Path, size: tuple[int, int], threads: list[int], rounds: int, runs: int) -> dict:
    """CPU and wall time of each part model (`make_parts`) per thread count, interleaved."""
    paths = make_parts(folder, size)
    return {
        "size": list(size),
        "rounds": rounds,
        "runs": runs,
        "graph": {n: graph_facts(p) for n, p in paths.items()},
        "time": {str(t): ab_time(paths, t, rounds, runs) for t in threads},
    }


def parts_table(result: dict) -> str:
    h, w = result["size"]
    threads = list(result["time"])
    lines = [
        f"two 1x1 int8 convs at {h}x{w} with a part between, {result['rounds']} interleaved "
        f"rounds x {result['runs']} runs; ms per inference, CPU / wall",
        "",
        "| model | ops | XNNPACK partitions | "
        + " | ".join(f"{t} thread(s)" for t in threads)
        + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in threads) + " |",
    ]
    for name, g in result["graph"].items():
        ops = ", ".join(f"{k} {v}" for k, v in sorted(g["ops"].items()))
        cells = [
            f"{result['time'][t][name]['cpu_s'] * 1e3:.2f} / "
            f"{result['time'][t][name]['wall_s'] * 1e3:.2f}"
            for t in threads
        ]
        lines.append(f"| {name} | {ops} | {g['xnnpack_partitions']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

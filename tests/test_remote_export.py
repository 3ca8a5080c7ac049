"""Exported models may live at any tf.io.gfile path: export to TensorFlow's in-memory ram://."""

import json

import numpy as np
import pytest

from lpie_data import storage


def test_export_to_ram_filesystem_and_run_from_there():
    from ai_edge_litert.interpreter import Interpreter

    from lpie_model import build_lpienet
    from lpie_model.export import export_tflite

    model = build_lpienet(widths=(4, 8, 4))
    image = np.random.default_rng(0).random((24, 40, 3), dtype=np.float32)
    out = "ram://lpie-export-test/model.tflite"
    report = export_tflite(model, out, precision="fp32", parity_images=[("r", image)])
    with storage.open_file(out, "rb") as f:
        content = f.read()
    with storage.open_file("ram://lpie-export-test/model.json", "rb") as f:
        written = json.loads(f.read())
    # The report next to the model is the one returned, and describes the file written there.
    assert written == json.loads(json.dumps(report))
    assert written["model"] == "model.tflite" and written["bytes"] == len(content)
    assert written["precision"] == "fp32" and "CONV_2D" in written["ops"]
    (row,) = written["parity"]["images"]
    assert row["name"] == "r" and row["size"] == [24, 40]
    assert written["parity"]["passed"] is True and 0 <= row["max_abs_diff"] <= 1e-4
    interp = Interpreter(model_content=content)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [1, 24, 40, 3])
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], image[None])
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])[0]
    want = model(image[None], training=False).numpy()[0]
    # Run from ram://, the file gives the difference its parity report recorded.
    assert np.abs(got - want).max() == pytest.approx(row["max_abs_diff"], abs=1e-7)

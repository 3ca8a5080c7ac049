"""Exported models may live at any tf.io.gfile path: export to TensorFlow's in-memory ram://."""

import json

import numpy as np

from lpie_data import storage


def test_export_to_ram_filesystem_and_run_from_there():
    from ai_edge_litert.interpreter import Interpreter

    from lpie_model import build_lpienet
    from lpie_model.export import export_tflite

    model = build_lpienet(widths=(4, 8, 4))
    image = np.random.default_rng(0).random((24, 40, 3), dtype=np.float32)
    out = "ram://lpie-export-test/model.tflite"
    report = export_tflite(model, out, precision="fp32", parity_images=[("r", image)])
    assert report["parity"]
    with storage.open_file(out, "rb") as f:
        content = f.read()
    with storage.open_file("ram://lpie-export-test/model.json", "rb") as f:
        assert json.loads(f.read())["model"] == "model.tflite"
    interp = Interpreter(model_content=content)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [1, 24, 40, 3])
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], image[None])
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])[0]
    want = model(image[None], training=False).numpy()[0]
    assert np.abs(got - want).max() <= 1e-4

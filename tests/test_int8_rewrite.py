"""int8 ELU: the quantizer's DEQUANTIZE -> ELU -> QUANTIZE islands rewritten to one int8 ELU."""

from collections import Counter

import numpy as np
import pytest

from lpie_model import convert as cv
from lpie_model import int8_rewrite as rw
from lpie_model import tflite_model as tm

SIZE = (16, 16)


@pytest.fixture(scope="module")
def two_layer():
    """Conv 3->8, ELU, conv 8->8, ELU, conv 8->3: two ELU islands after quantization."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((*SIZE, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    x = keras.layers.ELU()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="elu")(x)
    model = keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same")(x))
    rng = np.random.default_rng(0)
    images = [rng.random((*SIZE, 3), dtype=np.float32) for _ in range(8)]
    floating = cv.convert_keras(
        model, precision="int8", size=SIZE, calibration=images, simplify_int8=False
    )
    return model, floating, images


def _interpreter(content: bytes):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content, num_threads=1)
    it.allocate_tensors()
    return it


def _ops(it) -> Counter:
    return Counter(d["op_name"] for d in it._get_ops_details() if d["op_name"] != "DELEGATE")


def _run(content: bytes, x: np.ndarray) -> np.ndarray:
    it = _interpreter(content)
    run = it.get_signature_runner()
    (out,) = run(**{next(iter(run.get_input_details())): x[None]}).values()
    return out[0]


def test_the_quantizer_leaves_elu_in_float(two_layer):
    _, floating, _ = two_layer
    assert rw.float_islands(floating) == 2
    ops = _ops(_interpreter(floating))
    assert ops["ELU"] == 2 and ops["DEQUANTIZE"] == 3 and ops["QUANTIZE"] == 3


def test_rewrite_makes_every_elu_int8_and_keeps_outputs(two_layer):
    model, floating, images = two_layer
    content = rw.int8_elu(floating)
    assert rw.float_islands(content) == 0
    it = _interpreter(content)
    ops = _ops(it)
    # Only the model's own float input and output are converted.
    assert ops["ELU"] == 2 and ops["DEQUANTIZE"] == 1 and ops["QUANTIZE"] == 1
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    for op in it._get_ops_details():
        if op["op_name"] == "ELU":
            assert tensors[op["inputs"][0]]["dtype"] == np.int8
            assert tensors[op["outputs"][0]]["dtype"] == np.int8
    last = [op for op in it._get_ops_details() if op["op_name"] == "DEQUANTIZE"][-1]
    scale = tensors[last["inputs"][0]]["quantization"][0]
    assert scale > 0
    x = np.random.default_rng(1).random((*SIZE, 3), dtype=np.float32)  # held out
    want = model(x[None]).numpy()[0]
    before, after = _run(floating, x), _run(content, x)
    # The int8 ELU's table is the island's computation entry for entry: at most one step of the
    # output's scale apart, however the float rounding falls.
    assert np.abs(after - before).max() <= 2 * scale
    psnr = lambda a, b: 10 * np.log10(np.ptp(want) ** 2 / np.mean((a - b) ** 2))  # noqa: E731
    assert psnr(after, want) >= 30
    assert abs(psnr(after, want) - psnr(before, want)) < 0.5


def test_rewrite_keeps_metadata_and_signature(two_layer):
    _, floating, _ = two_layer
    tagged = tm.add_metadata(floating, {"value_space": "srgb"})
    content = rw.int8_elu(tagged)
    assert tm.read_metadata(content) == {"value_space": "srgb"}
    it = _interpreter(content)
    assert list(it.get_signature_list()) == list(_interpreter(floating).get_signature_list())
    assert it.get_input_details()[0]["shape"].tolist() == [1, *SIZE, 3]
    assert len(content) < len(tagged)


def test_models_without_islands_come_back_unchanged(two_layer):
    model, _, images = two_layer
    fp32 = cv.convert_keras(model, size=SIZE)
    assert rw.float_islands(fp32) == 0
    assert rw.int8_elu(fp32) == fp32
    # the export path rewrites by default
    int8 = cv.convert_keras(model, precision="int8", size=SIZE, calibration=images)
    assert rw.float_islands(int8) == 0 and "DEQUANTIZE" in tm.op_names(int8)


def test_unreadable_bytes_raise_export_error():
    with pytest.raises(tm.ExportError, match="not a readable"):
        rw.int8_elu(b"not a flatbuffer at all")


def _clipped(gain: float, images):
    """conv 3->3, times `gain`, then the output clip min(x, 1 - 1e-5), relu (as LPIENet's)."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((*SIZE, 3), batch_size=1)
    x = keras.layers.Rescaling(gain)(keras.layers.Conv2D(3, 3, padding="same")(inp))
    out = keras.layers.ReLU()(keras.ops.minimum(x, 1.0 - 1e-5))
    model = keras.Model(inp, out)
    raw = cv.convert_keras(
        model, precision="int8", size=SIZE, calibration=images, simplify_int8=False
    )
    return model, raw


def test_identity_clip_is_dropped_and_the_graph_is_one_xnnpack_partition(two_layer):
    _, _, images = two_layer
    model, raw = _clipped(0.1, images)  # calibrated range far below the clip: an identity
    before = _ops(_interpreter(raw))
    assert before["MINIMUM"] == 1 and before["RELU"] == 1
    content = rw.rewrite_int8(raw)
    it = _interpreter(content)
    ops = _ops(it)
    assert "MINIMUM" not in ops and "RELU" not in ops
    partitions = [d for d in it._get_ops_details() if d["op_name"] == "DELEGATE"]
    assert len(partitions) == 1
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    last = [op for op in it._get_ops_details() if op["op_name"] == "DEQUANTIZE"][-1]
    scale = tensors[last["inputs"][0]]["quantization"][0]
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = rng.random((*SIZE, 3), dtype=np.float32)
        a, b = _run(raw, x), _run(content, x)
        assert np.abs(a - b).max() <= scale * 1.01  # one step where the kernels round apart
        assert b.min() >= 0


def test_a_minimum_that_clips_is_kept(two_layer):
    from tensorflow.lite.tools import flatbuffer_utils

    _, _, images = two_layer
    _, raw = _clipped(10.0, images)
    # The quantizer gives MINIMUM's input, constant and output the clip's own range, so its
    # constant is 127 (an identity); one of 100 would clip: such a MINIMUM must stay.
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(raw))
    sub = model.subgraphs[0]
    (const,) = [
        sub.tensors[t]
        for op in sub.operators
        for t in op.inputs
        if len(sub.tensors[t].shape) == 0 and model.buffers[sub.tensors[t].buffer].data is not None
    ]
    assert list(model.buffers[const.buffer].data) == [127]
    model.buffers[const.buffer].data = np.array([100], dtype=np.uint8)
    clipping = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    assert rw.identity_minimum(clipping) == clipping
    assert "MINIMUM" not in tm.op_names(rw.identity_minimum(raw))

"""Export memory: dynamic-size graphs XNNPACK takes whole; the low-memory / fast layouts."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from lpie_model import build_lpienet
from lpie_model import convert as cv
from lpie_model.benchmark import indirection_bytes
from lpie_model.cli_deploy import MemoryLayout
from lpie_model.deploy import MEMORY_LAYOUTS, low_memory_layout
from lpie_model.errors import ModelConfigError
from lpie_model.layers import SpaceToDepth2, Upsample2x, upsample2x_separable


def _dynamic(layer):
    """`layer` traced with a run-time spatial size (the path a dynamic-size export takes)."""
    return tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, None))])


def test_separable_upsample_known_answer():
    x = tf.constant([0.0, 1.0], shape=(1, 2, 1, 1))
    got = upsample2x_separable(x).numpy()[0, :, :, 0]
    # Half-pixel bilinear with clamped edges: rows 0, 0.25, 0.75, 1, each repeated in columns.
    np.testing.assert_allclose(got, [[0, 0], [0.25, 0.25], [0.75, 0.75], [1, 1]], atol=0)


@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (1, 1, 5, 3), (2, 4, 3, 16), (1, 7, 9, 4)])
def test_upsample_at_run_time_size_equals_the_resize(shape):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    want = tf.image.resize(x, (2 * shape[1], 2 * shape[2]), method="bilinear").numpy()
    layer = Upsample2x()
    traced = _dynamic(lambda t: layer(tf.ensure_shape(t, (None, None, None, shape[3]))))
    np.testing.assert_allclose(traced(x).numpy(), want, atol=2e-7)
    np.testing.assert_allclose(layer(x).numpy(), want, atol=0)  # static size: the resize itself


def test_space_to_depth_at_run_time_size_is_exact():
    x = np.random.default_rng(1).random((2, 6, 8, 3), dtype=np.float32)
    layer = SpaceToDepth2()
    traced = _dynamic(lambda t: layer(tf.ensure_shape(t, (None, None, None, 3))))
    np.testing.assert_array_equal(traced(x).numpy(), tf.nn.space_to_depth(x, 2).numpy())


def test_dynamic_export_is_one_xnnpack_graph_between_pad_and_crop():
    keras.utils.set_random_seed(0)
    model = build_lpienet(widths=[4, 8, 4])
    content = cv.convert(model)
    it = Interpreter(model_content=content, num_threads=1)
    it.resize_tensor_input(it.get_input_details()[0]["index"], [1, 37, 53, 3])
    it.allocate_tensors()
    ops = collections.Counter(o["op_name"] for o in it._get_ops_details())
    # No run-time-sized resize and no SPACE_TO_DEPTH (XNNPACK refuses both in this graph).
    assert ops["RESIZE_BILINEAR"] == 0 and ops["SPACE_TO_DEPTH"] == 0
    # Pad's two reverses and the final crop stay outside; before, the graph had 10 partitions.
    assert ops["DELEGATE"] <= 4
    x = np.random.default_rng(2).random((1, 37, 53, 3), dtype=np.float32)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    ("memory", "size", "low"),
    [
        ("auto", None, True),  # any size: photos may be large
        ("auto", (256, 256), False),
        ("auto", (800, 800), False),
        ("auto", (999, 1000), False),
        ("auto", (1000, 1000), True),
        ("auto", (1080, 1920), True),
        ("low", (64, 64), True),
        ("fast", None, False),
        ("fast", (2160, 3840), False),
    ],
)
def test_memory_layout_choice(memory, size, low):
    assert low_memory_layout(memory, size) is low
    assert low_memory_layout(memory, size, "fp16") is low
    # int8 takes the low layout whenever asked to choose (faster as well as smaller there)
    assert low_memory_layout(memory, size, "int8") is (low if memory != "auto" else True)


def test_memory_layout_names():
    with pytest.raises(ModelConfigError, match="auto, low, fast"):
        low_memory_layout("small", None)
    assert tuple(m.value for m in MemoryLayout) == MEMORY_LAYOUTS


def test_fast_layout_keeps_full_resolution_convs_in_pixels():
    keras.utils.set_random_seed(0)
    model = build_lpienet(widths=[4, 8, 16, 8, 4])
    x = np.random.default_rng(3).random((1, 48, 64, 3), dtype=np.float32)
    files = {m: cv.convert(model, size=(48, 64), memory=m) for m in ("low", "fast")}
    assert files["fast"] == cv.convert(model, size=(48, 64))  # auto at 48x64: fast
    s2d = {}
    for m, content in files.items():
        it = Interpreter(model_content=content, num_threads=1)
        it.allocate_tensors()
        s2d[m] = sum(o["op_name"] == "SPACE_TO_DEPTH" for o in it._get_ops_details())
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        got = it.get_tensor(it.get_output_details()[0]["index"])
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5)
    # low: the first stage's conv and attention conv, the head, its shortcut, the 7x7 gate;
    # fast: only the head's gate.
    assert s2d == {"low": 5, "fast": 1}
    # XNNPACK pointers per input pixel, fast: the first stage's conv and attention conv and the
    # head's depthwise conv 9 each, the 7x7 gate on 2x2 blocks (5x5) 25 / 4; low: those three
    # on blocks 9 / 4 each, the gate on 4x4 blocks (3x3) 9 / 16. 8 bytes per pointer.
    saved = (3 * 9 + 25 / 4) - (3 * 9 / 4 + 9 / 16)
    assert indirection_bytes(files["fast"]) - indirection_bytes(files["low"]) == 48 * 64 * 8 * saved

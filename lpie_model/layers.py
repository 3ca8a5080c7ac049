"""LPIENet's custom Keras layers: padding and cropping to the pooling multiple, x2 upsampling,
space-to-depth and back, channel pooling and the output clip.

Each layer is registered as serializable (package "lpie"), so `.keras` files load without
custom-object arguments. All of them convert to builtin TFLite ops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from lpie_model.errors import ModelConfigError

CLIP_MAX = 1.0 - 1e-5  # the paper's output range is [0, 1 - 1e-5] (Sec. 4.2)


def _scaled_shape(shape: tuple, scale: float, channels: int) -> tuple:
    """(B, H, W, C) -> (B, H * scale, W * scale, channels); unknown sides stay None."""
    b, h, w, _ = shape
    return (b, None if h is None else int(h * scale), None if w is None else int(w * scale),
            channels)


@keras.saving.register_keras_serializable(package="lpie")
class PadToMultiple(keras.layers.Layer):
    """Pads H and W at the bottom/right up to the next multiple of `multiple`, by reflection.

    The same values as `numpy.pad(x, ..., mode="reflect")` (the tiled runner's padding): the
    rows below the image mirror the last rows without repeating the edge row. Written as a slice
    of the last `multiple - 1` rows (columns), reversed and concatenated, then a slice to the next
    multiple: constant-size ops keep the channel count static and every TFLite op builtin (a
    computed paddings tensor does not; see docs/tensorflow facts). A side of 1 or 2 pixels has too
    few rows to mirror; the rest is filled with zeros there.
    """

    def __init__(self, multiple: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        m = self.multiple
        shape = tf.shape(x)
        h = (shape[1] + m - 1) // m * m
        w = (shape[2] + m - 1) // m * m
        if m > 1:
            x = tf.concat([x, tf.reverse(x[:, -m:-1], [1])], axis=1)
            x = tf.concat([x, tf.reverse(x[:, :, -m:-1], [2])], axis=2)
            x = tf.pad(x, [[0, 0], [0, m - 1], [0, m - 1], [0, 0]])  # only for sides < 3
        return x[:, :h, :w, :]

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        def up(n: int | None) -> int | None:
            return None if n is None else (n + self.multiple - 1) // self.multiple * self.multiple

        return (input_shape[0], up(input_shape[1]), up(input_shape[2]), input_shape[3])

    def get_config(self) -> dict:
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="lpie")
class CropLike(keras.layers.Layer):
    """Crops `x` (B, H', W', C) to the spatial size of `ref` (B, H, W, *), H <= H', W <= W'."""

    def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
        x, ref = inputs
        shape = tf.shape(ref)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shapes: Sequence[tuple]) -> tuple:
        x, ref = input_shapes
        return (x[0], ref[1], ref[2], x[3])


@keras.saving.register_keras_serializable(package="lpie")
class Upsample2x(keras.layers.Layer):
    """Bilinear x2 upsampling (half-pixel centres) to twice the runtime spatial shape.

    With a static input size: one resize to a constant size (one RESIZE_BILINEAR op, which
    XNNPACK takes). With a run-time size: `upsample2x_separable`, the same values from ops whose
    output shapes follow from their inputs' (a resize to a computed size would stay outside
    XNNPACK and get its own allocation).
    """

    def call(self, x: tf.Tensor) -> tf.Tensor:
        h, w = x.shape[1], x.shape[2]
        if h is not None and w is not None:
            return tf.cast(tf.image.resize(x, (2 * h, 2 * w), method="bilinear"), x.dtype)
        return upsample2x_separable(x)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return _scaled_shape(input_shape, 2.0, input_shape[3])


#: Bilinear x2 weights of the nearer and the farther input sample (half-pixel centres).
NEAR, FAR = 3 / 4, 1 / 4


def upsample2x_separable(x: tf.Tensor) -> tf.Tensor:
    """Bilinear x2 upsampling (half-pixel centres, edges clamped) without a size tensor.

    (B, H, W, C) float, C static -> (B, 2H, 2W, C). Output row 2i is 0.75 x[i] + 0.25 x[i-1],
    row 2i+1 is 0.75 x[i] + 0.25 x[i+1] (x[-1] = x[0], x[H] = x[H-1]), the same along
    columns: neighbours come from constant-size slices and concatenations, and the four phases
    are interleaved by one depth-to-space. Every op's output shape follows from its input's, so
    in a dynamic-size TFLite graph XNNPACK takes them all, and none keeps per-pixel pointers
    (XNNPACK's resize and convolutions do). A resize to a computed size instead gets a
    separately allocated output and stays outside XNNPACK, splitting the graph (measured:
    docs/deployment.md). Equal to `tf.image.resize(x, (2H, 2W), "bilinear")` to float rounding.
    """

    def phases(t: tf.Tensor, axis: int) -> list[tf.Tensor]:
        def cut(start: int | None, stop: int | None) -> tf.Tensor:
            return t[:, start:stop] if axis == 1 else t[:, :, start:stop]

        before = tf.concat([cut(None, 1), cut(None, -1)], axis=axis)
        after = tf.concat([cut(1, None), cut(-1, None)], axis=axis)
        return [NEAR * t + FAR * before, NEAR * t + FAR * after]

    blocks = [p for r in phases(x, 1) for p in phases(r, 2)]  # (row * 2 + column) * C + c
    return tf.nn.depth_to_space(tf.concat(blocks, axis=3), 2)


@keras.saving.register_keras_serializable(package="lpie")
class SpaceToDepth2(keras.layers.Layer):
    """2x2 space-to-depth: (B, H, W, C) -> (B, H/2, W/2, 4C); H and W even.

    With a run-time spatial size the same values come from a 2x2 stride-2 convolution with a
    one-hot kernel (exact: one product by 1 per output): XNNPACK does not take a SPACE_TO_DEPTH
    whose input size is only known at run time, and every op it leaves out splits the graph into
    partitions whose boundary tensors TFLite holds in its own arena (docs/deployment.md).
    """

    def call(self, x: tf.Tensor) -> tf.Tensor:
        if x.shape[1] is not None and x.shape[2] is not None:
            return tf.nn.space_to_depth(x, 2)
        c = x.shape[3]
        onehot = tf.reshape(tf.eye(4 * c, dtype=x.dtype), (2, 2, c, 4 * c))
        return tf.nn.conv2d(x, onehot, strides=2, padding="VALID")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return _scaled_shape(input_shape, 0.5, 4 * input_shape[3])


def s2d_kernel_size(k: int) -> int:
    """Kernel size, in 2x2 blocks, of a 'same' k x k convolution rewritten on space-to-depth."""
    p = (k - 1) // 2
    return 2 * ((p + 1) // 2) + 1


@keras.saving.register_keras_serializable(package="lpie")
class DepthToSpace2(keras.layers.Layer):
    """2x2 depth-to-space: (B, H, W, 4C) -> (B, 2H, 2W, C)."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.depth_to_space(x, 2)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return _scaled_shape(input_shape, 2.0, input_shape[3] // 4)


@keras.saving.register_keras_serializable(package="lpie")
class ChannelPool(keras.layers.Layer):
    """Per-pixel mean or max over channels: (B, H, W, C) -> (B, H, W, 1)."""

    def __init__(self, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("mean", "max"):
            raise ModelConfigError(f"ChannelPool mode {mode!r}: valid modes are 'mean', 'max'")
        self.mode = mode

    def call(self, x: tf.Tensor) -> tf.Tensor:
        if self.mode == "mean":
            return keras.ops.mean(x, axis=-1, keepdims=True)
        return keras.ops.max(x, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:3], 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="lpie")
class Clip(keras.layers.Layer):
    """Clips values to [lo, hi] (the paper's [0, 1 - 1e-5] output range)."""

    def __init__(self, lo: float = 0.0, hi: float = CLIP_MAX, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lo = float(lo)
        self.hi = float(hi)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return keras.ops.clip(x, self.lo, self.hi)

    def get_config(self) -> dict:
        return {**super().get_config(), "lo": self.lo, "hi": self.hi}


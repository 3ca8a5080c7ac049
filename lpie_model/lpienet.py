"""LPIENet (Conde et al., 2022): a small U-Net of inverted residual attention blocks.

The network is built from small block functions (`irb`, `attention`, `stage`, `head`) by the
functional builder `build_lpienet`. Every layer has a fixed, descriptive name so that weights can be
copied between builds that differ only in their input shape (see `rebuild_for_shape`).

Inputs are float32 images in [0, 1], shape (batch, H, W, 3), any H and W. Outputs have the same
shape and are clipped to [0, 1 - 1e-5] (paper, Sec. 4.2) by a final `Clip` layer that is always
part of the model, in training too: a restored image is never asked to leave that range.

Choices where the paper's figure and the released code disagree (both give the same parameter
count) are build options; the defaults are listed in `DEFAULTS`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from lpie_data.errors import ConfigError, DataError
from lpie_model.rundir import MODEL_FILE as CONFIG_FILE
from lpie_model.rundir import WEIGHTS_FILE

VARIANTS: dict[str, tuple[int, ...]] = {
    "base": (16, 32, 64, 32, 16),
    "large": (32, 64, 128, 64, 32),
}
ACTIVATIONS = ("elu", "relu")
IRB_SECOND_INPUTS = ("m", "y")
# Keyword arguments of `build_lpienet` that a run's `model.json` may hold.
BUILD_KEYS = ("variant", "widths", "activation", "dw_kernel", "irb_second_input")
DEFAULTS: dict[str, Any] = {
    "variant": "base",
    "widths": None,
    "activation": "elu",
    "dw_kernel": 3,
    "irb_second_input": "m",
}
CLIP_MAX = 1.0 - 1e-5


# --------------------------------------------------------------------------- custom layers


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

    Keras' `UpSampling2D(interpolation="bilinear")` and `keras.ops.image.resize` cannot take a
    computed size; TensorFlow's resize with a runtime size converts to one RESIZE_BILINEAR op.
    With a static input size the target size is a constant (what XNNPACK needs to delegate it).
    """

    def call(self, x: tf.Tensor) -> tf.Tensor:
        h, w = x.shape[1], x.shape[2]
        if h is not None and w is not None:
            size = (2 * h, 2 * w)
        else:
            size = tf.shape(x)[1:3] * 2
        return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)


@keras.saving.register_keras_serializable(package="lpie")
class SpaceToDepth2(keras.layers.Layer):
    """2x2 space-to-depth: (B, H, W, C) -> (B, H/2, W/2, 4C); H and W even."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.space_to_depth(x, 2)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        b, h, w, c = input_shape
        return (b, None if h is None else h // 2, None if w is None else w // 2, 4 * c)


@keras.saving.register_keras_serializable(package="lpie")
class DepthToSpace2(keras.layers.Layer):
    """2x2 depth-to-space: (B, H, W, 4C) -> (B, 2H, 2W, C)."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.depth_to_space(x, 2)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c // 4)


@keras.saving.register_keras_serializable(package="lpie")
class ChannelPool(keras.layers.Layer):
    """Per-pixel mean or max over channels: (B, H, W, C) -> (B, H, W, 1)."""

    def __init__(self, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("mean", "max"):
            raise ConfigError(f"ChannelPool mode {mode!r}: valid modes are 'mean', 'max'")
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


# --------------------------------------------------------------------------- blocks


def _conv(
    x: keras.KerasTensor,
    filters: int,
    kernel: int,
    name: str,
    *,
    activation: str | None = None,
    use_bias: bool = True,
) -> keras.KerasTensor:
    return keras.layers.Conv2D(
        filters, kernel, padding="same", activation=activation, use_bias=use_bias, name=name
    )(x)


def _conv_s2d(
    x: keras.KerasTensor,
    filters: int,
    kernel: int,
    name: str,
    *,
    activation: str | None = None,
    use_bias: bool = True,
) -> keras.KerasTensor:
    """`_conv` computed on 2x2 space-to-depth blocks: `d2s(conv'(s2d(x)))`, same function.

    The conv' kernel comes from `s2d_kernel` (see `rebuild_for_shape`). H and W must be even.
    XNNPACK keeps k x k pointers per output pixel for every spatial convolution (its indirection
    buffer): on blocks that is 4x fewer output pixels (and a 3x3 kernel stays 3x3).
    """
    xs = SpaceToDepth2(name=f"{name}_s2d")(x)
    y = keras.layers.Conv2D(
        4 * filters,
        s2d_kernel_size(kernel),
        padding="same",
        activation=activation,
        use_bias=use_bias,
        name=name,
    )(xs)
    return DepthToSpace2(name=f"{name}_d2s")(y)


def irb(
    x: keras.KerasTensor,
    c: int,
    name: str,
    *,
    activation: str = "elu",
    dw_kernel: int = 3,
    second_input: str = "m",
) -> keras.KerasTensor:
    """Inverted residual block, expansion 1 (4c^2 + (4 + dw_kernel^2 + 1)c parameters).

    `m = pw1(x); m = act(dw(m)); m = pw2(m); y = x + m; n = pw4(act(pw3(y or m))); out = y + n`.
    `second_input="m"` (default) follows the released Keras code, `"y"` the paper's figure and the
    PyTorch port. Same parameters; "m" keeps activation ranges narrower, which int8 export needs
    (measured here: ~48 dB vs ~35 dB PSNR against fp32 at seeded init, see docs).
    """
    m = _conv(x, c, 1, f"{name}_pw1")
    m = keras.layers.DepthwiseConv2D(dw_kernel, padding="same", name=f"{name}_dw")(m)
    m = keras.layers.Activation(activation, name=f"{name}_act1")(m)
    m = _conv(m, c, 1, f"{name}_pw2")
    y = keras.layers.Add(name=f"{name}_add1")([x, m])
    n = _conv(y if second_input == "y" else m, c, 1, f"{name}_pw3")
    n = keras.layers.Activation(activation, name=f"{name}_act2")(n)
    n = _conv(n, c, 1, f"{name}_pw4")
    return keras.layers.Add(name=f"{name}_add2")([y, n])


def attention(
    x: keras.KerasTensor, c: int, name: str, *, fused: bool = False, s2d: bool = False
) -> keras.KerasTensor:
    """Spatial + channel attention (3c^2 + 23c parameters).

    `Conv3x3(concat[mean, max])` is written as `Conv3x3(mean) + Conv3x3_nobias(max)`: the same
    function and parameter count, but int8 quantization then gives mean and max their own scales.
    `fused=True` builds the concat form instead (one conv, `{name}_sp_conv`), which float
    runtimes execute faster; `rebuild_for_shape` converts weights between the two forms.
    `s2d=True` runs the spatial conv(s) on space-to-depth blocks (see `_conv_s2d`).
    """
    conv = _conv_s2d if s2d else _conv
    a = ChannelPool("mean", name=f"{name}_mean")(x)
    b = ChannelPool("max", name=f"{name}_max")(x)
    if fused:
        ab = keras.layers.Concatenate(name=f"{name}_sp_concat")([a, b])
        s = conv(ab, c, 3, f"{name}_sp_conv", activation="sigmoid")
    else:
        s_mean = conv(a, c, 3, f"{name}_sp_conv_mean")
        s_max = conv(b, c, 3, f"{name}_sp_conv_max", use_bias=False)
        s = keras.layers.Add(name=f"{name}_sp_add")([s_mean, s_max])
        s = keras.layers.Activation("sigmoid", name=f"{name}_sp_sigmoid")(s)
    spatial = keras.layers.Multiply(name=f"{name}_sp_mul")([x, s])
    g = _conv(a, c, 1, f"{name}_ch_conv1", activation="relu")
    g = _conv(g, c, 1, f"{name}_ch_conv2", activation="sigmoid")
    channel = keras.layers.Multiply(name=f"{name}_ch_mul")([x, g])
    both = keras.layers.Concatenate(name=f"{name}_concat")([spatial, channel])
    return keras.layers.Add(name=f"{name}_add")([x, _conv(both, c, 1, f"{name}_fuse")])


def stage(
    x: keras.KerasTensor,
    c: int,
    name: str,
    *,
    activation: str = "elu",
    dw_kernel: int = 3,
    irb_second_input: str = "m",
    fused_attention: bool = False,
    s2d: bool = False,
) -> keras.KerasTensor:
    """Conv3x3(c, ReLU) -> IRB -> IRB -> Attention: one encoder or decoder stage.

    `s2d=True` runs the stage's 3x3 conv and the attention's spatial conv on space-to-depth
    blocks (see `_conv_s2d`); the depthwise convs stay in the pixel domain.
    """
    x = (_conv_s2d if s2d else _conv)(x, c, 3, f"{name}_conv", activation="relu")
    for i in (1, 2):
        x = irb(
            x,
            c,
            f"{name}_irb{i}",
            activation=activation,
            dw_kernel=dw_kernel,
            second_input=irb_second_input,
        )
    return attention(x, c, f"{name}_att", fused=fused_attention, s2d=s2d)


def head(
    x: keras.KerasTensor,
    name: str = "head",
    *,
    activation: str = "elu",
    dw_kernel: int = 3,
    s2d_gate: bool = False,
    s2d_full_res: bool = False,
    deep_gate: bool = True,
) -> keras.KerasTensor:
    """Output head: 3-channel IRB-like branch + ReLU shortcut, then a 7-5-3 sigmoid gate.

    `s2d_gate=True` computes the gate on 2x2 space-to-depth blocks (12 channels at half
    resolution) with kernels from `s2d_kernel`: the same function, but CPU runtimes waste most
    of their vector lanes on 3-channel convolutions and much less on 12-channel ones.
    `s2d_full_res=True` (implies the gate on blocks) moves the head to blocks right after its
    first 1x1 conv: the depthwise conv becomes a dense 12-channel 3x3 conv on blocks (fewer
    output pixels for XNNPACK's per-pixel indirection buffer), the second 1x1 conv a
    block-diagonal 12-channel one.
    """
    if s2d_full_res:
        h = _conv(x, 3, 1, f"{name}_pw1")
        hs = SpaceToDepth2(name=f"{name}_s2d")(h)
        hs = _conv(hs, 12, s2d_kernel_size(dw_kernel), f"{name}_dw")
        hs = keras.layers.Activation(activation, name=f"{name}_act")(hs)
        hs = _conv(hs, 12, 1, f"{name}_pw2")
        shortcut = _conv(x, 3, 1, f"{name}_shortcut", activation="relu")
        shortcut = SpaceToDepth2(name=f"{name}_shortcut_s2d")(shortcut)
        hs = keras.layers.Add(name=f"{name}_add")([hs, shortcut])
        return _gate_s2d(hs, name, deep=deep_gate)
    h = _conv(x, 3, 1, f"{name}_pw1")
    h = keras.layers.DepthwiseConv2D(dw_kernel, padding="same", name=f"{name}_dw")(h)
    h = keras.layers.Activation(activation, name=f"{name}_act")(h)
    h = _conv(h, 3, 1, f"{name}_pw2")
    shortcut = _conv(x, 3, 1, f"{name}_shortcut", activation="relu")
    h = keras.layers.Add(name=f"{name}_add")([h, shortcut])
    if s2d_gate:
        return _gate_s2d(SpaceToDepth2(name=f"{name}_s2d")(h), name)
    g = _conv(h, 3, 7, f"{name}_gate7", activation="relu")
    g = _conv(g, 3, 5, f"{name}_gate5", activation="relu")
    g = _conv(g, 3, 3, f"{name}_gate3", activation="sigmoid")
    return keras.layers.Multiply(name=f"{name}_gate_mul")([h, g])


def _gate_s2d(hs: keras.KerasTensor, name: str, *, deep: bool = False) -> keras.KerasTensor:
    """The head's 7-5-3 sigmoid gate on space-to-depth blocks `hs`; returns pixels.

    `deep=True` runs the 7x7 conv on 4x4 blocks (s2d twice: a 3x3 conv, 48 channels at a
    quarter of the resolution), whose indirection buffer is 11x smaller than the 5x5 one's.
    """
    conv7 = _conv_s2d if deep else _conv
    g = conv7(hs, 12, s2d_kernel_size(7), f"{name}_gate7", activation="relu")
    g = _conv(g, 12, s2d_kernel_size(5), f"{name}_gate5", activation="relu")
    g = _conv(g, 12, s2d_kernel_size(3), f"{name}_gate3", activation="sigmoid")
    gated = keras.layers.Multiply(name=f"{name}_gate_mul")([hs, g])
    return DepthToSpace2(name=f"{name}_d2s")(gated)


def s2d_kernel_size(k: int) -> int:
    """Kernel size, in 2x2 blocks, of a 'same' k x k convolution rewritten on space-to-depth."""
    p = (k - 1) // 2
    return 2 * ((p + 1) // 2) + 1


def s2d_kernel(kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rewrites a 'same' k x k convolution (odd k) as one on 2x2 space-to-depth blocks.

    Args:
        kernel: (k, k, C_in, C_out); bias: (C_out,).
    Returns:
        (kb, kb, 4 C_in, 4 C_out) kernel and (4 C_out,) bias such that
        `conv(s2d(x)) == s2d(conv(x))` for inputs of even height and width, with TensorFlow's
        space-to-depth channel order `(row_offset * 2 + col_offset) * C + c`. Zero padding agrees
        because block borders coincide with pixel borders.
    """
    k, _, c_in, c_out = kernel.shape
    p = (k - 1) // 2
    kb = s2d_kernel_size(k)
    pb = (kb - 1) // 2
    out = np.zeros((kb, kb, 4 * c_in, 4 * c_out), dtype=kernel.dtype)
    for oy in range(2):
        for ox in range(2):
            for u in range(k):
                for v in range(k):
                    di, iy = divmod(oy + u - p, 2)
                    dj, ix = divmod(ox + v - p, 2)
                    src = (iy * 2 + ix) * c_in
                    dst = (oy * 2 + ox) * c_out
                    out[di + pb, dj + pb, src : src + c_in, dst : dst + c_out] += kernel[u, v]
    return out, np.tile(bias, 4)


# --------------------------------------------------------------------------- builder


def resolve_widths(variant: str = "base", widths: Sequence[int] | None = None) -> tuple[int, ...]:
    """The stage widths: `widths` if given, else the variant's. Odd length (n+1 enc, n dec)."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}; valid variants: {', '.join(VARIANTS)}")
    if widths is None:
        return VARIANTS[variant]
    widths = tuple(int(w) for w in widths)
    if len(widths) < 1 or len(widths) % 2 == 0 or min(widths) < 1:
        raise ConfigError(
            f"widths {list(widths)}: need an odd number (>= 1) of positive stage widths, "
            "encoders then decoders, e.g. [16, 32, 64, 32, 16]"
        )
    return widths


def _check_options(
    variant: str,
    widths: Sequence[int] | None,
    activation: str,
    dw_kernel: int,
    irb_second_input: str,
) -> tuple[int, ...]:
    """Validates build options (raises ConfigError naming the option); returns the widths."""
    widths = resolve_widths(variant, widths)
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    if irb_second_input not in IRB_SECOND_INPUTS:
        raise ConfigError(
            f"unknown irb_second_input {irb_second_input!r}; valid: {', '.join(IRB_SECOND_INPUTS)}"
        )
    if not isinstance(dw_kernel, int) or dw_kernel < 1 or dw_kernel % 2 == 0:
        raise ConfigError(f"dw_kernel {dw_kernel!r}: must be a positive odd integer")
    return widths


def size_multiple(widths: Sequence[int]) -> int:
    """H and W must be multiples of this inside the network (2 ** number of poolings)."""
    return 2 ** (len(widths) // 2)


def build_lpienet(
    variant: str = "base",
    *,
    widths: Sequence[int] | None = None,
    activation: str = "elu",
    dw_kernel: int = 3,
    irb_second_input: str = "m",
    input_shape: tuple[int | None, int | None] | None = None,
    fused_attention: bool = False,
    s2d_gate: bool = False,
    s2d_full_res: bool = False,
    name: str = "lpienet",
) -> keras.Model:
    """Builds LPIENet as a functional Keras model.

    Args:
        variant: "base" (widths 16-32-64-32-16, 133,652 params) or "large" (32-64-128-64-32,
            514,308 params).
        widths: stage widths overriding the variant, encoders then decoders (odd length).
        activation: "elu" (released code) or "relu" (paper figure) inside IRBs and the head.
        dw_kernel: depthwise kernel size in IRBs and the head (odd).
        irb_second_input: "m" (released Keras code) or "y" (paper figure); see `irb`.
        input_shape: (H, W) for a fixed-size model; None (default) for any size. A fixed size that
            is a multiple of `size_multiple(widths)` builds without the pad and crop layers.
        fused_attention: build the attention's spatial conv in its concat form (for float export;
            trained weights use the default split form, see `attention`).
        s2d_gate: build the head's gate on space-to-depth blocks (faster on CPUs; see `head`).
        s2d_full_res: also run the full-resolution spatial convs (first stage's 3x3 and
            attention convs, the head's depthwise conv) on space-to-depth blocks: less XNNPACK
            memory (see `_conv_s2d`).
        name: the model's name.

    Returns:
        A `keras.Model` mapping float32 (B, H, W, 3) in [0, 1] to float32 (B, H, W, 3) in
        [0, 1 - 1e-5]; its build kwargs are attached as `model.lpie_config`.
    """
    widths = _check_options(variant, widths, activation, dw_kernel, irb_second_input)
    h, w = input_shape if input_shape is not None else (None, None)
    multiple = size_multiple(widths)
    block = {"activation": activation, "dw_kernel": int(dw_kernel)}
    stage_opts = {"irb_second_input": irb_second_input, "fused_attention": fused_attention}

    inputs = keras.Input((h, w, 3), name="image")
    aligned = h is not None and w is not None and h % multiple == 0 and w % multiple == 0
    x = inputs if aligned else PadToMultiple(multiple, name="pad")(inputs)
    padded = x
    n_enc = len(widths) // 2 + 1
    skips = []
    for i, c in enumerate(widths[:n_enc]):
        x = stage(x, c, f"enc{i + 1}", **stage_opts, **block, s2d=s2d_full_res and i == 0)
        skips.append(x)
        if i < n_enc - 1:
            x = keras.layers.MaxPooling2D(2, name=f"enc{i + 1}_pool")(x)
    for j, c in enumerate(widths[n_enc:]):
        x = stage(x, c, f"dec{j + 1}", **stage_opts, **block)
        x = Upsample2x(name=f"dec{j + 1}_up")(x)
        x = keras.layers.Concatenate(name=f"dec{j + 1}_concat")([x, skips[n_enc - 2 - j]])
    # The gate's 7x7 on 4x4 blocks needs H, W multiples of 4 (networks with >= 2 poolings).
    x = head(
        x, **block, s2d_gate=s2d_gate, s2d_full_res=s2d_full_res, deep_gate=multiple % 4 == 0
    )
    x = keras.layers.Add(name="residual")([x, padded])
    if not aligned:
        x = CropLike(name="crop")([x, inputs])
    outputs = Clip(0.0, CLIP_MAX, name="clip")(x)
    model = keras.Model(inputs, outputs, name=name)
    # The build kwargs, so that `rebuild_for_shape` and exports can rebuild this network.
    model.lpie_config = {
        "variant": variant,
        "widths": widths,
        "activation": activation,
        "dw_kernel": int(dw_kernel),
        "irb_second_input": irb_second_input,
    }
    return model


def build_kwargs(config: dict[str, Any], where: str = "model config") -> dict[str, Any]:
    """Validates a `model.json`-style dict and returns build_lpienet keyword arguments.

    Raises:
        ConfigError: unknown keys (listing the valid ones) or bad values.
    """
    unknown = sorted(set(config) - set(BUILD_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(BUILD_KEYS)}"
        )
    kwargs = {**DEFAULTS, **config}
    try:
        _check_options(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: bad value ({e})") from None
    if kwargs["widths"] is not None:
        kwargs["widths"] = tuple(int(w) for w in kwargs["widths"])
    return kwargs


def rebuild_for_shape(
    model: keras.Model,
    height: int | None,
    width: int | None,
    config: dict[str, Any] | None = None,
    *,
    fused_attention: bool = False,
    s2d_gate: bool = False,
    s2d_full_res: bool = False,
) -> keras.Model:
    """The same network and weights for a fixed (height, width) input (or dynamic with None).

    `config` are the build kwargs (default: `model.lpie_config`, set by `build_lpienet`,
    `load_model` and this function). Weights are copied by layer name. The optional rewrites
    compute the same function with other ops (results agree to float rounding):
    `fused_attention` merges each attention's two spatial convs into one concat-form conv,
    `s2d_gate` runs the head's gate on space-to-depth blocks, `s2d_full_res` also the
    full-resolution spatial convs (see `build_lpienet`). The source model must be a plain
    build (split attention, pixel-domain gate), as trained.
    """
    kwargs = dict(config if config is not None else getattr(model, "lpie_config", DEFAULTS))
    new = build_lpienet(
        **kwargs,
        input_shape=(height, width),
        fused_attention=fused_attention,
        s2d_gate=s2d_gate,
        s2d_full_res=s2d_full_res,
    )
    blocks = ("enc1_conv", "enc1_att_sp_conv", "enc1_att_sp_conv_mean", "enc1_att_sp_conv_max")
    for layer in new.layers:
        if not layer.weights:
            continue
        if fused_attention and layer.name.endswith("_sp_conv"):
            k_mean, b_mean = model.get_layer(f"{layer.name}_mean").get_weights()
            (k_max,) = model.get_layer(f"{layer.name}_max").get_weights()
            weights = [np.concatenate([k_mean, k_max], axis=2), b_mean]
        else:
            weights = model.get_layer(layer.name).get_weights()
        if (s2d_gate or s2d_full_res) and layer.name.startswith("head_gate"):
            weights = list(s2d_kernel(*weights))
            if s2d_full_res and layer.name == "head_gate7" and len(layer.weights[0].shape) == 4 \
                    and layer.weights[0].shape[0] == s2d_kernel_size(s2d_kernel_size(7)) \
                    and layer.weights[0].shape[2] == 48:
                weights = _s2d_weights(weights)
        elif s2d_full_res and (layer.name in blocks or layer.name in ("head_dw", "head_pw2")):
            weights = _s2d_weights(weights, depthwise=layer.name == "head_dw")
        layer.set_weights(weights)
    new.lpie_config = kwargs
    return new


def _s2d_weights(weights: list[np.ndarray], *, depthwise: bool = False) -> list[np.ndarray]:
    """[kernel(, bias)] of a conv (or depthwise conv, multiplier 1) for its `_conv_s2d` form."""
    kernel = weights[0]
    if depthwise:  # (k, k, C, 1) -> the dense (k, k, C, C) kernel it equals
        k, _, c, _ = kernel.shape
        dense = np.zeros((k, k, c, c), dtype=kernel.dtype)
        for i in range(c):
            dense[:, :, i, i] = kernel[:, :, i, 0]
        kernel = dense
    bias = weights[1] if len(weights) > 1 else np.zeros(kernel.shape[3], kernel.dtype)
    kb, bb = s2d_kernel(kernel, bias)
    return [kb, bb] if len(weights) > 1 else [kb]


def load_model(path: str | Path, build: dict[str, Any] | None = None) -> keras.Model:
    """Loads a trained LPIENet for inference.

    Accepted `path`s:
        - a run directory holding `model.json` (build kwargs and value space, e.g.
          {"variant": "base", "value_space": "srgb"}) and `best.weights.h5`;
        - a `.weights.h5` file, built with the `model.json` next to it;
        - a `.keras` file (full saved model).

    `build`: the architecture (build kwargs, as in `model.json`) of a `.weights.h5` that has no
    `model.json` next to it. Without either, loading is refused: weights of a ReLU or
    `irb_second_input="y"` network have the same shapes as the defaults' and would load silently
    into the wrong network.

    Returns:
        The dynamic-size model; its build kwargs are attached as `model.lpie_config` and the value
        space it was trained in (from `model.json`; None when not recorded) as
        `model.lpie_value_space`.

    Raises:
        DataError: missing or unreadable files, weights without their architecture.
        ConfigError: a bad `model.json`.
    """
    path = Path(path)
    if path.is_dir():
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise DataError(f"{path}: not a training run directory (no {WEIGHTS_FILE})")
        config_path = path / CONFIG_FILE
    elif path.name.endswith(".weights.h5"):
        weights = path
        config_path = path.parent / CONFIG_FILE
    elif path.suffix == ".keras":
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        try:
            model = keras.models.load_model(path)
        except Exception as e:  # keras raises many types for unreadable files
            raise DataError(f"{path}: cannot load Keras model ({e})") from None
        model.lpie_config = _config_of_keras_model(model)
        model.lpie_value_space = None
        return model
    else:
        raise DataError(f"{path}: expected a run directory, a .weights.h5 file or a .keras file")
    if not weights.is_file():
        raise DataError(f"{weights}: no such file")
    if build is not None:
        config, where = dict(build), "architecture"
    elif config_path.is_file():
        config, where = read_config(config_path), str(config_path)
    else:
        raise DataError(
            f"{weights}: no {CONFIG_FILE} next to these weights, so their architecture is unknown "
            f"(ReLU or irb_second_input 'y' weights fit the default network too); put the run's "
            f'{CONFIG_FILE} next to them, e.g. {{"variant": "base", "activation": "elu"}}'
        )
    value_space = config.pop("value_space", None)
    if value_space is not None:
        from lpie_data.valuespace import check_space

        try:
            check_space(str(value_space))
        except ConfigError as e:
            raise ConfigError(f"{where}: value_space: {e}") from None
    kwargs = build_kwargs(config, where)
    model = build_lpienet(**kwargs)
    try:
        model.load_weights(weights)
    except Exception as e:  # h5py / keras mismatch errors come in several types
        raise DataError(f"{weights}: weights do not fit {kwargs} ({e})") from None
    model.lpie_config = kwargs
    model.lpie_value_space = value_space
    return model


def read_config(path: str | Path) -> dict[str, Any]:
    """The JSON object of a `model.json` (build kwargs, optional "value_space"), unvalidated."""
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read JSON ({e})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a JSON object of build options")
    return config


def save_config(run_dir: str | Path, value_space: str | None = None, **kwargs: Any) -> Path:
    """Writes `run_dir/model.json`: the given build kwargs (validated) and the value space the
    model works in (see `lpie_data.valuespace`); returns its path.

    The one writer of model.json is `lpie_model.rundir.write_config`; this is its shorthand.
    """
    from lpie_model.rundir import write_config

    return Path(write_config(str(run_dir), kwargs, value_space))


def _config_of_keras_model(model: keras.Model) -> dict[str, Any]:
    """Build kwargs recovered from a saved model's layers (widths from the stage convs)."""
    names = {layer.name: layer for layer in model.layers}
    widths = []
    for prefix in ("enc", "dec"):
        i = 1
        while f"{prefix}{i}_conv" in names:
            widths.append(names[f"{prefix}{i}_conv"].filters)
            i += 1
    act = names["enc1_irb1_act1"].get_config()["activation"] if "enc1_irb1_act1" in names else "elu"
    dw = names["enc1_irb1_dw"].kernel_size[0] if "enc1_irb1_dw" in names else 3
    second = "m"
    if "enc1_irb1_pw3" in names:
        source = names["enc1_irb1_pw3"].input._keras_history[0]
        second = "y" if source.name.endswith("_add1") else "m"
    return {
        **DEFAULTS,
        "widths": tuple(widths) or None,
        "activation": act,
        "dw_kernel": dw,
        "irb_second_input": second,
    }

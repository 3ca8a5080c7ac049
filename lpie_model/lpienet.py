"""LPIENet (Conde et al., 2022): a small U-Net of inverted residual attention blocks.

The network is built from small block functions (`irb`, `attention`, `stage`, `head`) by the
functional builder `build_lpienet(config)`, where `config` is a `lpie_model.config.ModelConfig`
(every build default lives there). Every layer has a fixed, descriptive name so that weights can
be copied between builds that differ only in their input shape or op layout
(`lpie_model.deploy.rebuild_for_shape`). The custom layers are in `lpie_model.layers`.

Inputs are float32 images in [0, 1], shape (batch, H, W, 3), any H and W. Outputs have the same
shape and are clipped to [0, 1 - 1e-5] (paper, Sec. 4.2) by a final `Clip` layer that is always
part of the model, in training too: a restored image is never asked to leave that range.

Choices where the paper's figure and the released code disagree (both give the same parameter
count) are build options of `ModelConfig`.
"""

from __future__ import annotations

from typing import Any

import keras

from lpie_model.config import ModelConfig
from lpie_model.layers import (
    CLIP_MAX,
    ChannelPool,
    Clip,
    CropLike,
    DepthToSpace2,
    PadToMultiple,
    SpaceToDepth2,
    Upsample2x,
    s2d_kernel_size,
)


def _conv(
    x: keras.KerasTensor,
    filters: int,
    kernel: int,
    name: str,
    *,
    activation: str | None = None,
    use_bias: bool = True,
    s2d: bool = False,
) -> keras.KerasTensor:
    """A 'same' k x k convolution named `name`.

    `s2d=True` computes the same function on 2x2 space-to-depth blocks: `d2s(conv'(s2d(x)))`,
    with the conv' kernel from `lpie_model.deploy.s2d_kernel` (see `rebuild_for_shape`); H and W
    must be even. XNNPACK keeps k x k pointers per output pixel for every spatial convolution
    (its indirection buffer): on blocks that is 4x fewer output pixels (and a 3x3 kernel stays
    3x3).
    """
    if s2d:
        x = SpaceToDepth2(name=f"{name}_s2d")(x)
        filters, kernel = 4 * filters, s2d_kernel_size(kernel)
    y = keras.layers.Conv2D(
        filters, kernel, padding="same", activation=activation, use_bias=use_bias, name=name
    )(x)
    return DepthToSpace2(name=f"{name}_d2s")(y) if s2d else y


def irb(x: keras.KerasTensor, c: int, name: str, config: ModelConfig) -> keras.KerasTensor:
    """Inverted residual block, expansion 1 (4c^2 + (4 + dw_kernel^2 + 1)c parameters).

    `m = pw1(x); m = act(dw(m)); m = pw2(m); y = x + m; n = pw4(act(pw3(y or m))); out = y + n`.
    `config.irb_second_input`: "m" (default) follows the released Keras code, "y" the paper's
    figure and the PyTorch port. Same parameters; "m" keeps activation ranges narrower, which
    int8 export needs (measured here: ~48 dB vs ~35 dB PSNR against fp32 at seeded init, see
    docs).
    """
    m = _conv(x, c, 1, f"{name}_pw1")
    m = keras.layers.DepthwiseConv2D(config.dw_kernel, padding="same", name=f"{name}_dw")(m)
    m = keras.layers.Activation(config.activation, name=f"{name}_act1")(m)
    m = _conv(m, c, 1, f"{name}_pw2")
    y = keras.layers.Add(name=f"{name}_add1")([x, m])
    n = _conv(y if config.irb_second_input == "y" else m, c, 1, f"{name}_pw3")
    n = keras.layers.Activation(config.activation, name=f"{name}_act2")(n)
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
    `s2d=True` runs the spatial conv(s) on space-to-depth blocks (see `_conv`).
    """
    a = ChannelPool("mean", name=f"{name}_mean")(x)
    b = ChannelPool("max", name=f"{name}_max")(x)
    if fused:
        ab = keras.layers.Concatenate(name=f"{name}_sp_concat")([a, b])
        s = _conv(ab, c, 3, f"{name}_sp_conv", activation="sigmoid", s2d=s2d)
    else:
        s_mean = _conv(a, c, 3, f"{name}_sp_conv_mean", s2d=s2d)
        s_max = _conv(b, c, 3, f"{name}_sp_conv_max", use_bias=False, s2d=s2d)
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
    config: ModelConfig,
    *,
    fused_attention: bool = False,
    s2d: bool = False,
) -> keras.KerasTensor:
    """Conv3x3(c, ReLU) -> IRB -> IRB -> Attention: one encoder or decoder stage.

    `s2d=True` runs the stage's 3x3 conv and the attention's spatial conv on space-to-depth
    blocks (see `_conv`); the depthwise convs stay in the pixel domain.
    """
    x = _conv(x, c, 3, f"{name}_conv", activation="relu", s2d=s2d)
    for i in (1, 2):
        x = irb(x, c, f"{name}_irb{i}", config)
    return attention(x, c, f"{name}_att", fused=fused_attention, s2d=s2d)


def head(
    x: keras.KerasTensor,
    config: ModelConfig,
    name: str = "head",
    *,
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
        hs = _conv(hs, 12, s2d_kernel_size(config.dw_kernel), f"{name}_dw")
        hs = keras.layers.Activation(config.activation, name=f"{name}_act")(hs)
        hs = _conv(hs, 12, 1, f"{name}_pw2")
        shortcut = _conv(x, 3, 1, f"{name}_shortcut", activation="relu")
        shortcut = SpaceToDepth2(name=f"{name}_shortcut_s2d")(shortcut)
        hs = keras.layers.Add(name=f"{name}_add")([hs, shortcut])
        return _gate_s2d(hs, name, deep=deep_gate)
    h = _conv(x, 3, 1, f"{name}_pw1")
    h = keras.layers.DepthwiseConv2D(config.dw_kernel, padding="same", name=f"{name}_dw")(h)
    h = keras.layers.Activation(config.activation, name=f"{name}_act")(h)
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
    g = _conv(hs, 12, s2d_kernel_size(7), f"{name}_gate7", activation="relu", s2d=deep)
    g = _conv(g, 12, s2d_kernel_size(5), f"{name}_gate5", activation="relu")
    g = _conv(g, 12, s2d_kernel_size(3), f"{name}_gate3", activation="sigmoid")
    gated = keras.layers.Multiply(name=f"{name}_gate_mul")([hs, g])
    return DepthToSpace2(name=f"{name}_d2s")(gated)



def build_lpienet(
    config: ModelConfig | str | None = None,
    *,
    input_shape: tuple[int | None, int | None] | None = None,
    fused_attention: bool = False,
    s2d_gate: bool = False,
    s2d_full_res: bool = False,
    name: str = "lpienet",
    **options: Any,
) -> keras.Model:
    """Builds LPIENet as a functional Keras model.

    Args:
        config: the architecture: a `ModelConfig`, a variant name ("base": widths
            16-32-64-32-16, 133,652 params; "large": 32-64-128-64-32, 514,308 params), or None
            for the defaults.
        input_shape: (H, W) for a fixed-size model; None (default) for any size. A fixed size that
            is a multiple of `ModelConfig.size_multiple` builds without the pad and crop layers.
        fused_attention: build the attention's spatial conv in its concat form (for float export;
            trained weights use the default split form, see `attention`).
        s2d_gate: build the head's gate on space-to-depth blocks (faster on CPUs; see `head`).
        s2d_full_res: also run the full-resolution spatial convs (first stage's 3x3 and
            attention convs, the head's depthwise conv) on space-to-depth blocks: less XNNPACK
            memory (see `_conv`).
        name: the model's name.
        **options: `ModelConfig` fields (variant, widths, activation, dw_kernel,
            irb_second_input) overriding those of `config`.

    Returns:
        A `keras.Model` mapping float32 (B, H, W, 3) in [0, 1] to float32 (B, H, W, 3) in
        [0, 1 - 1e-5]; its options (`ModelConfig.resolved()`) are attached as `model.lpie_config`.

    Raises:
        ModelConfigError: a bad option.
    """
    if isinstance(config, str):
        options = {"variant": config, **options}
        config = None
    if config is None or options:
        base = config.build_kwargs() if config is not None else {}
        config = ModelConfig(**{**base, **options})
    widths = config.stage_widths
    h, w = input_shape if input_shape is not None else (None, None)
    multiple = config.size_multiple

    inputs = keras.Input((h, w, 3), name="image")
    aligned = h is not None and w is not None and h % multiple == 0 and w % multiple == 0
    x = inputs if aligned else PadToMultiple(multiple, name="pad")(inputs)
    padded = x
    n_enc = len(widths) // 2 + 1
    skips = []
    for i, c in enumerate(widths[:n_enc]):
        x = stage(x, c, f"enc{i + 1}", config, fused_attention=fused_attention,
                  s2d=s2d_full_res and i == 0)
        skips.append(x)
        if i < n_enc - 1:
            x = keras.layers.MaxPooling2D(2, name=f"enc{i + 1}_pool")(x)
    for j, c in enumerate(widths[n_enc:]):
        x = stage(x, c, f"dec{j + 1}", config, fused_attention=fused_attention)
        x = Upsample2x(name=f"dec{j + 1}_up")(x)
        x = keras.layers.Concatenate(name=f"dec{j + 1}_concat")([x, skips[n_enc - 2 - j]])
    # The gate's 7x7 on 4x4 blocks needs H, W multiples of 4 (networks with >= 2 poolings).
    x = head(x, config, s2d_gate=s2d_gate, s2d_full_res=s2d_full_res,
             deep_gate=multiple % 4 == 0)
    x = keras.layers.Add(name="residual")([x, padded])
    # Clip before the crop (the same values): the crop's run-time size is the one op of a
    # dynamic-size graph XNNPACK cannot take, so it goes last, outside the delegated graph.
    x = Clip(0.0, CLIP_MAX, name="clip")(x)
    outputs = x if aligned else CropLike(name="crop")([x, inputs])
    model = keras.Model(inputs, outputs, name=name)
    # The build options, so that `rebuild_for_shape` and exports can rebuild this network.
    model.lpie_config = config.resolved()
    return model

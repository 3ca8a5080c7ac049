"""Deploy rewrites: the same trained network and weights rebuilt for a fixed input size and for
faster ops (fused attention, space-to-depth convolutions). Results agree to float rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from lpie_model.config import ModelConfig
from lpie_model.errors import ModelConfigError
from lpie_model.layers import s2d_kernel_size
from lpie_model.lpienet import build_lpienet


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



MEMORY_LAYOUTS = ("auto", "low", "fast")
LOW_MEMORY_MIN_PIXELS = 1_000_000  # "auto": the low-memory layout from about 1024 x 1024 up


def low_memory_layout(memory: str, size: tuple[int, int] | None, precision: str = "fp32") -> bool:
    """Whether an export uses the low-memory layout (`s2d_full_res`) for `memory`.

    "low": always (about half the plain build's peak memory, ~7% more CPU time for fp32);
    "fast": never (only the gate on blocks); "auto": for int8 always (there the layout is also
    the faster one: its 3-channel convs become 12-channel ones, which XNNPACK's int8 kernels
    run far better; measured 0.54x vs 0.64x the plain fp32 build at 800x800), otherwise for
    dynamic-size exports (which may meet any photo size) and fixed sizes of at least
    `LOW_MEMORY_MIN_PIXELS` pixels, where memory runs to gigabytes; smaller fixed float sizes
    (tiles) get the fast layout.

    Raises:
        ModelConfigError: an unknown `memory`.
    """
    if memory not in MEMORY_LAYOUTS:
        raise ModelConfigError(f"memory layout {memory!r}: valid: {', '.join(MEMORY_LAYOUTS)}")
    if memory != "auto":
        return memory == "low"
    if precision == "int8":
        return True
    return size is None or size[0] * size[1] >= LOW_MEMORY_MIN_PIXELS


def rebuild_for_shape(
    model: keras.Model,
    height: int | None,
    width: int | None,
    config: Mapping[str, Any] | None = None,
    *,
    fused_attention: bool = False,
    s2d_gate: bool = False,
    s2d_full_res: bool = False,
) -> keras.Model:
    """The same network and weights for a fixed (height, width) input (or dynamic with None).

    `config` are the build options (default: `model.lpie_config`, set by `build_lpienet`).
    Weights are copied by layer name. The optional rewrites
    compute the same function with other ops (results agree to float rounding):
    `fused_attention` merges each attention's two spatial convs into one concat-form conv,
    `s2d_gate` runs the head's gate on space-to-depth blocks, `s2d_full_res` also the
    full-resolution spatial convs (see `build_lpienet`). The source model must be a plain
    build (split attention, pixel-domain gate), as trained.
    """
    options = config if config is not None else getattr(model, "lpie_config", {})
    new = build_lpienet(
        ModelConfig.from_dict(options),
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
            if s2d_full_res and layer.name == "head_gate7" and _is_deep_gate(layer):
                weights = _s2d_weights(weights)
        elif s2d_full_res and (layer.name in blocks or layer.name in ("head_dw", "head_pw2")):
            weights = _s2d_weights(weights, depthwise=layer.name == "head_dw")
        layer.set_weights(weights)
    return new


def _is_deep_gate(layer: Any) -> bool:
    """Whether the head's 7x7 gate conv is built on 4x4 blocks (networks with >= 2 poolings):
    a 48-channel kernel of the twice-rewritten size."""
    shape = layer.weights[0].shape
    return len(shape) == 4 and shape[0] == s2d_kernel_size(s2d_kernel_size(7)) and shape[2] == 48


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


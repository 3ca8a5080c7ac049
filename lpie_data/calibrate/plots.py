"""Pictures of a calibration: the noise-level fit (variance against intensity).

Drawn with numpy and Pillow's ImageDraw, like :mod:`lpie_data.synth.psf_view`; PSFs are
pictured by :func:`lpie_data.synth.psf_view.render_psf`.
"""

from __future__ import annotations

import numpy as np

from lpie_data.calibrate.noise import NoiseCalibration, NoiseGroup
from lpie_data.synth.psf_view import _CHANNEL_COLOURS, BACKGROUND, GRID, INK

UNUSED = (190, 190, 190)


def _panel(draw, group: NoiseGroup, box: tuple[int, int, int, int], title: str) -> None:
    x0, y0, x1, y1 = box
    means = np.concatenate([s.mean for s in group.bins]) if group.bins else np.zeros(1)
    vars_ = np.concatenate([s.var for s in group.bins]) if group.bins else np.zeros(1)
    xmax = float(means.max()) * 1.05 if means.size and means.max() > 0 else 1.0
    line_top = group.beta1 * xmax + group.beta2
    vmax = float(max(vars_.max() if vars_.size else 0.0, line_top)) * 1.1 or 1.0

    def px(x: float, v: float) -> tuple[float, float]:
        return x0 + (x1 - x0) * x / xmax, y1 - (y1 - y0) * v / vmax

    for i in range(1, 5):
        yy = y0 + (y1 - y0) * i / 5
        draw.line([(x0, yy), (x1, yy)], fill=GRID)
    draw.rectangle([x0, y0, x1, y1], outline=INK)
    for c, stats in enumerate(group.bins):
        for m, v, u in zip(stats.mean, stats.var, stats.used, strict=True):
            cx, cy = px(float(m), float(v))
            colour = _CHANNEL_COLOURS[c] if u else UNUSED
            draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], outline=colour)
        b1, b2 = group.channel_beta1[c], group.channel_beta2[c]
        draw.line([px(0.0, b2), px(xmax, b1 * xmax + b2)], fill=_CHANNEL_COLOURS[c], width=1)
    draw.line([px(0.0, group.beta2), px(xmax, line_top)], fill=INK, width=2)
    draw.text((x0 + 4, y0 + 2), title, fill=INK)
    draw.text((x0 + 4, y0 + 16), f"var = {group.beta1:.4g} x + {group.beta2:.4g}  "
              f"(residual {group.residual:.1%}, {group.pixels} px)", fill=INK)
    draw.text((x0 - 2, y1 + 3), "0", fill=INK)
    draw.text((x1 - 70, y1 + 3), f"x = {xmax:.3g}", fill=INK)
    draw.text((x0 - 2, y0 - 13), f"var {vmax:.3g}", fill=INK)


def render_noise(calibration: NoiseCalibration, *, width: int = 640,
                 panel_height: int = 300) -> np.ndarray:
    """uint8 RGB picture: per group, the binned variances against intensity (R, G, B dots;
    grey: bins left out near a clip) with the per-channel lines and the pooled fit (black)."""
    from PIL import Image, ImageDraw

    margin, head = 48, 22
    n = len(calibration.groups)
    height = head + n * (panel_height + margin) + margin // 2
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 4), f"noise of {calibration.dataset} ({calibration.value_space}, intensity "
              f"{calibration.intensity}): variance of the residual against intensity", fill=INK)
    for i, group in enumerate(calibration.groups):
        top = head + margin // 2 + i * (panel_height + margin)
        name = ", ".join(f"{k}={v}" for k, v in group.group.items()) or "all pairs"
        _panel(draw, group, (margin, top, width - 16, top + panel_height), name)
    return np.asarray(canvas, dtype=np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 RGB image encoded as PNG."""
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", image, extension=".png")

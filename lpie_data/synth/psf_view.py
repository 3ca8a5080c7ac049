"""A picture of a PSF: log-scale image per colour channel plus its radial profile.

Drawn with numpy and Pillow's ImageDraw (already needed by imageio), no plotting library.
"""

from __future__ import annotations

import numpy as np

from lpie_data.synth.psf import Psf

# anchors of a dark-to-bright colour map (black, purple, red, orange, pale yellow)
_CMAP_ANCHORS = np.array(
    [[0, 0, 0], [60, 15, 110], [190, 40, 80], [250, 140, 20], [252, 250, 190]], dtype=np.float64
)
_CHANNEL_COLOURS = ((230, 60, 50), (60, 190, 60), (70, 110, 240))
BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
GRID = (215, 215, 215)


def colour_map(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB (..., 3) along the colour map's anchors."""
    v = np.clip(v, 0.0, 1.0) * (len(_CMAP_ANCHORS) - 1)
    lo = np.minimum(np.floor(v).astype(int), len(_CMAP_ANCHORS) - 2)
    t = (v - lo)[..., None]
    rgb = _CMAP_ANCHORS[lo] * (1 - t) + _CMAP_ANCHORS[lo + 1] * t
    return np.rint(rgb).astype(np.uint8)


def _downsample(channel: np.ndarray, panel: int) -> np.ndarray:
    """Block sums (energy kept, so faint lobes stay visible) to at most ``panel`` pixels."""
    factor = max(1, int(np.ceil(max(channel.shape) / panel)))
    h, w = (s // factor * factor for s in channel.shape)
    c = channel[:h, :w]
    return c.reshape(h // factor, factor, w // factor, factor).sum(axis=(1, 3))


def radial_profile(channel: np.ndarray) -> np.ndarray:
    """Mean of a (h, w) PSF channel over rings of integer radius about (h // 2, w // 2)."""
    h, w = channel.shape
    yy, xx = np.indices((h, w))
    r = np.rint(np.hypot(yy - h // 2, xx - w // 2)).astype(np.int64)
    sums = np.bincount(r.ravel(), weights=channel.ravel().astype(np.float64))
    counts = np.bincount(r.ravel())
    return sums / np.maximum(counts, 1)


def render_psf(psf: Psf, *, panel: int = 320, decades: float = 6.0) -> np.ndarray:
    """uint8 RGB picture: three log-scale panels (R, G, B; ``decades`` below each peak) above
    a plot of the radial profiles (log scale, same decades)."""
    from PIL import Image, ImageDraw

    kernel = psf.kernel
    margin, label_h, plot_h = 12, 18, 240
    panels = []
    for c in range(3):
        small = _downsample(kernel[:, :, c], panel)
        logv = np.log10(np.maximum(small / small.max(), 10.0**-decades))
        panels.append(colour_map(1.0 + logv / decades))
    ph = max(p.shape[0] for p in panels)
    pw = max(p.shape[1] for p in panels)
    width = 3 * pw + 4 * margin
    height = margin + label_h + ph + margin + label_h + plot_h + 2 * margin + label_h
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    h, w = kernel.shape[:2]
    title = f"{psf.id}  {h}x{w}  log10 scale, {decades:g} decades"
    draw.text((margin, margin // 2), title, fill=INK)
    top = margin + label_h
    for c, p in enumerate(panels):
        left = margin + c * (pw + margin)
        canvas.paste(Image.fromarray(p), (left, top))
        draw.text((left, top + ph + 2), "RGB"[c], fill=_CHANNEL_COLOURS[c])

    # radial profile plot
    px0, py0 = margin + 40, top + ph + margin + label_h
    px1, py1 = width - margin, py0 + plot_h
    profiles = [radial_profile(kernel[:, :, c]) for c in range(3)]
    r_max = min(len(p) for p in profiles) - 1
    max_r = min(r_max, min(h, w) // 2)
    for d in range(int(decades) + 1):
        y = py0 + (py1 - py0) * d / decades
        draw.line([(px0, y), (px1, y)], fill=GRID)
        draw.text((margin, y - 6), f"1e-{d}" if d else "1", fill=INK)
    draw.rectangle([px0, py0, px1, py1], outline=INK)
    for c, prof in enumerate(profiles):
        vals = prof[: max_r + 1] / prof.max()
        logv = np.log10(np.maximum(vals, 10.0**-decades))
        xs = px0 + (px1 - px0) * np.arange(len(vals)) / max(max_r, 1)
        ys = py0 + (py1 - py0) * (-logv / decades)
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=_CHANNEL_COLOURS[c],
                  width=1)
    draw.text((px0, py1 + 4), "0", fill=INK)
    draw.text((px1 - 60, py1 + 4), f"r = {max_r} px", fill=INK)
    draw.text((px0 + 60, py1 + 4), "radial mean profile (R, G, B)", fill=INK)
    return np.asarray(canvas, dtype=np.uint8)

"""Image quality metrics: PSNR and SSIM, in NumPy (evaluation) and TensorFlow (training).

NumPy versions compute in float64 and are the numbers to report; they agree with
`skimage.metrics.peak_signal_noise_ratio` / `structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)`. SSIM is the standard
Wang et al. (2004) index: 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, averaged over the
"valid" positions (the window fully inside the image) and then over channels. The TensorFlow
versions use `tf.image.psnr` / `tf.image.ssim`, which compute the same quantities in float32.

TensorFlow is imported only by the `*_tf` functions, so evaluation code that only needs the NumPy
metrics does not pay for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from lpie_model.errors import ShapeError

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ShapeError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two same-shape arrays, in float64."""
    a, b = _pair(a, b)
    return float(np.mean((a - b) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(data_range^2 / MSE); inf for identical inputs.

    Args:
        a, b: same-shape arrays (any shape, e.g. H x W x 3), values in [0, data_range].
    """
    err = mse(a, b)
    if err == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / err))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of `size` taps (float64, sums to 1)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur_valid(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable filtering over axes 0 and 1, keeping only positions where the window fits."""
    r = (len(window) - 1) // 2
    out = ndimage.correlate1d(img, window, axis=0, mode="reflect")
    out = ndimage.correlate1d(out, window, axis=1, mode="reflect")
    return out[r : out.shape[0] - r, r : out.shape[1] - r]


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Per-position SSIM over the valid region: (H - 10) x (W - 10) [x C], float64."""
    a, b = _pair(a, b)
    if a.ndim not in (2, 3) or min(a.shape[:2]) < SSIM_WINDOW:
        raise ShapeError(
            f"SSIM needs H x W or H x W x C images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, "
            f"got shape {a.shape}"
        )
    w = gaussian_window()
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_a, mu_b = _blur_valid(a, w), _blur_valid(b, w)
    var_a = _blur_valid(a * a, w) - mu_a**2
    var_b = _blur_valid(b * b, w) - mu_b**2
    cov = _blur_valid(a * b, w) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return num / den


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al.), mean over valid positions then channels.

    Args:
        a, b: H x W or H x W x C arrays (H, W >= 11), values in [0, data_range].
    Returns:
        SSIM in [-1, 1]; 1 for identical images.
    """
    s = ssim_map(a, b, data_range)
    if s.ndim == 3:
        return float(np.mean(s.mean(axis=(0, 1))))
    return float(s.mean())


# --------------------------------------------------------------------------- TensorFlow


def psnr_tf(y_true: Any, y_pred: Any) -> Any:
    """Per-image PSNR (dB), data range 1: (B, H, W, C) float tensors -> (B,) float32."""
    import tensorflow as tf

    return tf.image.psnr(tf.cast(y_true, tf.float32), tf.cast(y_pred, tf.float32), max_val=1.0)


def ssim_tf(y_true: Any, y_pred: Any) -> Any:
    """Per-image SSIM, data range 1, 11x11 Gaussian sigma 1.5: (B, H, W, C) -> (B,) float32.

    H and W must be at least 11.
    """
    import tensorflow as tf

    return tf.image.ssim(
        tf.cast(y_true, tf.float32),
        tf.cast(y_pred, tf.float32),
        max_val=1.0,
        filter_size=SSIM_WINDOW,
        filter_sigma=SSIM_SIGMA,
        k1=SSIM_K1,
        k2=SSIM_K2,
    )


def training_metrics() -> list:
    """Keras metrics for `model.compile(metrics=...)`: batch-averaged "psnr" and "ssim"."""
    import keras

    return [
        keras.metrics.MeanMetricWrapper(psnr_tf, name="psnr"),
        keras.metrics.MeanMetricWrapper(ssim_tf, name="ssim"),
    ]

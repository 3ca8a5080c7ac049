"""Losses and metrics: known answers, agreement with scikit-image, NumPy vs TensorFlow."""

import numpy as np
import pytest
import tensorflow as tf
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lpie_model import losses, metrics
from lpie_model.errors import ModelConfigError, ShapeError


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    clean = np.clip(np.cumsum(rng.normal(0, 0.05, (48, 40, 3)), axis=1) * 0.2 + 0.5, 0, 1).astype(
        np.float32
    )
    noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    return clean, noisy


def test_psnr_known_mse():
    a = np.zeros((8, 8, 3))
    b = np.full((8, 8, 3), 0.1)  # MSE 0.01 -> 20 dB
    assert metrics.psnr(a, b) == pytest.approx(20.0, abs=1e-12)
    assert metrics.psnr(a, a) == float("inf")
    assert metrics.psnr(a * 255, b * 255, data_range=255) == pytest.approx(20.0, abs=1e-12)


def test_ssim_identical_is_one(pair):
    clean, _ = pair
    assert metrics.ssim(clean, clean) == pytest.approx(1.0, abs=1e-12)
    assert float(metrics.ssim_tf(clean[None], clean[None])[0]) == pytest.approx(1.0, abs=1e-6)


def test_metrics_match_skimage(pair):
    clean, noisy = pair
    want = structural_similarity(
        clean.astype(np.float64),
        noisy.astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1,
        channel_axis=-1,
    )
    assert metrics.ssim(clean, noisy) == pytest.approx(want, abs=1e-10)
    assert metrics.ssim(clean[..., 0], noisy[..., 0]) == pytest.approx(
        structural_similarity(
            clean[..., 0].astype(np.float64),
            noisy[..., 0].astype(np.float64),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1,
        ),
        abs=1e-10,
    )
    assert metrics.psnr(clean, noisy) == pytest.approx(
        peak_signal_noise_ratio(clean.astype(np.float64), noisy.astype(np.float64), data_range=1),
        abs=1e-10,
    )


def test_tf_metrics_match_numpy(pair):
    clean, noisy = pair
    batch_t, batch_p = np.stack([clean, clean]), np.stack([noisy, clean])
    p = metrics.psnr_tf(batch_t, batch_p).numpy()
    s = metrics.ssim_tf(batch_t, batch_p).numpy()
    assert p.shape == s.shape == (2,)
    assert p[0] == pytest.approx(metrics.psnr(clean, noisy), abs=1e-3)
    assert s[0] == pytest.approx(metrics.ssim(clean, noisy), abs=1e-5)
    assert s[1] == pytest.approx(1.0, abs=1e-6)


def test_metric_input_errors():
    with pytest.raises(ShapeError, match="shapes differ"):
        metrics.psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ShapeError, match="at least 11x11"):
        metrics.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


def test_l1_known_answer():
    a = tf.zeros((2, 4, 4, 3))
    b = tf.concat([tf.fill((1, 4, 4, 3), 0.25), tf.zeros((1, 4, 4, 3))], axis=0)
    np.testing.assert_allclose(losses.l1_loss(a, b).numpy(), [0.25, 0.0])


def test_gradient_loss_of_ramp():
    h, w, slope = 6, 10, 0.05
    ramp = np.broadcast_to(np.arange(w, dtype=np.float32) * slope, (1, h, w))
    ramp = np.repeat(ramp[..., None], 3, axis=-1)
    flat = np.full_like(ramp, 0.3)
    assert float(losses.gradient_loss(flat, ramp)[0]) == pytest.approx(slope, rel=1e-5)
    # A constant offset has no gradient, and the loss is symmetric in x and y.
    assert float(losses.gradient_loss(flat, flat + 0.2)[0]) == pytest.approx(0.0, abs=1e-7)
    transposed = np.transpose(ramp, (0, 2, 1, 3))
    assert float(losses.gradient_loss(np.full_like(transposed, 0.3), transposed)[0]) == (
        pytest.approx(slope, rel=1e-5)
    )


def test_combined_loss_is_weighted_sum(pair):
    clean, noisy = pair
    t, p = clean[None], noisy[None]
    loss = losses.combined_loss(alpha=0.5, beta=2.0)
    want = 0.5 * losses.ssim_loss(t, p) + losses.l1_loss(t, p) + 2.0 * losses.gradient_loss(t, p)
    np.testing.assert_allclose(loss(t, p).numpy(), want.numpy(), rtol=1e-6)
    assert float(losses.ssim_loss(t, p)[0]) == pytest.approx(1 - metrics.ssim(clean, noisy), 1e-4)
    assert float(losses.combined_loss(0, 0)(t, t)[0]) == 0.0
    with pytest.raises(ModelConfigError, match="alpha"):
        losses.combined_loss(-1.0, 0.0)


def test_combined_loss_in_graph_and_float16(pair):
    clean, noisy = pair
    loss = losses.combined_loss(alpha=1.0, beta=1.0)
    t = tf.constant(clean[None])
    p = tf.Variable(noisy[None])
    with tf.GradientTape() as tape:
        value = tf.function(loss)(t, p)
    grad = tape.gradient(value, p)
    assert np.isfinite(grad.numpy()).all() and np.abs(grad.numpy()).max() > 0
    half = loss(tf.cast(t, tf.float16), tf.cast(p, tf.float16))
    assert half.dtype == tf.float32
    np.testing.assert_allclose(half.numpy(), value.numpy(), rtol=1e-2)

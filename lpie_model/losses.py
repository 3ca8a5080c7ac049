"""Training losses: L1, SSIM, image-gradient L1, and the paper's weighted sum.

Every loss takes `y_true`, `y_pred`: float tensors (B, H, W, C), values in [0, 1], and returns one
value per image, shape (B,), float32 (the Keras convention: Keras averages over the batch and
handles distribution strategies). Inputs are cast to float32, so mixed-precision models work.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from lpie_model.errors import ModelConfigError
from lpie_model.metrics import ssim_tf

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def _cast(y_true: tf.Tensor, y_pred: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(y_true, tf.float32), tf.cast(y_pred, tf.float32)


def l1_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Mean absolute error per image: (B,)."""
    y_true, y_pred = _cast(y_true, y_pred)
    return tf.reduce_mean(tf.abs(y_pred - y_true), axis=[1, 2, 3])


def ssim_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """1 - SSIM per image (11x11 Gaussian window, sigma 1.5, data range 1): (B,). H, W >= 11."""
    return 1.0 - ssim_tf(y_true, y_pred)


def image_gradients(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Forward differences: dy (B, H-1, W, C) and dx (B, H, W-1, C)."""
    return x[:, 1:, :, :] - x[:, :-1, :, :], x[:, :, 1:, :] - x[:, :, :-1, :]


def gradient_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """L1 between image gradients (after Ma et al. 2020), per image: (B,).

    `mean|dy(pred) - dy(true)| + mean|dx(pred) - dx(true)|`, each mean over its own H-1 x W or
    H x W-1 positions and the channels. A horizontal ramp of slope s against a flat image gives s.
    """
    y_true, y_pred = _cast(y_true, y_pred)
    dy_t, dx_t = image_gradients(y_true)
    dy_p, dx_p = image_gradients(y_pred)
    return tf.reduce_mean(tf.abs(dy_p - dy_t), axis=[1, 2, 3]) + tf.reduce_mean(
        tf.abs(dx_p - dx_t), axis=[1, 2, 3]
    )


def combined_loss(alpha: float, beta: float) -> LossFn:
    """The paper's loss `alpha * L_SSIM + L_1 + beta * L_Grad` (Eq. 2) as a Keras loss function.

    The paper sets alpha and beta "empirically" without publishing them; training recipes set them.

    Raises:
        ModelConfigError: a negative weight.
    """
    if alpha < 0 or beta < 0:
        raise ModelConfigError(f"loss weights must be >= 0, got alpha={alpha}, beta={beta}")
    alpha, beta = float(alpha), float(beta)

    def lpie_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        total = l1_loss(y_true, y_pred)
        if alpha:
            total += alpha * ssim_loss(y_true, y_pred)
        if beta:
            total += beta * gradient_loss(y_true, y_pred)
        return total

    return lpie_loss


LOSSES: dict[str, LossFn] = {"l1": l1_loss, "ssim": ssim_loss, "gradient": gradient_loss}

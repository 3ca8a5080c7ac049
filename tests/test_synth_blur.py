"""The FFT blur against direct convolution, Dirac and conservation known answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from lpie_data.synth.blur import (
    blur,
    blur_crop,
    clear_spectrum_cache,
    psf_spectrum,
    reflect_indices,
    take_window,
    to_channels_first,
)
from lpie_data.synth.psf import make_psf


def random_psf(rng, h, w):
    k = rng.random((h, w, 3)).astype(np.float32) ** 4
    return make_psf(k, f"rand{h}x{w}")


def direct_blur(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Reference: symmetric-pad x so the PSF centre (h//2, w//2) lines up, then direct 'valid'
    convolution per channel in float64."""
    ph, pw = kernel.shape[:2]
    cy, cx = ph // 2, pw // 2
    out = []
    for c in range(3):
        padded = np.pad(x[:, :, c].astype(np.float64),
                        ((ph - 1 - cy, cy), (pw - 1 - cx, cx)), mode="symmetric")
        out.append(scipy.signal.convolve(padded, kernel[:, :, c].astype(np.float64),
                                         mode="valid", method="direct"))
    return np.stack(out, axis=2)


@pytest.mark.parametrize("psf_shape", [(7, 7), (6, 9), (1, 5), (25, 31)])
def test_matches_direct_convolution(psf_shape):
    rng = np.random.default_rng(1)
    x = rng.random((30, 40, 3)).astype(np.float32) * 5
    psf = random_psf(rng, *psf_shape)
    got = blur(x, psf)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, direct_blur(x, psf.kernel), rtol=1e-5, atol=1e-5)


def test_psf_larger_than_the_image_reflects_repeatedly():
    rng = np.random.default_rng(2)
    x = rng.random((12, 10, 3)).astype(np.float32)
    psf = random_psf(rng, 41, 37)
    np.testing.assert_allclose(blur(x, psf), direct_blur(x, psf.kernel), rtol=1e-5, atol=1e-5)


def test_crop_uses_the_source_context():
    rng = np.random.default_rng(3)
    source = rng.random((60, 70, 3)).astype(np.float32)
    psf = random_psf(rng, 15, 15)
    full = direct_blur(source, psf.kernel)
    box = (20, 25, 16, 18)
    got = blur_crop(to_channels_first(source), box, psf)
    np.testing.assert_allclose(got, full[20:36, 25:43], rtol=1e-5, atol=1e-5)
    # a crop at the border: reflect beyond the source, context inside it
    got = blur_crop(to_channels_first(source), (0, 52, 16, 18), psf)
    np.testing.assert_allclose(got, full[0:16, 52:70], rtol=1e-5, atol=1e-5)


def test_dirac_returns_x_exactly_and_off_centre_dirac_shifts():
    rng = np.random.default_rng(4)
    x = rng.random((20, 24, 3)).astype(np.float32) * 300
    d = np.zeros((9, 9, 3), np.float32)
    d[4, 4] = 1
    assert np.array_equal(blur(x, make_psf(d, "dirac")), x)
    d = np.zeros((9, 9, 3), np.float32)
    d[4, 6] = 1  # 2 px to the right of the centre: the image moves right
    shifted = blur(x, make_psf(d, "shift"))
    assert np.array_equal(shifted[:, 2:], x[:, :-2])


def test_blur_conserves_energy_and_the_mean():
    rng = np.random.default_rng(5)
    psf = random_psf(rng, 21, 21)
    x = np.zeros((64, 64, 3), np.float32)
    x[20:44, 20:44] = rng.random((24, 24, 3))  # all light well inside the frame
    y = blur(x, psf)
    np.testing.assert_allclose(y.sum(axis=(0, 1)), x.sum(axis=(0, 1)), rtol=1e-5)
    x = rng.random((128, 128, 3)).astype(np.float32)
    np.testing.assert_allclose(blur(x, psf).mean(axis=(0, 1)), x.mean(axis=(0, 1)), rtol=2e-3)


def test_spectrum_is_cached_per_psf_and_shape():
    clear_spectrum_cache()
    psf = random_psf(np.random.default_rng(6), 9, 9)
    a = psf_spectrum(psf, (32, 32))
    assert psf_spectrum(psf, (32, 32)) is a
    assert psf_spectrum(psf, (40, 32)) is not a
    assert psf_spectrum(psf, (32, 32), cache=False) is not a
    assert a.dtype == np.complex64 and a.shape == (3, 32, 17)


def test_reflect_indices_and_windows():
    assert reflect_indices(-3, 10, 4).tolist() == [2, 1, 0, 0, 1, 2, 3, 3, 2, 1]
    src = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    inside = take_window(src, 1, 1, 2, 2)
    np.testing.assert_array_equal(inside, src[:, 1:3, 1:3])
    outside = take_window(src, -2, -1, 7, 6)
    np.testing.assert_array_equal(outside, np.pad(src, ((0, 0), (2, 2), (1, 1)), "symmetric"))


def test_fill_window_matches_take_window_and_zero_pads():
    from lpie_data.synth.blur import fill_window, take_window

    rng = np.random.default_rng(3)
    source = rng.random((3, 9, 13), dtype=np.float32)
    for top, left, height, width in [(0, 0, 9, 13), (-4, -6, 20, 30), (5, 10, 12, 3),
                                     (-30, 2, 70, 5), (8, 12, 1, 1)]:
        out = np.full((3, height + 2, width + 3), np.nan, np.float32)
        fill_window(out, source, top, left, height, width)
        assert np.array_equal(out[:, :height, :width],
                              take_window(source, top, left, height, width))
        assert not out[:, height:].any() and not out[:, :, width:].any()
    # symmetric reflection: the edge pixel repeats
    out = np.empty((3, 1, 4), np.float32)
    fill_window(out, source, 0, -2, 1, 4)
    assert np.array_equal(out[0, 0], source[0, 0, [1, 0, 0, 1]])

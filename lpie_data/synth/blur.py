"""The blur x * k: FFT convolution with real float32 transforms and reflect padding.

Convention: a PSF of shape (ph, pw, 3) has its centre at (ph // 2, pw // 2), and
``out[i, j] = sum_{u, v} x[i + ph//2 - u, j + pw//2 - v] * k[u, v]`` per channel, so a Dirac at
the centre returns x unchanged. Light reaching a crop comes from the scene around it: the crop is
blurred with the source's own pixels around it where they exist and with the source mirrored
at its border beyond (``symmetric`` reflection: the edge pixel repeats), so no dark borders.

Only the "valid" part of a circular convolution is kept, so the transform needs to be just as
large as the padded window (crop + PSF - 1), rounded up to a fast size. The PSF spectrum is
computed once per (PSF, transform shape) and cached in the process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import scipy.fft

from lpie_data.synth.psf import Psf

Box = tuple[int, int, int, int]  # y, x, h, w

_SPECTRA: OrderedDict[tuple, np.ndarray] = OrderedDict()
_SPECTRA_LOCK = threading.Lock()
SPECTRUM_CACHE_BYTES = 512 << 20


def reflect_indices(start: int, length: int, size: int) -> np.ndarray:
    """Indices ``start .. start + length - 1`` folded into [0, size) by symmetric reflection."""
    idx = np.mod(np.arange(start, start + length), 2 * size)
    return np.where(idx >= size, 2 * size - 1 - idx, idx)


def take_window(source: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """A (C, height, width) float32 window of a channels-first (C, H, W) source.

    Parts of the window beyond the source's border are its symmetric reflection (repeated as
    often as needed, so windows larger than the source work too). Returns a new array.
    """
    _, h, w = source.shape
    if top >= 0 and left >= 0 and top + height <= h and left + width <= w:
        return np.array(source[:, top : top + height, left : left + width], dtype=np.float32)
    rows = reflect_indices(top, height, h)
    cols = reflect_indices(left, width, w)
    return np.take(np.take(source, rows, axis=1), cols, axis=2).astype(np.float32, copy=False)


def _runs(idx: np.ndarray) -> list[tuple[int, slice]]:
    """(destination start, source slice) of each contiguous run (step +1 or -1) of ``idx``."""
    out = []
    start = 0
    n = len(idx)
    while start < n:
        step = 1 if start + 1 >= n or idx[start + 1] >= idx[start] else -1
        end = start + 1
        while end < n and idx[end] - idx[end - 1] == step:
            end += 1
        first, last = int(idx[start]), int(idx[end - 1])
        stop = last + step
        out.append((start, slice(first, stop if stop >= 0 else None, step)))
        start = end
    return out


def fill_window(out: np.ndarray, source: np.ndarray, top: int, left: int, height: int,
                width: int) -> None:
    """Write the window of :func:`take_window` into ``out[:, :height, :width]`` and zeros into
    the rest of ``out`` (C, fh, fw): one pass, block copies, no index arrays over pixels."""
    _, h, w = source.shape
    rows = _runs(reflect_indices(top, height, h))
    cols = _runs(reflect_indices(left, width, w))
    for r0, rs in rows:
        nr = len(range(*rs.indices(h)))
        for c0, cs in cols:
            nc = len(range(*cs.indices(w)))
            out[:, r0 : r0 + nr, c0 : c0 + nc] = source[:, rs, cs]
    out[:, height:, :] = 0.0
    out[:, :height, width:] = 0.0


def fft_shape_for(crop: tuple[int, int], psf_shape: tuple[int, int]) -> tuple[int, int]:
    """Fast real-FFT sizes for a crop blurred by a PSF: next_fast_len(crop + psf - 1)."""
    return tuple(
        scipy.fft.next_fast_len(c + p - 1, real=True) for c, p in zip(crop, psf_shape, strict=True)
    )  # type: ignore[return-value]


def psf_spectrum(
    psf: Psf, fft_shape: tuple[int, int], *, workers: int | None = None, cache: bool = True
) -> np.ndarray:
    """rfft2 of the PSF zero-padded to ``fft_shape``: complex64 (3, fh, fw // 2 + 1).

    Cached per (PSF digest, fft_shape) when ``cache`` (least recently used entries are dropped
    past ``SPECTRUM_CACHE_BYTES``).
    """
    if not cache:
        return _spectrum(psf, fft_shape, workers)
    key = (psf.digest, tuple(fft_shape))
    with _SPECTRA_LOCK:  # pairs made on several threads share the cache (computed once)
        if key in _SPECTRA:
            _SPECTRA.move_to_end(key)
            return _SPECTRA[key]
        spectrum = _SPECTRA[key] = _spectrum(psf, fft_shape, workers)
        while sum(s.nbytes for s in _SPECTRA.values()) > SPECTRUM_CACHE_BYTES and len(_SPECTRA) > 1:
            _SPECTRA.popitem(last=False)
    return spectrum


def _spectrum(psf: Psf, fft_shape: tuple[int, int], workers: int | None) -> np.ndarray:
    kernel = np.ascontiguousarray(psf.kernel.transpose(2, 0, 1), dtype=np.float32)
    spectrum = scipy.fft.rfft2(kernel, s=fft_shape, workers=workers)
    return spectrum.astype(np.complex64, copy=False)


def clear_spectrum_cache() -> None:
    """Forget every cached PSF spectrum."""
    _SPECTRA.clear()


def blur_crop(
    source: np.ndarray,
    box: Box,
    psf: Psf,
    *,
    workers: int | None = None,
    cache: bool = True,
    gain: float = 1.0,
) -> np.ndarray:
    """The crop ``box`` = (y, x, h, w) of ``gain * (source * psf)``, float32 (h, w, 3).

    ``source``: channels-first float32 (3, H, W) linear image (see :func:`to_channels_first`);
    the box must lie inside it. ``workers``: threads for scipy.fft. ``gain`` is applied while
    the result is copied out (no extra pass). A Dirac PSF is applied as an exact shift.
    """
    y, x, h, w = box
    ph, pw = psf.kernel.shape[:2]
    cy, cx = ph // 2, pw // 2
    if psf.dirac is not None:
        dy, dx = psf.dirac
        window = take_window(source, y + cy - dy, x + cx - dx, h, w)
        return _to_hwc(window, gain)
    fft_shape = fft_shape_for((h, w), (ph, pw))
    spectrum = psf_spectrum(psf, fft_shape, workers=workers, cache=cache)
    # The padded window is written straight into a transform-sized buffer (zeros beyond it, as
    # rfft2(s=...) would pad): no separate window array, no padding copy.
    region = np.empty((source.shape[0], *fft_shape), np.float32)
    fill_window(region, source, y - (ph - 1 - cy), x - (pw - 1 - cx), h + ph - 1, w + pw - 1)
    freq = scipy.fft.rfft2(region, workers=workers, overwrite_x=True)
    del region
    freq *= spectrum
    # irfft2 by hand, pruned: the column transforms run over every frequency column, but the row
    # transforms only over the h rows that are kept (half the rows: ~1/8 of the FFT work).
    # 1 / fh is folded into the gain (one scaling pass fewer).
    rows = scipy.fft.ifft(freq, axis=-2, norm="forward", workers=workers, overwrite_x=True)
    del freq
    full = scipy.fft.irfft(rows[:, ph - 1 : ph - 1 + h], n=fft_shape[1], axis=-1, workers=workers)
    return _to_hwc(full[:, :, pw - 1 : pw - 1 + w], gain / np.float32(fft_shape[0]))


def _to_hwc(chw: np.ndarray, gain: float) -> np.ndarray:
    out = np.empty((chw.shape[1], chw.shape[2], chw.shape[0]), dtype=np.float32)
    if gain == 1.0:
        out[...] = chw.transpose(1, 2, 0)
    else:
        np.multiply(chw.transpose(1, 2, 0), np.float32(gain), out=out)
    return out


def to_channels_first(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> contiguous float32 (3, H, W), the layout :func:`blur_crop` reads."""
    return np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1), dtype=np.float32)


def blur(x: np.ndarray, psf: Psf, *, workers: int | None = None) -> np.ndarray:
    """``x * psf`` at the size of x (float32 (H, W, 3)), reflect-padded at the borders."""
    h, w = x.shape[:2]
    return blur_crop(to_channels_first(x), (0, 0, h, w), psf, workers=workers)

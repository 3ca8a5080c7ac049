"""Estimate a PSF k from pairs in linear light whose input is the blurred target: y ~ x * k.

Least squares over all pairs and the three channels separately, with clipped input pixels and
a border left out, a smoothness prior, and k >= 0 with each channel summing to 1:

    minimise  sum_p || M_p (A_p k - y_p) ||^2 + lam * || grad k ||^2

``A_p k`` is the blur of the target with synth's convention (:mod:`lpie_data.synth.blur`): the
target is extended beyond its border by symmetric reflection, which is exact for pairs that
``synth`` made from whole images and an approximation for crops (light from outside the crop
is unknown), hence the border left out of the fit (``border``). All operators are FFTs of the
padded target, so PSFs as large as the pairs work.

Solver: conjugate gradients on the normal equations, preconditioned by the inverse of their
circulant (Wiener) approximation, so the first step is the Wiener estimate; then the estimate
is projected onto k >= 0, sum 1 and refined by a few projected-gradient steps that keep it
there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from lpie_data.calibrate.pairs import LinearPairs
from lpie_data.errors import ConfigError, DataError
from lpie_data.synth.blur import fft_shape_for, take_window, to_channels_first


@dataclass(frozen=True)
class PsfFitOptions:
    """Options of :func:`fit_psf`.

    size: PSF side in pixels (odd sizes have a centre pixel; the centre is size // 2), may be
    as large as the pairs. border: pixels left out at each side of the pairs (None: the PSF
    radius, at most an eighth of the smaller side). smoothness: weight of the gradient prior,
    relative to the data's energy. iterations: conjugate-gradient steps. refine: projected-
    gradient steps after projection onto k >= 0, sum 1.
    """

    size: int = 65
    border: int | None = None
    smoothness: float = 1e-5
    iterations: int = 40
    refine: int = 5

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"size: must be at least 1 pixel, got {self.size}")
        if self.border is not None and self.border < 0:
            raise ConfigError(f"border: must be >= 0, got {self.border}")
        if self.smoothness < 0:
            raise ConfigError(f"smoothness: must be >= 0, got {self.smoothness}")
        if self.iterations < 1 or self.refine < 0:
            raise ConfigError("iterations must be >= 1 and refine >= 0")

    def border_for(self, shape: tuple[int, int]) -> int:
        if self.border is not None:
            return self.border
        return min(self.size // 2, min(shape) // 8)


@dataclass(frozen=True)
class PsfFit:
    """Result of :func:`fit_psf`.

    kernel: float32 (size, size, 3), >= 0, each channel sums to 1, centre at size // 2.
    psnr: per pair key, PSNR in dB of the re-blurred target against the input in linear light
    over the fitted pixels (peak: the largest fitted input value of the pair).
    pixels: fitted pixels per channel (all pairs). border: the border that was left out.
    """

    kernel: np.ndarray
    psnr: dict[str, float]
    pixels: int
    border: int


def fit_bytes(pairs: int, shape: tuple[int, int], size: int) -> int:
    """Memory :func:`fit_psf` holds for ``pairs`` pairs of ``shape`` (h, w) and a ``size`` PSF:
    per pair both images in linear light, the target's padded spectrum (complex64), the mask
    and the masked data (float32, 3 channels each)."""
    h, w = shape
    fh, fw = fft_shape_for((h, w), (size, size))
    return pairs * (4 * 3 * h * w * 4 + 3 * fh * (fw // 2 + 1) * 8)


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get here (Linux ``MemAvailable``), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fit_memory(dataset: str, pairs: int, shape: tuple[int, int], size: int) -> None:
    """ConfigError, before anything is loaded, when the fit would need more memory than is
    available (the system would kill the process without a word), naming a ``--pairs`` that
    fits in 80 % of it."""
    need, have = fit_bytes(pairs, shape, size), available_memory()
    if have is None or need <= have:
        return
    fits = int(0.8 * have) // fit_bytes(1, shape, size)
    hint = (f"pass --pairs {fits} or fewer, or a smaller --size" if fits >= 1
            else "use a smaller --size")
    raise ConfigError(
        f"{dataset}: fitting a {size}x{size} PSF to {pairs} pairs of {shape[0]}x{shape[1]} "
        f"holds ~{need / 2**30:.1f} GiB, {have / 2**30:.1f} GiB is available; {hint}")


class _Problem:
    """FFT operators of one channel set: spectra of the padded targets, masks, data."""

    def __init__(self, pairs: LinearPairs, size: int, border: int) -> None:
        h, w = pairs.shape
        if h - 2 * border < 1 or w - 2 * border < 1:
            raise DataError(
                f"{pairs.dataset}: pairs of {h}x{w} leave no pixels inside a border of {border}"
            )
        self.size, self.h, self.w = size, h, w
        self.fft_shape = fft_shape_for((h, w), (size, size))
        c = size // 2
        self.spectra: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.data: list[np.ndarray] = []
        self.keys: list[str] = []
        inside = np.zeros((h, w), bool)
        inside[border : h - border, border : w - border] = True
        # the data term's diagonal per channel: sum of squared targets over fitted pixels
        self.scale = np.zeros(3)
        for pair in pairs.pairs:
            x = to_channels_first(pair.clean)
            region = take_window(x, -(size - 1 - c), -(size - 1 - c), h + size - 1, w + size - 1)
            self.spectra.append(
                scipy.fft.rfft2(region, s=self.fft_shape, workers=-1).astype(np.complex64)
            )
            y = to_channels_first(pair.degraded)
            mask = ~pairs.clipped(y) & inside[None]
            self.masks.append(mask.astype(np.float32))
            self.data.append(np.where(mask, y, np.float32(0.0)))
            self.keys.append(pair.key)
            self.scale += (x * x * mask).sum(axis=(1, 2), dtype=np.float64)
        self.pixels = int(sum(m.sum(axis=(1, 2)) for m in self.masks).min())
        self.pixels = int(sum(m.sum(axis=(1, 2)) for m in self.masks).min())
        # gradient prior (zero outside the kernel) as a circulant on the FFT grid
        lap = np.zeros(self.fft_shape, np.float32)
        lap[0, 0] = 4.0
        lap[0, 1] = lap[1, 0] = lap[0, -1] = lap[-1, 0] = -1.0
        self.lap_spectrum = scipy.fft.rfft2(lap).real.astype(np.float32)

    def _kernel_spectrum(self, k: np.ndarray) -> np.ndarray:
        return scipy.fft.rfft2(k, s=self.fft_shape, workers=-1)

    def _crop(self, full: np.ndarray) -> np.ndarray:
        s = self.size
        return full[:, s - 1 : s - 1 + self.h, s - 1 : s - 1 + self.w]

    def _adjoint(self, acc: np.ndarray) -> np.ndarray:
        """Kernel-sized part of the inverse transform of an accumulated spectrum."""
        s = self.size
        return scipy.fft.irfft2(acc, s=self.fft_shape, workers=-1)[:, :s, :s]

    def _placed(self, img: np.ndarray) -> np.ndarray:
        s = self.size
        full = np.zeros((3, *self.fft_shape), np.float32)
        full[:, s - 1 : s - 1 + self.h, s - 1 : s - 1 + self.w] = img
        return full

    def forward(self, k: np.ndarray, index: int) -> np.ndarray:
        """A_p k: the re-blurred target of pair ``index``, float32 (3, h, w)."""
        spec = self._kernel_spectrum(k)
        full = scipy.fft.irfft2(self.spectra[index] * spec, s=self.fft_shape, workers=-1)
        return self._crop(full)

    def rhs(self) -> np.ndarray:
        """sum_p A_p^T M_p y_p, float64 (3, s, s)."""
        acc = None
        for spec, y in zip(self.spectra, self.data, strict=True):
            term = np.conj(spec) * scipy.fft.rfft2(self._placed(y), workers=-1)
            acc = term if acc is None else acc + term
        return self._adjoint(acc).astype(np.float64)

    def normal(self, k: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """(sum_p A_p^T M_p A_p + lam L) k, float64 (3, s, s)."""
        kspec = self._kernel_spectrum(k.astype(np.float32))
        acc = None
        for spec, mask in zip(self.spectra, self.masks, strict=True):
            blurred = self._crop(scipy.fft.irfft2(spec * kspec, s=self.fft_shape, workers=-1))
            term = np.conj(spec) * scipy.fft.rfft2(self._placed(blurred * mask), workers=-1)
            acc = term if acc is None else acc + term
        acc += lam[:, None, None] * self.lap_spectrum * kspec
        return self._adjoint(acc).astype(np.float64)

    def preconditioner(self, lam: np.ndarray) -> np.ndarray:
        """Diagonal (in frequency) of the circulant approximation of the normal equations:
        the masks replaced by their mean share of the FFT grid. float32 (3, fh, fw // 2 + 1)."""
        grid = float(self.fft_shape[0] * self.fft_shape[1])
        share = sum(m.sum(axis=(1, 2)) for m in self.masks) / (len(self.masks) * grid)
        power = sum(np.abs(sp) ** 2 for sp in self.spectra)
        diag = power * share[:, None, None].astype(np.float32)
        diag += lam[:, None, None].astype(np.float32) * self.lap_spectrum
        floor = 1e-6 * diag.max(axis=(1, 2), keepdims=True)
        return np.maximum(diag, floor)

    def apply_preconditioner(self, r: np.ndarray, diag: np.ndarray) -> np.ndarray:
        spec = scipy.fft.rfft2(r.astype(np.float32), s=self.fft_shape, workers=-1)
        return self._adjoint(spec / diag).astype(np.float64)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("cij,cij->c", a, b)


def project_simplex(k: np.ndarray) -> np.ndarray:
    """Euclidean projection of each channel of ``k`` (C, ...) onto {k >= 0, sum k = 1}."""
    flat = k.reshape(k.shape[0], -1)
    out = np.empty_like(flat)
    for c, v in enumerate(flat):
        u = np.sort(v)[::-1]
        css = np.cumsum(u) - 1.0
        idx = np.arange(1, len(u) + 1)
        rho = np.nonzero(u - css / idx > 0)[0][-1]
        theta = css[rho] / (rho + 1.0)
        out[c] = np.maximum(v - theta, 0.0)
    return out.reshape(k.shape)


def fit_psf(pairs: LinearPairs, options: PsfFitOptions | None = None) -> PsfFit:
    """Estimate the PSF of ``pairs`` (targets blurred into inputs); see the module docstring.

    Raises DataError naming the dataset when the pairs leave too few pixels for the fit (fewer
    fitted pixels per channel than the PSF has taps).
    """
    options = options or PsfFitOptions()
    border = options.border_for(pairs.shape)
    problem = _Problem(pairs, options.size, border)
    s = options.size
    if problem.pixels < s * s:
        raise DataError(
            f"{pairs.dataset}: {problem.pixels} unclipped pixels inside the border per channel "
            f"are fewer than the {s}x{s} PSF's {s * s} taps; use more pairs or a smaller --size"
        )
    lam = options.smoothness * problem.scale
    b = problem.rhs()
    diag = problem.preconditioner(lam)
    k = np.zeros((3, s, s))
    r = b.copy()
    z = problem.apply_preconditioner(r, diag)
    p = z.copy()
    rz = _dot(r, z)
    for _ in range(options.iterations):
        q = problem.normal(p, lam)
        denom = _dot(p, q)
        alpha = np.where(denom > 0, rz / np.where(denom > 0, denom, 1.0), 0.0)
        k += alpha[:, None, None] * p
        r -= alpha[:, None, None] * q
        z = problem.apply_preconditioner(r, diag)
        rz_new = _dot(r, z)
        beta = np.where(rz > 0, rz_new / np.where(rz > 0, rz, 1.0), 0.0)
        p = z + beta[:, None, None] * p
        rz = rz_new
    k = project_simplex(k)
    k = _refine(problem, k, b, lam, options.refine)
    kernel = np.ascontiguousarray(k.transpose(1, 2, 0), dtype=np.float32)
    psnr = {key: _psnr(problem, k, i) for i, key in enumerate(problem.keys)}
    return PsfFit(kernel, psnr, problem.pixels, border)


def _refine(problem: _Problem, k: np.ndarray, b: np.ndarray, lam: np.ndarray, steps: int
            ) -> np.ndarray:
    """Projected gradient with exact line search on the quadratic, staying on the simplex."""
    for _ in range(steps):
        grad = problem.normal(k, lam) - b
        hg = problem.normal(grad, lam)
        gg, ghg = _dot(grad, grad), _dot(grad, hg)
        step = np.where(ghg > 0, gg / np.where(ghg > 0, ghg, 1.0), 0.0)
        k = project_simplex(k - step[:, None, None] * grad)
    return k


def _psnr(problem: _Problem, k: np.ndarray, index: int) -> float:
    pred = problem.forward(k.astype(np.float32), index)
    mask = problem.masks[index] > 0
    y = problem.data[index]
    err = (pred - y)[mask]
    if err.size == 0:
        return float("nan")
    mse = float(np.mean(err.astype(np.float64) ** 2))
    peak = float(y[mask].max())
    if mse == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(peak * peak / mse))

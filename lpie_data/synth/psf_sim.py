"""A diffraction PSF of a camera behind a display (Fraunhofer optics).

The display in front of the lens lets light through a lattice of square openings (side
``opening``, period ``pitch``); the lens pupil is a disc of diameter ``aperture``. In the
Fraunhofer approximation the PSF on the sensor at wavelength lambda is

    PSF_lambda(u) ~ |FFT(pupil * display_mask)|^2 evaluated at u / (lambda * f),

so the periodic openings give a grid of sidelobes ``lambda * f / pitch`` apart (red farther
out than blue), whose envelope is the diffraction pattern of one opening, and each lobe has
the width ``lambda * f / aperture`` set by the lens.

Sampling: the sensor has ``size`` x ``size`` pixels of ``pixel`` um. The pattern is computed
on a grid ``oversample`` times finer and summed into pixels (pixel integration, no aliasing of
the lobes); the aperture plane is sampled at ``lambda * f / (size * pixel)``, different per
wavelength, which puts all three channels on the same sensor grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from lpie_data.errors import ConfigError
from lpie_data.synth.psf import Psf, make_psf

BUILTIN_PSF_ID = "builtin-udc"


@dataclass(frozen=True)
class DisplayOptics:
    """Geometry of a display-over-camera module. Lengths in the unit named by each field.

    size: PSF side in sensor pixels. pitch_um: display pixel pitch over the camera.
    opening_um: side of the square transparent opening in each display pixel.
    focal_mm: lens focal length. aperture_mm: lens pupil diameter (focal / f-number).
    pixel_um: sensor pixel pitch. wavelengths_nm: R, G, B. oversample: odd factor of the
    fine grid (pixel integration).
    """

    size: int = 800
    pitch_um: float = 80.0
    opening_um: float = 50.0
    focal_mm: float = 4.0
    aperture_mm: float = 2.0
    pixel_um: float = 1.0
    wavelengths_nm: tuple[float, float, float] = (610.0, 530.0, 470.0)
    oversample: int = 3

    def __post_init__(self) -> None:
        if self.size < 3:
            raise ConfigError(f"size: must be at least 3 pixels, got {self.size}")
        for name in ("pitch_um", "opening_um", "focal_mm", "aperture_mm", "pixel_um"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.opening_um > self.pitch_um:
            raise ConfigError(
                f"opening_um: {self.opening_um} is larger than the pitch {self.pitch_um}"
            )
        if len(self.wavelengths_nm) != 3 or min(self.wavelengths_nm) <= 0:
            raise ConfigError(f"wavelengths_nm: need 3 positive values, got {self.wavelengths_nm}")
        if self.oversample < 1 or self.oversample % 2 == 0:
            raise ConfigError(f"oversample: must be an odd number >= 1, got {self.oversample}")

    def lobe_spacing_px(self, wavelength_nm: float) -> float:
        """Distance between neighbouring sidelobes on the sensor, in pixels: lambda f / p."""
        return wavelength_nm * 1e-3 * self.focal_mm * 1e3 / self.pitch_um / self.pixel_um


def _lattice_coverage(x: np.ndarray, dx: float, pitch: float, opening: float) -> np.ndarray:
    """Fraction of [x - dx/2, x + dx/2] covered by openings [k p - a/2, k p + a/2] (exact)."""

    def covered_up_to(t: np.ndarray) -> np.ndarray:
        u = t + opening / 2
        return np.floor(u / pitch) * opening + np.minimum(np.mod(u, pitch), opening)

    return (covered_up_to(x + dx / 2) - covered_up_to(x - dx / 2)) / dx


def simulate_channel(optics: DisplayOptics, wavelength_nm: float) -> np.ndarray:
    """Intensity PSF of one wavelength: float64 (size, size), summing to 1, centre at size//2."""
    n, q = optics.size, optics.oversample
    m = n * q
    lam_um = wavelength_nm * 1e-3
    focal_um = optics.focal_mm * 1e3
    dx = lam_um * focal_um / (n * optics.pixel_um)  # aperture-plane sample spacing, um
    coords = (np.arange(m) - m // 2) * dx
    mask_1d = _lattice_coverage(coords, dx, optics.pitch_um, optics.opening_um)
    radius = optics.aperture_mm * 1e3 / 2
    r = np.hypot(coords[:, None], coords[None, :])
    # antialiased disc: linear ramp one sample wide across the rim
    pupil = np.clip((radius - r) / dx + 0.5, 0.0, 1.0)
    field = (pupil * mask_1d[:, None] * mask_1d[None, :]).astype(np.complex64)
    spectrum = scipy.fft.fft2(field, workers=-1)
    intensity = (spectrum.real.astype(np.float64) ** 2) + spectrum.imag.astype(np.float64) ** 2
    # zero frequency (index 0) goes to the centre of sensor pixel n // 2
    centre = q * (n // 2) + q // 2
    intensity = np.roll(intensity, (centre, centre), axis=(0, 1))
    binned = intensity.reshape(n, q, n, q).sum(axis=(1, 3))
    return binned / binned.sum()


def simulate_udc_psf(optics: DisplayOptics | None = None) -> np.ndarray:
    """Fraunhofer PSF of ``optics`` (defaults: a phone front camera under an OLED display).

    Returns float32 (size, size, 3), linear RGB, each channel summing to 1, centred at
    (size // 2, size // 2). Deterministic.
    """
    optics = optics or DisplayOptics()
    channels = [simulate_channel(optics, lam) for lam in optics.wavelengths_nm]
    return np.stack(channels, axis=2).astype(np.float32)


_BUILTIN: dict[str, Psf] = {}


def builtin_psf() -> Psf:
    """The built-in simulated under-display-camera PSF (``simulate_udc_psf()`` defaults),
    computed once per process."""
    if BUILTIN_PSF_ID not in _BUILTIN:
        _BUILTIN[BUILTIN_PSF_ID] = make_psf(simulate_udc_psf(), BUILTIN_PSF_ID, "builtin")
    return _BUILTIN[BUILTIN_PSF_ID]


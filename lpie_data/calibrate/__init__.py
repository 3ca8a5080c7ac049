"""Fit the simulator to a real camera from a few aligned pairs (``lpie-data calibrate``).

Public API:
    load_linear_pairs, LinearPairs             a split's pairs in linear light (pairs.py)
    fit_noise, NoiseFitOptions, read_noise_file  the noise-level function (noise.py)
    fit_psf, PsfFitOptions                     the PSF (psf.py)
    render_noise                               the noise picture (plots.py)
    calibrate_noise, calibrate_psf             read, fit, write the files (outputs.py)
"""

from lpie_data.calibrate.noise import (
    NoiseCalibration,
    NoiseFitOptions,
    NoiseGroup,
    fit_noise,
)
from lpie_data.calibrate.noisefile import read_noise_file, write_noise_file
from lpie_data.calibrate.outputs import PsfCalibration, calibrate_noise, calibrate_psf
from lpie_data.calibrate.pairs import LinearPair, LinearPairs, load_linear_pairs
from lpie_data.calibrate.plots import render_noise
from lpie_data.calibrate.psf import PsfFit, PsfFitOptions, fit_psf

__all__ = [
    "LinearPair",
    "LinearPairs",
    "NoiseCalibration",
    "NoiseFitOptions",
    "NoiseGroup",
    "PsfCalibration",
    "PsfFit",
    "PsfFitOptions",
    "calibrate_noise",
    "calibrate_psf",
    "fit_noise",
    "fit_psf",
    "load_linear_pairs",
    "read_noise_file",
    "render_noise",
    "write_noise_file",
]

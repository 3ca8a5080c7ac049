"""Synthetic degradations y = gamma(C(x * k + n)) (LPIENet Sec. 2, after DISCNet).

Public API:
    SynthConfig, synth_config_from_dict, synth_config_from_toml   the ``[synth]`` config
    synthesize                                                    write a pair dataset
    synthesize_pair, degrade                                      one pair, pure functions
    Psf, load_psf, load_psfs, make_psf, rotate_psf                PSF files
    DisplayOptics, simulate_udc_psf, builtin_psf                  simulated UDC PSF
    blur, blur_crop                                               FFT convolution
    NoiseParams, apply_noise, sample_noise                        camera noise
    TONE_MAPS, get_tone_map                                       tone maps
"""

from lpie_data.synth.blur import blur, blur_crop
from lpie_data.synth.config import SynthConfig, synth_config_from_dict, synth_config_from_toml
from lpie_data.synth.noise import NOISE_SAMPLERS, NoiseParams, apply_noise, sample_noise
from lpie_data.synth.pipeline import degrade, synthesize, synthesize_pair
from lpie_data.synth.psf import Psf, load_psf, load_psfs, make_psf, rotate_psf
from lpie_data.synth.psf_sim import DisplayOptics, builtin_psf, simulate_udc_psf
from lpie_data.synth.tonemap import TONE_MAPS, get_tone_map

__all__ = [
    "NOISE_SAMPLERS",
    "TONE_MAPS",
    "DisplayOptics",
    "NoiseParams",
    "Psf",
    "SynthConfig",
    "apply_noise",
    "blur",
    "blur_crop",
    "builtin_psf",
    "degrade",
    "get_tone_map",
    "load_psf",
    "load_psfs",
    "make_psf",
    "rotate_psf",
    "sample_noise",
    "simulate_udc_psf",
    "synth_config_from_dict",
    "synth_config_from_toml",
    "synthesize",
    "synthesize_pair",
]

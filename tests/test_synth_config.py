"""The [synth] config: defaults, ranges, ints for floats, unknown keys, inverted ranges."""

from __future__ import annotations

import math
import re

import pytest

from lpie_data.errors import ConfigError
from lpie_data.synth import SynthConfig, synth_config_from_dict, synth_config_from_toml
from lpie_data.tomlconfig import to_dict


def test_defaults_and_ranges():
    c = SynthConfig()
    assert c.crop == 400 and c.tone_map == "reinhard" and c.noise == "unprocessing"
    assert c.exposure == (1.0, 2.0) and c.x_max == (1.0, 1.0) and c.beta1[0] == c.beta1[1]
    c = synth_config_from_dict({"exposure": [1, 8], "x_max": 500, "beta1": [0, 0.01],
                                "beta2": 0, "psf_rotation": 2, "crop": 256})
    assert c.exposure == (1.0, 8.0) and c.x_max == (500.0, 500.0)
    assert c.beta1 == (0.0, 0.01) and isinstance(c.psf_rotation, float)
    assert synth_config_from_dict(to_dict(c)) == c


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        synth_config_from_dict({"crop": 64, "sigma": 0.1})
    message = str(e.value)
    assert "synth" in message and "sigma" in message
    for key in ("crop", "pairs_per_image", "exposure", "noise", "beta1", "beta2", "poisson",
                "x_max", "tone_map", "psf_rotation"):
        assert key in message


@pytest.mark.parametrize(
    "data, key",
    [
        ({"exposure": [4, 1]}, "exposure"),
        ({"x_max": [2.0, 1.0]}, "x_max"),
        ({"beta1": [0.02, 0.01]}, "beta1"),
        ({"beta2": -1e-5}, "beta2"),
        ({"exposure": 0}, "exposure"),
        ({"x_max": [1, 2, 3]}, "x_max"),
        ({"crop": 4}, "crop"),
        ({"pairs_per_image": 0}, "pairs_per_image"),
        ({"noise": "gaussian"}, "noise"),
        ({"tone_map": "aces"}, "tone_map"),
        ({"psf_rotation": -1}, "psf_rotation"),
        ({"poisson": "yes"}, "poisson"),
        ({"crop": 1.5}, "crop"),
        ({"source_space": "adobe"}, "source_space"),
    ],
)
def test_bad_values_name_the_key(data, key):
    with pytest.raises(ConfigError, match=key):
        synth_config_from_dict(data)


def test_inverted_range_message():
    with pytest.raises(ConfigError, match=r"inverted range \[4, 1\]"):
        synth_config_from_dict({"exposure": [4, 1]})


def test_toml_file(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text('[model]\nwidth = 16\n\n[synth]\ncrop = 128\nx_max = inf\n'
                    'noise = "sidd"\ntone_map = "none"\n')
    c = synth_config_from_toml(path)
    assert c.crop == 128 and math.isinf(c.x_max[0]) and c.noise == "sidd"
    bare = tmp_path / "synth.toml"
    bare.write_text("crop = 64\nbogus = 1\n")
    with pytest.raises(ConfigError, match="synth.toml.*bogus"):
        synth_config_from_toml(bare)
    (tmp_path / "broken.toml").write_text("crop = = 3")
    with pytest.raises(ConfigError, match="broken.toml"):
        synth_config_from_toml(tmp_path / "broken.toml")


@pytest.mark.parametrize("key", ["x_max", "exposure", "beta1"])
def test_a_range_with_an_infinite_end_is_refused(key, tmp_path):
    with pytest.raises(ConfigError, match=rf"{key}: the range \[1, inf\] has an infinite end"):
        synth_config_from_dict({key: [1.0, float("inf")]})
    path = tmp_path / "s.toml"
    path.write_text(f"[synth]\n{key} = [0.5, inf]\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: synth: {key}: the range"):
        synth_config_from_toml(path)


def test_a_fixed_infinite_x_max_still_means_no_clipping():
    c = synth_config_from_dict({"x_max": float("inf")})
    assert c.x_max == (math.inf, math.inf)
    c = synth_config_from_dict({"x_max": [float("inf"), float("inf")]})
    assert math.isinf(c.x_max[0])

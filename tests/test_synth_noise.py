"""Noise variance, samplers, clipping, tone maps and their storage: known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lpie_data.errors import ConfigError, DataError
from lpie_data.synth.config import SynthConfig
from lpie_data.synth.noise import (
    SIDD_NOISE_LEVELS,
    NoiseParams,
    apply_noise,
    sample_noise,
)
from lpie_data.synth.pipeline import degrade
from lpie_data.synth.sampling import PairParams
from lpie_data.synth.tonemap import (
    TONE_MAPS,
    encode_for_storage,
    get_tone_map,
    reinhard,
    reinhard_inverse,
    srgb,
    srgb_inverse,
    storage_dtype,
)


@pytest.mark.parametrize("poisson", [False, True])
@pytest.mark.parametrize("level", [0.05, 0.3, 2.0])
def test_variance_on_flat_patches_is_beta1_v_plus_beta2(level, poisson):
    beta1, beta2 = 0.01, 1e-4
    v = np.full((200, 200, 3), level, np.float32)
    noisy = apply_noise(v, NoiseParams(beta1, beta2, poisson, "fixed"), np.random.default_rng(0))
    assert noisy.dtype == np.float32
    expected = beta1 * level + beta2
    assert noisy.var() == pytest.approx(expected, rel=0.03)
    assert noisy.mean() == pytest.approx(level, abs=4 * math.sqrt(expected / v.size))


def test_no_noise_is_identity_and_generator_is_explicit():
    v = np.random.default_rng(1).random((8, 8, 3)).astype(np.float32)
    assert np.array_equal(apply_noise(v, NoiseParams(), np.random.default_rng(0)), v)
    p = NoiseParams(0.01, 1e-4, False, "fixed")
    a = apply_noise(v, p, np.random.default_rng(7))
    b = apply_noise(v, p, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_samplers():
    rng = np.random.default_rng(0)
    fixed = sample_noise(rng, SynthConfig(noise="fixed", beta1=0.02, beta2=3e-5, poisson=True))
    assert (fixed.beta1, fixed.beta2, fixed.poisson, fixed.model) == (0.02, 3e-5, True, "fixed")
    ranged = [sample_noise(rng, SynthConfig(noise="fixed", beta1=[0.01, 0.02])) for _ in range(50)]
    assert all(0.01 <= p.beta1 <= 0.02 for p in ranged)
    shots, reads = [], []
    for _ in range(2000):
        p = sample_noise(rng, SynthConfig(noise="unprocessing"))
        shots.append(p.beta1)
        reads.append(p.beta2)
    shots, reads = np.log(shots), np.log(reads)
    assert shots.min() >= math.log(1e-4) and shots.max() <= math.log(1.2e-2)
    residual = reads - (2.18 * shots + 1.20)
    assert abs(residual.mean()) < 0.03 and residual.std() == pytest.approx(0.26, rel=0.1)
    sidd = sample_noise(rng, SynthConfig(noise="sidd"))
    meta = sidd.as_meta()
    assert SIDD_NOISE_LEVELS[(meta["phone"], meta["iso"])] == (sidd.beta1, sidd.beta2)
    assert sample_noise(rng, SynthConfig(noise="none")).as_meta()["beta1"] == 0.0


def test_tone_maps_known_values():
    x = np.array([0.0, 0.25, 0.75, 500.0], np.float32)
    np.testing.assert_allclose(reinhard(x), [0.0, 0.5, 0.75, 500 / 500.25], rtol=1e-6)
    np.testing.assert_allclose(reinhard_inverse(reinhard(x[:3])), x[:3], rtol=1e-5)
    s = srgb(np.array([0.0, 0.002, 0.18, 1.0, 4.0], np.float32))
    np.testing.assert_allclose(
        s, [0.0, 0.002 * 12.92, 1.055 * 0.18 ** (1 / 2.4) - 0.055, 1.0, 1.0], rtol=1e-5
    )
    y = np.linspace(0, 1, 101, dtype=np.float32)
    np.testing.assert_allclose(srgb(srgb_inverse(y)), y, atol=2e-6)
    assert np.array_equal(TONE_MAPS["none"](x), x)
    with pytest.raises(ConfigError, match="reinhard, srgb, none"):
        get_tone_map("aces")


def test_clip_and_tone_map_in_degrade_are_exact():
    clean = np.array([[[0.5, 1.0, 3.0]]], np.float32)
    blurred = np.array([[[0.5, 1.5, 3.0]]], np.float32)
    params = PairParams((0, 0, 1, 1), 1.0, 1.2, 0, 0.0, NoiseParams())
    inp, tgt = degrade(clean, blurred.copy(), params, "none", np.random.default_rng(0))
    np.testing.assert_array_equal(inp, np.array([[[0.5, 1.2, 1.2]]], np.float32))
    np.testing.assert_array_equal(tgt, clean)
    inp, tgt = degrade(clean, blurred.copy(), params, "reinhard", np.random.default_rng(0))
    np.testing.assert_array_equal(inp, reinhard(np.array([[[0.5, 1.2, 1.2]]], np.float32)))
    np.testing.assert_array_equal(tgt, reinhard(clean))
    negative = np.array([[[-0.1, 0.2, 0.3]]], np.float32)
    inp, _ = degrade(clean, negative, params, "none", np.random.default_rng(0))
    assert inp.min() == 0.0


def test_storage_round_trip():
    rng = np.random.default_rng(2)
    y = reinhard(rng.random((16, 16, 3)).astype(np.float32) * 100)
    stored = encode_for_storage(y, "reinhard")
    assert stored.dtype == np.uint16 == storage_dtype("srgb")
    assert np.abs(stored.astype(np.float32) / 65535 - y).max() < 2e-5
    hdr = rng.random((16, 16, 3)).astype(np.float32) * 500
    stored = encode_for_storage(hdr, "none")
    assert stored.dtype == np.float16
    np.testing.assert_allclose(stored.astype(np.float32), hdr, rtol=1e-3)
    with pytest.raises(DataError, match="float16"):
        encode_for_storage(np.full((2, 2, 3), 1e6, np.float32), "none")


def test_normals_drawn_ahead_give_the_same_noise():
    from lpie_data.synth.noise import apply_noise, draws_normals_only

    v = np.random.default_rng(1).random((20, 30, 3), dtype=np.float32)
    params = NoiseParams(0.01, 1e-4, model="fixed")
    assert draws_normals_only(params)
    assert not draws_normals_only(NoiseParams(0.01, 1e-4, poisson=True))
    assert not draws_normals_only(NoiseParams())
    plain = apply_noise(v, params, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    ahead = apply_noise(v, params, rng, rng.standard_normal(v.shape, dtype=np.float32))
    assert np.array_equal(plain, ahead)
    assert not np.array_equal(plain, apply_noise(v, params, np.random.default_rng(6)))

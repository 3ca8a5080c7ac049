"""lpie-data calibrate: known answers on pairs made by synth with known PSFs and noise."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
from typer.testing import CliRunner

from lpie_data import iter_pairs
from lpie_data.calibrate import (
    NoiseFitOptions,
    PsfFitOptions,
    fit_noise,
    fit_psf,
    load_linear_pairs,
    read_noise_file,
)
from lpie_data.cli import app
from lpie_data.errors import ConfigError, DataError
from lpie_data.jobs import JobOptions
from lpie_data.synth import SynthConfig, synthesize
from lpie_data.synth.noise import NoiseParams, apply_noise, draws_normals_only
from lpie_data.synth.psf import load_psf
from lpie_data.synth.psf_sim import DisplayOptics, simulate_udc_psf

runner = CliRunner()
NO_CLIP = {"tone_map": "none", "exposure": 1.0, "x_max": float("inf"), "pairs_per_image": 1}


@functools.lru_cache(maxsize=8)
def textured_images(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``n`` linear images (size, size, 3) float32 in [0, 1]: random fields at three scales
    (edges, texture and shading, like photos), squared to spread the intensities."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        img = ndi.gaussian_filter(rng.random((size, size, 3)), (0.7, 0.7, 0))
        for factor, weight in ((4, 0.2), (16, 0.1)):
            small = rng.random((size // factor + 2, size // factor + 2, 3))
            img += weight * ndi.zoom(small, (factor, factor, 1), order=3)[:size, :size]
        img = (img - img.min()) / (img.max() - img.min())
        images.append((img**2).astype(np.float32))
    return tuple(images)


def textured_sources(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """A folder of ``n`` .npy sources from :func:`textured_images`."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(textured_images(n, size, seed)):
        np.save(folder / f"{i:03d}.npy", img)
    return folder


def save_kernel(path: Path, kernel: np.ndarray) -> Path:
    kernel = np.asarray(kernel, np.float64)
    np.save(path, (kernel / kernel.sum(axis=(0, 1))).astype(np.float32))
    return path


def asymmetric_psf(size: int = 9, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = rng.random((size, size, 3)) ** 3
    k[2, size - 3] += 2.0  # off-centre peak: a flip or shift of the estimate would show
    k[size // 2, size // 2] += 1.0
    return k / k.sum(axis=(0, 1))


def dirac(size: int = 1) -> np.ndarray:
    d = np.zeros((size, size, 3), np.float32)
    d[size // 2, size // 2] = 1.0
    return d


def make_pairs(tmp: Path, name: str, kernel: np.ndarray, n: int, size: int = 128,
               src_size: int | None = None, **config) -> str:
    """A synth dataset of ``n`` pairs (one per source) blurred by ``kernel``."""
    psf = save_kernel(tmp / f"{name}_psf.npy", kernel)
    src = textured_sources(tmp / f"{name}_src", n, src_size or size)
    cfg = SynthConfig(crop=size, **{**NO_CLIP, **config})
    out = tmp / name
    synthesize(out, sources=[src], psfs=[psf], config=cfg, job=JobOptions(jobs=1),
               val_fraction=0.0)
    return str(out)


def ncc(a: np.ndarray, b: np.ndarray) -> list[float]:
    return [float(np.corrcoef(a[..., c].ravel(), b[..., c].ravel())[0, 1]) for c in range(3)]


def within(value: float, truth: float, rel: float) -> bool:
    return abs(value - truth) <= rel * truth


# --- noise ------------------------------------------------------------------------------------

def test_noise_fit_recovers_beta1_beta2_within_5_percent(tmp_path):
    ds = make_pairs(tmp_path, "noisy", dirac(), 24, noise="fixed", beta1=0.01, beta2=4e-4,
                    exposure=(0.5, 1.5))
    cal = fit_noise(load_linear_pairs(ds))
    (g,) = cal.groups
    assert cal.intensity == "x" and cal.value_space == "linear" and g.pairs == 24
    assert within(g.beta1, 0.01, 0.05) and within(g.beta2, 4e-4, 0.05), (g.beta1, g.beta2)
    for c in range(3):
        assert within(g.channel_beta1[c], 0.01, 0.05), g.channel_beta1
        assert within(g.channel_beta2[c], 4e-4, 0.10), g.channel_beta2  # 1/3 of the pixels
    assert g.pixels > 100_000 and g.residual < 0.2


def test_noise_fit_on_an_srgb_dataset_clipped_at_1(tmp_path):
    """sRGB storage (uint16), linearised back; bright pixels saturated at x_max = 1."""
    ds = make_pairs(tmp_path, "srgb", dirac(), 20, noise="fixed", beta1=0.01, beta2=4e-4,
                    exposure=(0.8, 1.6), x_max=1.0, tone_map="srgb")
    pairs = load_linear_pairs(ds)
    assert pairs.space == "srgb" and pairs.clip == pytest.approx(1.0, abs=1e-4)
    (g,) = fit_noise(pairs).groups
    assert within(g.beta1, 0.01, 0.05) and within(g.beta2, 4e-4, 0.05), (g.beta1, g.beta2)
    assert any(not s.used[-1] for s in g.bins)  # the brightest bins, near the clip, left out


def test_censoring_at_zero_biases_a_plain_fit_but_not_this_one(tmp_path):
    """Pairs are clipped at 0: a plain binned variance over all bins underestimates beta2
    (degradation.md: 0.0115 / 1.4e-4); the robust, clip-aware fit does not."""
    ds = make_pairs(tmp_path, "noisy", dirac(), 12, noise="fixed", beta1=0.01, beta2=4e-4)
    pairs = load_linear_pairs(ds)
    x = np.concatenate([p.clean.ravel() for p in pairs.pairs])
    r = np.concatenate([(p.degraded - p.clean).ravel() for p in pairs.pairs])
    edges = np.linspace(0, np.quantile(x, 0.999), 49)
    which = np.digitize(x, edges) - 1
    means, variances = [], []
    for b in range(48):
        sel = which == b
        if sel.sum() >= 200:
            means.append(x[sel].mean())
            variances.append(r[sel].var())
    plain_b1, plain_b2 = np.polyfit(means, variances, 1)
    careful = fit_noise(pairs).groups[0]
    assert abs(plain_b2 - 4e-4) > 0.2 * 4e-4, plain_b2
    assert within(careful.beta2, 4e-4, 0.05) and within(careful.beta1, 0.01, 0.05)
    assert any(not s.used.all() for s in careful.bins)  # dark bins were left out


def test_noise_groups_each_get_their_own_parameters(tmp_path):
    levels = {100: (0.004, 1e-4), 800: (0.02, 8e-4)}
    noise_file = tmp_path / "two.json"
    noise_file.write_text(json.dumps({"groups": [
        {"group": {"iso": iso}, "beta1": b1, "beta2": b2,
         "channels": {"beta1": [b1] * 3, "beta2": [b2] * 3}}
        for iso, (b1, b2) in levels.items()
    ]}))
    ds = make_pairs(tmp_path, "groups", dirac(), 32, noise="calibrated",
                    noise_file=str(noise_file), exposure=(0.5, 1.5))
    metas = [p.meta for p in iter_pairs(ds, "train")]
    assert {m["noise_group"]["iso"] for m in metas} == {100, 800}
    assert all(m["noise"] == "calibrated" and len(m["beta1_rgb"]) == 3 for m in metas)
    cal = fit_noise(load_linear_pairs(ds, keys=("noise_group.iso",)),
                    NoiseFitOptions(by=("noise_group.iso",)))
    assert [g.group for g in cal.groups] == [{"noise_group.iso": 100}, {"noise_group.iso": 800}]
    for g in cal.groups:
        b1, b2 = levels[g.group["noise_group.iso"]]
        assert within(g.beta1, b1, 0.05) and within(g.beta2, b2, 0.05), (g.group, g.beta1, g.beta2)


def test_noise_of_blurred_pairs_with_their_psf_within_10_percent(tmp_path):
    kernel = asymmetric_psf(9)
    ds = make_pairs(tmp_path, "blurred", kernel, 24, noise="fixed", beta1=0.01, beta2=4e-4,
                    exposure=(0.5, 1.5))
    pairs = load_linear_pairs(ds)
    psf = load_psf(tmp_path / "blurred_psf.npy")
    cal = fit_noise(pairs, psf=psf)
    (g,) = cal.groups
    assert cal.intensity == "x * k"
    assert within(g.beta1, 0.01, 0.10) and within(g.beta2, 4e-4, 0.10), (g.beta1, g.beta2)
    # without the PSF the blur residual counts as noise
    blind = fit_noise(pairs).groups[0]
    assert blind.beta1 * 0.5 + blind.beta2 > 1.2 * (g.beta1 * 0.5 + g.beta2)


def test_per_channel_noise_variance_known_answer():
    v = np.full((300, 300, 3), 0.5, np.float32)
    params = NoiseParams(0.0, 0.0, False, "calibrated", (), ((0.01, 0.02, 0.04), (1e-4, 0, 2e-4)))
    noisy = apply_noise(v, params, np.random.default_rng(0))
    for c, expected in enumerate([0.0051, 0.01, 0.0202]):
        assert noisy[..., c].var() == pytest.approx(expected, rel=0.03)
    # normals drawn ahead (synth draws them while the blur runs) give the same result
    assert draws_normals_only(params)
    ahead = np.random.default_rng(0).standard_normal(v.shape, dtype=np.float32)
    assert np.array_equal(apply_noise(v, params, np.random.default_rng(5), ahead), noisy)


# --- PSF --------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["asymmetric", "simulated", "as-large-as-crops"])
def test_psf_fit_noise_free_known_psf(tmp_path, case):
    if case == "asymmetric":
        kernel, n, size = asymmetric_psf(9), 8, 96
    elif case == "simulated":
        kernel = simulate_udc_psf(DisplayOptics(size=31, pitch_um=30, opening_um=18,
                                                focal_mm=1.5, aperture_mm=0.75))
        n, size = 12, 96
    else:  # whole images: synth's reflection at the source border is the fit's model
        kernel = simulate_udc_psf(DisplayOptics(size=63, pitch_um=40, opening_um=25,
                                                focal_mm=2.0, aperture_mm=1.0))
        n, size = 12, 64
    ds = make_pairs(tmp_path, "psf", kernel, n, size=size, noise="none")
    k = kernel.shape[0]
    fit = fit_psf(load_linear_pairs(ds), PsfFitOptions(size=k, iterations=30, refine=5))
    assert fit.kernel.shape == (k, k, 3)
    assert np.all(fit.kernel >= 0) and np.allclose(fit.kernel.sum(axis=(0, 1)), 1, atol=1e-4)
    assert min(ncc(fit.kernel, kernel)) >= 0.99, ncc(fit.kernel, kernel)
    assert min(fit.psnr.values()) >= 40.0, fit.psnr


def test_psf_fit_with_noise_and_clipping(tmp_path):
    kernel = simulate_udc_psf(DisplayOptics(size=31, pitch_um=30, opening_um=18,
                                            focal_mm=1.5, aperture_mm=0.75))
    ds = make_pairs(tmp_path, "noisy", kernel, 16, size=96, src_size=128, noise="fixed",
                    beta1=5e-4, beta2=5e-6, exposure=2.2, x_max=1.0)
    pairs = load_linear_pairs(ds)
    assert pairs.clip == pytest.approx(1.0, rel=1e-3)  # the brightest pixels were clipped
    share = np.mean([pairs.clipped(p.degraded).mean() for p in pairs.pairs])
    assert 0.003 < share < 0.3
    fit = fit_psf(pairs, PsfFitOptions(size=31, iterations=30, refine=5))
    assert min(ncc(fit.kernel, kernel)) >= 0.95, ncc(fit.kernel, kernel)


# --- end to end, CLI --------------------------------------------------------------------------

def test_calibrate_psf_then_noise_then_synth_matches_the_noise_curve(tmp_path):
    truth = ndi.gaussian_filter(np.pad(asymmetric_psf(7, seed=2), ((4, 4), (4, 4), (0, 0))),
                                (1.0, 1.0, 0))
    ds = make_pairs(tmp_path, "camera", truth, 16, noise="fixed", beta1=5e-3, beta2=2e-4,
                    exposure=(0.5, 1.5))
    psf, noise = tmp_path / "est" / "psf.npy", tmp_path / "est" / "noise.json"
    r = runner.invoke(app, ["calibrate", "psf", ds, "--size", "15", "--iterations", "20",
                            "--pairs", "12", "--out", str(psf)])
    assert r.exit_code == 0, r.output
    assert "PSNR" in r.output and psf.with_suffix(".png").stat().st_size > 1000
    report = json.loads(psf.with_suffix(".json").read_text())
    assert len(report["psnr_db"]) == 12 and report["value_space"] == "linear"
    r = runner.invoke(app, ["calibrate", "noise", ds, "--psf", str(psf), "--out", str(noise)])
    assert r.exit_code == 0, r.output
    assert "x * k" in r.output and noise.with_suffix(".png").stat().st_size > 1000
    written = json.loads(noise.read_text())
    assert written["intensity"] == "x * k" and written["value_space"] == "linear"
    assert set(written["groups"][0]) >= {"group", "beta1", "beta2", "channels", "pixels",
                                         "residual"}
    original = read_noise_file(noise).groups[0]

    config = tmp_path / "synth.toml"
    config.write_text(f'[synth]\ncrop = 128\npairs_per_image = 1\ntone_map = "none"\n'
                      f'exposure = [0.5, 1.5]\nx_max = inf\nnoise = "calibrated"\n'
                      f'noise_file = "{noise}"\n')
    copy = tmp_path / "copy"
    r = runner.invoke(app, ["synth", "--source", str(tmp_path / "camera_src"), "--psf", str(psf),
                            "--config", str(config), "--seed", "7", "--val-fraction", "0",
                            "--jobs", "1", "--out", str(copy)])
    assert r.exit_code == 0, r.output
    again = tmp_path / "est" / "again.json"
    r = runner.invoke(app, ["calibrate", "noise", str(copy), "--psf", str(psf), "--out",
                            str(again)])
    assert r.exit_code == 0, r.output
    remade = read_noise_file(again).groups[0]
    for x in (0.05, 0.2, 0.5, 0.8):
        want = 5e-3 * x + 2e-4
        assert within(original[1] * x + original[2], want, 0.10), (x, original)
        assert within(remade[1] * x + remade[2], original[1] * x + original[2], 0.10), (
            x, original, remade)


# --- bad input --------------------------------------------------------------------------------

def test_psf_fit_too_large_for_memory_is_refused_before_loading(tmp_path, monkeypatch):
    """A fit holds every pair's padded spectrum: more than the machine has is refused up front
    (naming the dataset, the need, and a --pairs that fits), not left to the OOM killer."""
    import lpie_data.calibrate.psf as psf_mod

    ds = make_pairs(tmp_path, "four", dirac(), 4, size=32)
    # known answer: 32x32 pairs, a 15x15 PSF: transform 48x48 (the fast size >= 32 + 15 - 1);
    # per pair 4 float32 images of 32x32x3 and a complex64 spectrum of 3 x 48 x 25
    per_pair = 4 * 3 * 32 * 32 * 4 + 3 * 48 * 25 * 8
    assert psf_mod.fit_bytes(4, (32, 32), 15) == 4 * per_pair
    monkeypatch.setattr(psf_mod, "available_memory", lambda: int(2.6 * per_pair))
    out = tmp_path / "psf.npy"
    r = runner.invoke(app, ["calibrate", "psf", ds, "--size", "15", "--out", str(out)])
    assert r.exit_code == 1, r.output
    message = " ".join(r.output.split())
    assert ds in message and "4 pairs of 32x32" in message and "--pairs 2 or fewer" in message
    assert not out.exists()
    r = runner.invoke(app, ["calibrate", "psf", ds, "--size", "15", "--pairs", "2",
                            "--iterations", "5", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.exists()


def test_bad_inputs_give_one_clear_error_naming_the_dataset(tmp_path):
    ds = make_pairs(tmp_path, "tiny", dirac(), 3, size=16, noise="fixed", beta1=0.01,
                    beta2=4e-4)
    out = tmp_path / "out" / "noise.json"
    # fewer pixels than the fit needs
    for args in (["noise", ds, "--out", str(out)],
                 ["psf", ds, "--size", "65", "--out", str(out.with_suffix(".npy"))]):
        r = runner.invoke(app, ["calibrate", *args])
        assert r.exit_code != 0 and ds in r.output and "Traceback" not in r.output, r.output
    # no pairs in the split
    r = runner.invoke(app, ["calibrate", "noise", ds, "--split", "validation", "--out", str(out)])
    assert r.exit_code != 0 and ds in r.output
    # a meta key that the pairs lack
    r = runner.invoke(app, ["calibrate", "noise", ds, "--by", "iso", "--out", str(out)])
    assert r.exit_code != 0 and ds in r.output and "iso" in r.output
    assert not out.parent.exists() or not any(out.parent.iterdir())
    # a value space that cannot be told
    manifest = Path(ds) / "manifest.json"
    m = json.loads(manifest.read_text())
    m["value_space"] = "log"
    manifest.write_text(json.dumps(m))
    with pytest.raises(DataError, match="tiny"):
        load_linear_pairs(ds)


def test_pairs_of_different_sizes_are_refused(tmp_path):
    src = tmp_path / "src"
    textured_sources(src, 1, 24)
    np.save(src / "big.npy", np.ones((40, 40, 3), np.float32))
    save_kernel(tmp_path / "d.npy", dirac())
    cfg = SynthConfig(crop=32, noise="none", **NO_CLIP)
    synthesize(tmp_path / "mixed", sources=[src], psfs=[tmp_path / "d.npy"], config=cfg,
               job=JobOptions(jobs=1), val_fraction=0.0)
    with pytest.raises(DataError, match="mixed.*different sizes"):
        load_linear_pairs(str(tmp_path / "mixed"))


def test_synth_calibrated_noise_needs_a_good_file(tmp_path):
    with pytest.raises(ConfigError, match="noise_file"):
        SynthConfig(noise="calibrated")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"groups": [{"group": {}, "beta1": -1, "beta2": 0}]}))
    with pytest.raises(DataError, match="bad.json.*beta1"):
        read_noise_file(bad)
    src = textured_sources(tmp_path / "src", 1, 16)
    dirac_file = save_kernel(tmp_path / "d.npy", dirac())
    with pytest.raises(DataError, match="missing.json"):
        cfg = SynthConfig(noise="calibrated", noise_file=str(tmp_path / "missing.json"))
        synthesize(tmp_path / "out", sources=[src], psfs=[dirac_file], config=cfg,
                   job=JobOptions(jobs=1))
    assert not (tmp_path / "out").exists()

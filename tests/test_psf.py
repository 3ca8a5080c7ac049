"""PSF files (all formats, bad inputs), rotation, the Fraunhofer simulator and the psf CLI."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from typer.testing import CliRunner

from lpie_data.cli import app
from lpie_data.errors import DataError
from lpie_data.synth.psf import load_psf, load_psfs, make_psf, rotate_psf
from lpie_data.synth.psf_sim import DisplayOptics, simulate_udc_psf
from lpie_data.synth.psf_view import radial_profile, render_psf

runner = CliRunner()


def gaussian_psf(size: int = 15, sigma: float = 2.0) -> np.ndarray:
    yy, xx = np.indices((size, size)) - size // 2
    g = np.exp(-(yy**2 + xx**2) / (2 * sigma**2))
    return np.stack([g, 2 * g, 3 * g], axis=2).astype(np.float32)


def write_mat73(path, name: str, array: np.ndarray) -> None:
    """A MATLAB v7.3 file as MATLAB writes it: a 512-byte header (user block), then HDF5 with
    the array stored column-major (axes reversed)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset(name, data=np.ascontiguousarray(array.T))
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")


@pytest.mark.parametrize("fmt", ["npy", "npz", "mat5", "mat73", "h5"])
def test_every_format_reads_the_same_kernel(tmp_path, fmt):
    k = gaussian_psf()
    path = tmp_path / f"k.{ {'mat5': 'mat', 'mat73': 'mat'}.get(fmt, fmt) }"
    if fmt == "npy":
        np.save(path, k)
    elif fmt == "npz":
        np.savez(path, psf=k, other=np.zeros(3))
    elif fmt == "mat5":
        scipy.io.savemat(path, {"PSF": k})
    elif fmt == "mat73":
        write_mat73(path, "psf", k)
    else:
        import h5py

        with h5py.File(path, "w") as f:
            f.create_dataset("kernel", data=k)
    psf = load_psf(path)
    assert psf.kernel.shape == (15, 15, 3)
    np.testing.assert_allclose(psf.kernel, k / k.sum(axis=(0, 1)), rtol=1e-6)
    np.testing.assert_allclose(psf.kernel.sum(axis=(0, 1), dtype=np.float64), 1.0, atol=1e-6)
    assert psf.id == "k"


def test_grey_psf_is_used_for_all_channels_and_normalisation_is_reported(tmp_path):
    g = gaussian_psf()[:, :, 0]
    np.save(tmp_path / "grey.npy", g)
    psf = load_psf(tmp_path / "grey.npy")
    assert psf.kernel.shape == (15, 15, 3)
    np.testing.assert_array_equal(psf.kernel[:, :, 0], psf.kernel[:, :, 2])
    assert psf.note and "grey.npy" in psf.note and "normalised" in psf.note
    unit = make_psf(psf.kernel, "unit")
    assert unit.note is None


@pytest.mark.parametrize(
    "array, message",
    [
        (-gaussian_psf(), "negative"),
        (np.full((5, 5, 3), np.nan), "NaN"),
        (np.zeros((5, 5, 3)), "sum to zero"),
        (np.ones((5, 5, 3, 2)), "shape"),
        (np.ones(7), "shape"),
        (np.ones((5, 5, 4)), "shape"),
    ],
)
def test_bad_psfs_are_refused_naming_the_file(tmp_path, array, message):
    path = tmp_path / "bad_psf.npy"
    np.save(path, array)
    with pytest.raises(DataError) as e:
        load_psf(path)
    assert "bad_psf.npy" in str(e.value) and message in str(e.value)


def test_one_zero_channel_and_unreadable_files(tmp_path):
    k = gaussian_psf()
    k[:, :, 1] = 0
    np.save(tmp_path / "g0.npy", k)
    with pytest.raises(DataError, match="channel.*G"):
        load_psf(tmp_path / "g0.npy")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match="junk.mat"):
        load_psf(tmp_path / "junk.mat")
    (tmp_path / "k.png").write_bytes(b"x")
    with pytest.raises(DataError, match="unknown PSF file type"):
        load_psf(tmp_path / "k.png")
    np.savez(tmp_path / "two.npz", a=k, b=k)
    with pytest.raises(DataError, match="which array"):
        load_psf(tmp_path / "two.npz")


def test_folder_of_psfs_and_unique_ids(tmp_path):
    for i in (2, 1):
        np.save(tmp_path / f"psf_{i}.npy", gaussian_psf(sigma=i))
    psfs = load_psfs([tmp_path])
    assert [p.id for p in psfs] == ["psf_1", "psf_2"]
    assert psfs[0].digest != psfs[1].digest
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no PSF files"):
        load_psfs([tmp_path / "empty"])


def test_dirac_is_detected():
    d = np.zeros((7, 7, 3), np.float32)
    d[3, 2] = 1
    assert make_psf(d, "d").dirac == (3, 2)
    assert make_psf(gaussian_psf(), "g").dirac is None


def test_rotation_about_the_centre():
    k = np.zeros((21, 21, 3), np.float32)
    k[10, 10] = 1
    k[10, 15] = 1  # a tap 5 px right of the centre
    psf = make_psf(k, "two-taps")
    rotated = rotate_psf(psf, 90.0)
    np.testing.assert_allclose(rotated.kernel.sum(axis=(0, 1), dtype=np.float64), 1.0, atol=1e-6)
    assert rotated.kernel[10, 10, 0] == pytest.approx(0.5, abs=1e-5)
    # counter-clockwise on screen: right of centre -> above the centre
    assert rotated.kernel[5, 10, 0] == pytest.approx(0.5, abs=1e-5)
    assert rotated.digest != psf.digest
    assert rotate_psf(psf, 0.0) is psf


def test_simulated_psf_physics():
    optics = DisplayOptics(size=201, pitch_um=80.0, opening_um=50.0, focal_mm=4.0)
    k = simulate_udc_psf(optics)
    assert k.shape == (201, 201, 3) and k.dtype == np.float32
    np.testing.assert_allclose(k.sum(axis=(0, 1), dtype=np.float64), 1.0, atol=1e-5)
    c = 100
    assert np.unravel_index(k[:, :, 1].argmax(), k.shape[:2]) == (c, c)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7 + 1e-4 * k.max())  # centred
    lobes = []
    for ch, lam in enumerate(optics.wavelengths_nm):
        expected = lam * 1e-3 * 4000.0 / 80.0  # lambda f / p, in 1-um pixels
        row = k[c, c:, ch]
        lo, hi = int(expected * 0.8), int(expected * 1.2) + 1
        lobe = lo + int(row[lo:hi].argmax())
        assert abs(lobe - expected) <= 1.0, (ch, lobe, expected)
        assert row[lobe] > 20 * row[lobe - 3 : lobe + 4].min()  # a real peak, not a slope
        lobes.append(lobe)
    assert lobes[0] > lobes[1] > lobes[2]  # red farther out than blue
    assert optics.lobe_spacing_px(530.0) == pytest.approx(26.5)
    assert np.array_equal(k, simulate_udc_psf(optics))  # deterministic


def test_render_and_radial_profile():
    psf = make_psf(simulate_udc_psf(DisplayOptics(size=101)), "sim")
    profile = radial_profile(psf.kernel[:, :, 0])
    assert profile[0] == pytest.approx(psf.kernel[50, 50, 0])
    picture = render_psf(psf)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3


def test_psf_cli_simulate_and_show(tmp_path):
    out = tmp_path / "sim" / "psf.npy"
    r = runner.invoke(app, ["psf", "simulate", "--out", str(out), "--size", "65",
                            "--pitch", "60", "--opening", "40"])
    assert r.exit_code == 0, r.output
    k = np.load(out)
    assert k.shape == (65, 65, 3) and k.dtype == np.float32
    png = tmp_path / "psf.png"
    r = runner.invoke(app, ["psf", "show", str(out), "--out", str(png)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(app, ["psf", "simulate", "--out", str(tmp_path / "x.npy"),
                            "--opening", "100", "--pitch", "80"])
    assert r.exit_code != 0 and "opening" in r.output
    np.save(tmp_path / "neg.npy", -np.ones((5, 5)))
    r = runner.invoke(app, ["psf", "show", str(tmp_path / "neg.npy"), "--out", str(png)])
    assert r.exit_code == 1 and "neg.npy" in r.output


# --- off-centre PSFs --------------------------------------------------------------------------


def off_centre_psf(dy: int = 3, dx: int = -2) -> np.ndarray:
    return np.roll(gaussian_psf(21, 1.5), (dy, dx), axis=(0, 1))


def test_centred_psfs_get_no_warning():
    assert make_psf(gaussian_psf(), "g").warning is None
    even = np.zeros((8, 8), np.float32)
    even[3:5, 3:5] = 1.0  # centroid half a pixel from (4, 4): within 1 px
    assert make_psf(even, "e").warning is None


def test_off_centre_psf_is_warned_naming_the_file_and_offset(tmp_path):
    path = tmp_path / "shifted.npy"
    np.save(path, off_centre_psf())
    psf = load_psf(path)
    assert psf.warning is not None
    assert str(path) in psf.warning
    assert "peak at (+3, -2) px" in psf.warning and "centroid at (+3.0, -2.0) px" in psf.warning
    assert "psf_recentre" in psf.warning
    assert np.array_equal(psf.kernel, make_psf(off_centre_psf(), "x").kernel)  # kept as is


def test_recentre_puts_the_centroid_on_the_centre_without_losing_light(tmp_path):
    from lpie_data.synth.psf import centre_offsets

    path = tmp_path / "shifted.npy"
    np.save(path, off_centre_psf())
    psf = load_psf(path, recentre=True)
    assert psf.warning is None and "recentred" in psf.note and str(path) in psf.note
    peak, centroid = centre_offsets(psf.kernel)
    assert peak == (0, 0) and np.hypot(*centroid) < 0.5
    np.testing.assert_allclose(psf.kernel.sum(axis=(0, 1)), 1.0, rtol=1e-5)
    h, w = psf.kernel.shape[:2]
    c = psf.kernel[h // 2 - 10 : h // 2 + 11, w // 2 - 10 : w // 2 + 11]
    np.testing.assert_allclose(c, make_psf(gaussian_psf(21, 1.5), "g").kernel, atol=1e-6)


def test_synth_reports_an_off_centre_psf_and_recentres_on_request(tmp_path):
    from lpie_data.synth import SynthConfig
    from lpie_data.synth.pipeline import plan

    path = tmp_path / "shifted.npy"
    np.save(path, off_centre_psf())
    _, _, notes, _ = plan(SynthConfig(), [], [path])
    assert any(str(path) in n and "off centre" in n for n in notes)
    _, _, notes, loaded = plan(SynthConfig(psf_recentre=True), [], [path])
    assert not any("off centre" in n for n in notes) and any("recentred" in n for n in notes)
    cfg = tmp_path / "s.toml"
    cfg.write_text("[synth]\ncrop = 32\npairs_per_image = 1\n")
    r = runner.invoke(app, ["synth", "--psf", str(path), "--config", str(cfg), "--jobs", "1",
                            "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "PSF off centre: peak at (+3, -2) px" in text and "shifted.npy" in text
    cfg.write_text("[synth]\ncrop = 32\npairs_per_image = 1\npsf_recentre = true\n")
    r = runner.invoke(app, ["synth", "--psf", str(path), "--config", str(cfg), "--jobs", "1",
                            "--out", str(tmp_path / "out2")])
    assert r.exit_code == 0, r.output
    assert "recentred" in r.output and "off centre" not in r.output


def test_psf_show_warns_and_can_recentre(tmp_path):
    path = tmp_path / "shifted.npy"
    np.save(path, off_centre_psf())
    r = runner.invoke(app, ["psf", "show", str(path), "--out", str(tmp_path / "a.png")])
    assert r.exit_code == 0, r.output
    assert "off centre" in " ".join(r.stderr.split())
    r = runner.invoke(app, ["psf", "show", str(path), "--recentre", "--out",
                            str(tmp_path / "b.png")])
    assert r.exit_code == 0 and "recentred" in r.output and "off centre" not in r.stderr

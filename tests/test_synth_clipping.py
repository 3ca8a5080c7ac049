"""Clipping is measured and reported: every synth pair's meta records its clipped share, the
summary prints the mean, and the defaults clip a few percent of a typical photo, not a third."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from lpie_data import iter_pairs
from lpie_data.cli import app
from lpie_data.synth import SynthConfig
from lpie_data.synth.blur import blur_crop, to_channels_first
from lpie_data.synth.pipeline import clipped_fraction, mean_clipped
from lpie_data.synth.psf_sim import builtin_psf
from lpie_data.synth.samples import sample_photo_files
from lpie_data.synth.sampling import draw_pair_params, pair_rng
from lpie_data.synth.sources import SourceImage, load_source

runner = CliRunner()


@pytest.mark.parametrize("tone_map", ["reinhard", "srgb", "none"])
def test_clipped_fraction_counts_pixels_at_the_clip_level(tone_map):
    from lpie_data.synth.tonemap import get_tone_map

    linear = np.zeros((4, 5, 3), np.float32)
    linear[0, :, 1] = 0.8  # 5 of 20 pixels reach x_max = 0.8 in one channel
    linear[1, 0] = 0.3
    inp = get_tone_map(tone_map)(linear)
    assert clipped_fraction(inp, 0.8, tone_map) == pytest.approx(0.25)
    assert clipped_fraction(inp, float("inf"), tone_map) == 0.0


def test_meta_records_clipped_and_the_summary_prints_the_mean(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text("[synth]\ncrop = 48\npairs_per_image = 2\nexposure = 3.0\nx_max = 1.0\n")
    out = tmp_path / "out"
    r = runner.invoke(app, ["synth", "--out", str(out), "--config", str(cfg), "--jobs", "1"])
    assert r.exit_code == 0, r.output
    values = []
    for split in ("train", "validation"):
        for pair in iter_pairs(str(out), split):
            top = np.float32(0.8)  # reinhard(1.0): the clip level after the tone map
            want = np.mean(np.any(pair.input >= top - 1e-5, axis=2))
            assert pair.meta["clipped"] == pytest.approx(want, abs=1e-6)
            values.append(pair.meta["clipped"])
    assert max(values) > 0
    mean = float(np.mean(values))
    assert mean_clipped(str(out)) == pytest.approx(mean)
    assert f"clipped: {mean:.1%}" in " ".join(r.output.split())


def test_default_exposure_and_x_max_clip_a_few_percent_of_the_builtin_photos():
    """Measured as synth does it (built-in PSF, default noise): mean over the six built-in photos
    of the share of pixels with a channel at x_max (old defaults, exposure 1-4: ~19 %)."""
    cfg = SynthConfig(crop=256)
    psf = builtin_psf()
    shares = []
    for name, path in sample_photo_files().items():
        linear = load_source(SourceImage(name, "photo", str(path)))
        source = to_channels_first(linear)
        for index in range(3):
            rng = pair_rng(0, name, index)
            params = draw_pair_params(rng, cfg, linear.shape[:2], 1)
            blurred = blur_crop(source, params.box, psf, gain=np.float32(params.exposure))
            shares.append(np.mean(np.any(blurred >= params.x_max, axis=2)))
    assert 0.002 < float(np.mean(shares)) < 0.06

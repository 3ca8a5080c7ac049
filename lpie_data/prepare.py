"""Prepare a public dataset as pair shards: one entry point per source, what ``lpie-data
prepare <source>`` runs.

Each function checks the whole input tree from its headers (nothing is written if it is
wrong), then runs the job (:func:`lpie_data.jobs.run_job`) with the options bundle ``job``, and
returns its :class:`~lpie_data.jobs.JobSummary`. A rerun with the same arguments resumes a killed
run or, when finished, does nothing (``summary.noop``).

Example::

    from lpie_data import JobOptions, prepare_sidd

    summary = prepare_sidd("~/data/SIDD_Medium_Srgb", "data/sidd", job=JobOptions(jobs=8))
    print(summary.splits)  # {'train': {'examples': ..., 'bytes': ...}, 'validation': ...}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lpie_data.items import Plan, Produce
from lpie_data.jobs import JobOptions, JobSummary, run_job
from lpie_data.valuespace import SOURCE_SPACES, UDC_TONEMAP_SPACES


def _run(out: str | Path, name: str, command: str, arguments: dict[str, Any], plan: Plan,
         produce: Produce, job: JobOptions, value_space: str) -> JobSummary:
    items, notes = plan
    return run_job(str(out), name, command, arguments, items, produce, job, notes=notes,
                   extra_manifest={"value_space": value_space})


def _absolute(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


def prepare_sidd(
    root: str | Path,
    out: str | Path,
    *,
    tile: int = 1000,
    stride: int | None = None,
    val_dir: str | Path | None = None,
    job: JobOptions = JobOptions(),
) -> JobSummary:
    """SIDD sRGB (Medium or Small) as ``tile`` x ``tile`` crops (split ``train``, uint8), plus
    the validation blocks (split ``validation``) found under ``root`` or in ``val_dir``.

    ``stride`` (default ``tile``) below ``tile`` makes overlapping crops (see
    :mod:`lpie_data.sources.sidd`).
    """
    from lpie_data.sources import sidd

    root = Path(root).expanduser()
    stride = tile if stride is None else stride
    val = Path(val_dir).expanduser() if val_dir else None
    arguments = {"root": _absolute(root), "tile": tile, "stride": stride,
                 "val_dir": _absolute(val) if val else None}
    return _run(out, sidd.NAME, "prepare sidd", arguments, sidd.work_items(root, tile, stride, val),
                sidd.produce, job, SOURCE_SPACES[sidd.NAME])


def prepare_udc(
    root: str | Path,
    out: str | Path,
    *,
    patch: int = 400,
    tone_map: str = "reinhard",
    psf_pos: int | str = 5,
    job: JobOptions = JobOptions(),
) -> JobSummary:
    """UDC SYNTH HDR pairs (DISCNet or MIPI 2022 layout) as non-overlapping ``patch`` crops,
    tone-mapped for storage (``reinhard``: uint16, ``none``: linear float16); ``psf_pos``: the
    DISCNet PSF position 1-9, or ``"all"`` (see :mod:`lpie_data.sources.udc`)."""
    from lpie_data.sources import udc

    root = Path(root).expanduser()
    plan = udc.work_items(root, patch, tone_map, psf_pos)
    arguments = {"root": _absolute(root), "patch": patch, "tonemap": tone_map,
                 "psf_pos": udc.parse_psf_pos(psf_pos)}
    return _run(out, udc.NAME, "prepare udc", arguments, plan, udc.produce, job,
                UDC_TONEMAP_SPACES[tone_map])


def prepare_gopro(
    root: str | Path,
    out: str | Path,
    *,
    blur: str = "blur",
    job: JobOptions = JobOptions(),
) -> JobSummary:
    """GoPro (GOPRO_Large or the flattened repack) as whole blurred / sharp frames (uint8);
    ``blur`` picks GOPRO_Large's input folder, ``blur`` or ``blur_gamma`` (see
    :mod:`lpie_data.sources.gopro`)."""
    from lpie_data.sources import gopro

    root = Path(root).expanduser()
    arguments = {"root": _absolute(root), "blur": blur}
    return _run(out, gopro.NAME, "prepare gopro", arguments, gopro.work_items(root, blur),
                gopro.produce, job, SOURCE_SPACES[gopro.NAME])

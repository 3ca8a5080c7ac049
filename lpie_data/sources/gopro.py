"""GoPro deblurring (GOPRO_Large, Nah et al. 2017): whole blurred/sharp frame pairs.

Two layouts, ROOT being the folder that holds ``train/`` and ``test/``:

- ``GOPRO_Large/{train,test}/<sequence>/{blur,blur_gamma,sharp}/NNNNNN.png`` (nested);
- the flattened repack ``{train,test}/{input,target}/<sequence>-<frame>.png`` (flat).

Frames are 1280 x 720 8-bit RGB PNGs, stored whole as uint8 (trainers crop on the fly). Frame
numbers repeat across sequences, so keys are ``<sequence>/<frame>``. Pairs are matched by
(sequence, frame), never by list position; headers are checked before any work starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lpie_data.errors import ConfigError, DataError
from lpie_data.images import png8_rgb_header, read_png8_rgb
from lpie_data.items import Plan, WorkItem, load_pair
from lpie_data.records import Example

NAME = "gopro"
SPLITS = ("train", "test")
STANDARD_COUNTS = {"train": 2103, "test": 1111}
BLUR_FOLDERS = ("blur", "blur_gamma")
DEFAULT_BLUR = "blur"
SHARP = "sharp"
FLAT_INPUT, FLAT_TARGET = "input", "target"


@dataclass(frozen=True)
class FrameArgs:
    """One frame pair: paths relative to ``root``, and the example's key and meta."""

    root: str
    input: str
    target: str
    key: str
    meta: dict


def _pngs(folder: Path) -> dict[str, Path]:
    """PNG files of ``folder`` by stem (the frame name, e.g. ``000047``)."""
    return {p.name[:-4]: p for p in sorted(folder.iterdir())
            if p.is_file() and p.name.lower().endswith(".png")}


def _match(inputs: dict[str, Path], targets: dict[str, Path], in_dir: Path, tgt_dir: Path
           ) -> list[tuple[str, Path, Path]]:
    for name, path in inputs.items():
        if name not in targets:
            raise DataError(f"{path}: its sharp partner {tgt_dir / path.name} is missing")
    for name, path in targets.items():
        if name not in inputs:
            raise DataError(f"{path}: its blurred partner {in_dir / path.name} is missing")
    return [(name, inputs[name], targets[name]) for name in sorted(inputs)]


def _nested_pairs(split_dir: Path, blur: str) -> list[tuple[str, str, Path, Path]]:
    """(sequence, frame, blurred, sharp) of ``<sequence>/{blur,sharp}/NNNNNN.png``."""
    pairs = []
    sequences = sorted(d for d in split_dir.iterdir() if d.is_dir())
    if not sequences:
        raise DataError(f"{split_dir}: no sequence folders (e.g. GOPR0372_07_00/)")
    for seq in sequences:
        in_dir, tgt_dir = seq / blur, seq / SHARP
        for d in (in_dir, tgt_dir):
            if not d.is_dir():
                raise DataError(f"{d}: missing (each sequence needs {blur}/ and {SHARP}/)")
        matched = _match(_pngs(in_dir), _pngs(tgt_dir), in_dir, tgt_dir)
        if not matched:
            raise DataError(f"{in_dir}: no PNG frames")
        pairs += [(seq.name, frame, i, t) for frame, i, t in matched]
    return pairs


def _flat_pairs(split_dir: Path) -> list[tuple[str, str, Path, Path]]:
    """(sequence, frame, blurred, sharp) of ``{input,target}/<sequence>-<frame>.png``."""
    in_dir, tgt_dir = split_dir / FLAT_INPUT, split_dir / FLAT_TARGET
    if not tgt_dir.is_dir():
        raise DataError(f"{tgt_dir}: missing (the flattened layout needs input/ and target/)")
    matched = _match(_pngs(in_dir), _pngs(tgt_dir), in_dir, tgt_dir)
    if not matched:
        raise DataError(f"{in_dir}: no PNG frames")
    pairs = []
    for name, i, t in matched:
        sequence, sep, frame = name.rpartition("-")
        if not sep or not sequence or not frame:
            raise DataError(f"{i}: not named <sequence>-<frame>.png")
        pairs.append((sequence, frame, i, t))
    return pairs


def _check_pngs(inp: Path, tgt: Path) -> tuple[int, int]:
    hi, ht = png8_rgb_header(inp), png8_rgb_header(tgt)
    if (hi.height, hi.width) != (ht.height, ht.width):
        raise DataError(f"{inp}: size {hi.width}x{hi.height} differs from its sharp frame "
                        f"{tgt} ({ht.width}x{ht.height})")
    return hi.height, hi.width


def work_items(root: Path, blur: str = DEFAULT_BLUR) -> Plan:
    """One work item per frame pair (splits ``train`` then ``test``), headers checked.

    Also returns notes for the user: a split whose pair count differs from the standard
    2103 / 1111. ``blur`` picks the nested layout's input folder (``blur`` or ``blur_gamma``);
    the flattened layout has a single input folder and takes only the default.
    """
    if blur not in BLUR_FOLDERS:
        raise ConfigError(f"unknown blur folder {blur!r}; valid: {', '.join(BLUR_FOLDERS)}")
    root = Path(root).absolute()  # workers may run elsewhere (Dask)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    present = [s for s in SPLITS if (root / s).is_dir()]
    if not present:
        hint = f"; did you mean {root / 'GOPRO_Large'}?" if (root / "GOPRO_Large").is_dir() else ""
        raise DataError(f"{root}: no train/ or test/ folder (expected GOPRO_Large or the "
                        f"flattened repack){hint}")
    items, notes = [], []
    for split in SPLITS:
        split_dir = root / split
        if split not in present:
            notes.append(f"no {split}/ split in {root} (the standard GoPro tree has "
                         f"{STANDARD_COUNTS[split]} {split} pairs)")
            continue
        if (split_dir / FLAT_INPUT).is_dir():
            if blur != DEFAULT_BLUR:
                raise ConfigError(f"{split_dir}: the flattened layout has one input folder "
                                  f"(input/); --blur {blur} needs GOPRO_Large's nested folders")
            layout, used, pairs = "flat", FLAT_INPUT, _flat_pairs(split_dir)
        else:
            layout, used, pairs = "nested", blur, _nested_pairs(split_dir, blur)
        for sequence, frame, inp, tgt in pairs:
            height, width = _check_pngs(inp, tgt)
            key = f"{sequence}/{frame}"
            meta = {"source": str(inp.relative_to(root)), "target_source":
                    str(tgt.relative_to(root)), "box": [0, 0, height, width],
                    "sequence": sequence, "frame": frame, "blur": used, "layout": layout}
            items.append(WorkItem(f"{split}/{key}", split,
                                  FrameArgs(str(root), meta["source"], meta["target_source"],
                                            key, meta)))
        if len(pairs) != STANDARD_COUNTS[split]:
            notes.append(f"{split_dir}: {len(pairs)} pairs; the standard GoPro {split} split "
                         f"has {STANDARD_COUNTS[split]} (partial or modified tree?)")
    return items, notes


def produce(item: WorkItem) -> Iterator[Example]:
    """Worker: the whole frame pair, uint8 H x W x 3 (blurred input, sharp target)."""
    a: FrameArgs = item.args
    root = Path(a.root)
    inp, tgt = load_pair(read_png8_rgb, root / a.input, root / a.target, "sharp frame")
    yield Example(a.key, inp, tgt, a.meta)

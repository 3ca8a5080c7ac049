"""Crop positions along one axis."""

from __future__ import annotations


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of ``tile``-long crops along an axis of ``length``.

    ``stride == tile``: non-overlapping crops, the remainder dropped. ``stride < tile``:
    overlapping crops, with the last one snapped to the edge so the whole axis is covered.
    """
    if length < tile:
        return []
    starts = list(range(0, length - tile + 1, stride))
    if stride < tile and starts[-1] != length - tile:
        starts.append(length - tile)
    return starts

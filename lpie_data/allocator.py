"""Keep freed memory in the process, so per-item arrays do not page-fault afresh every time.

Workers allocate the same large arrays again and again: a decoded 3000 x 5328 frame (48 MB), a
synth pair's padded window and spectra (30 MB each). glibc serves allocations above its mmap
threshold (at most 32 MB by default) with fresh ``mmap`` pages and hands them back on ``free``,
so every item pays the kernel to map and zero tens of thousands of pages again: measured here on
``synth`` with 800 x 800 crops and an 800 x 800 PSF, 6,700 page faults and ~150 ms of system
time per pair - as much as the FFT itself, and the main source of its run-to-run variance (it
grows with memory pressure from other programs). Raising the mmap and trim thresholds keeps
those pages in the heap for the next item: no faults, the same bytes. One arena for all
threads: glibc's per-thread arenas are at most 64 MB heaps and serve larger blocks with fresh
``mmap`` pages again (threads that make a pair each, as ``synth`` does, would fault anew).
"""

from __future__ import annotations

import ctypes
import platform

#: glibc mallopt parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Allocations up to this size come from the heap; this much free heap is kept, not returned.
KEEP_BYTES = 1 << 30

_done = False


def keep_freed_memory() -> bool:
    """Make glibc reuse freed large blocks instead of unmapping them (once per process).

    Returns whether the setting is in force (False off glibc, e.g. macOS or musl: nothing
    changes there). Memory use does not grow: the process keeps what it already needed.
    """
    global _done
    if _done:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(M_MMAP_THRESHOLD, KEEP_BYTES) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1 and ok
        ok = libc.mallopt(M_ARENA_MAX, 1) == 1 and ok
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok

"""keep_freed_memory: a large array freed and allocated again costs no new page faults."""

from __future__ import annotations

import platform
import resource

import numpy as np
import pytest

from lpie_data.allocator import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_large_arrays_reuse_the_heap():
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
    a = np.ones(64 << 20, np.uint8)  # 64 MB: above glibc's largest default mmap threshold
    del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    b = np.ones(64 << 20, np.uint8)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert b.sum() == 64 << 20
    assert faults < 1000  # a fresh mapping would fault 16,384 pages (4 KiB each)

"""How many cores this process may use: the one count every thread and worker default uses."""

from __future__ import annotations

from functools import cache


@cache
def usable_cores() -> int:
    """The cores this process may run on (>= 1): its CPU affinity and its cgroup CPU quota (a
    container's limit, a Slurm job's ``--cpus-per-task``) counted, unlike ``os.cpu_count()``,
    which gives the whole machine's (64 FFT threads on a 4-core share of a 64-core node)."""
    from joblib import cpu_count

    return max(1, int(cpu_count()))

"""Where a job's work items run: in this process, on joblib's local process or thread pool,
or on a Dask cluster through joblib's dask backend.

Each item's worker writes the item's part files into the job's work folder. When every worker
can reach that folder (a local or shared folder, ``gs://``, ...) it writes there directly. A
filesystem that lives in one process's memory (TensorFlow's ``ram://``) is invisible to other
processes: there, process workers (loky, dask) write the item into a private temporary folder
and send the files back, and this process stores them in the work folder, the item's ``.json``
sidecar last, exactly as a direct write would. Either way the bytes are the same, and a killed
run resumes from the items already stored.
"""

from __future__ import annotations

import os
import tempfile
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from lpie_data import storage
from lpie_data.allocator import keep_freed_memory
from lpie_data.errors import DataError, LpieError, OutputError

#: joblib backends whose workers are other processes (they cannot see ``ram://``).
PROCESS_BACKENDS = ("loky", "dask")

#: How long a job waits for a first Dask worker to join the scheduler.
WAIT_FOR_WORKERS_S = 30

#: ``do_item(produce, item, index, work) -> records``: writes one item's part files in ``work``.
DoItem = Callable[[Callable[[Any], Iterable[Any]], Any, int, str], int]


def run_items(
    do_item: DoItem,
    produce: Callable[[Any], Iterable[Any]],
    todo: Sequence[tuple[int, Any]],
    work: str,
    *,
    jobs: int,
    backend: str,
    scheduler: str | None = None,
) -> Iterator[int]:
    """Run ``do_item(produce, item, index, work)`` for every ``(index, item)`` in ``todo``.

    Yields each item's return value as soon as it is stored, in completion order. ``backend`` is
    ``loky`` (local processes, ``jobs`` of them; -1: all cores), ``threading``, or ``dask``
    (the cluster at ``scheduler``, all its worker threads; ``jobs`` is ignored). Errors raised
    by ``produce`` propagate with their message; other exceptions become DataError naming the
    work item. Raises OutputError when the cluster cannot be used.
    """
    if backend == "dask":
        yield from _run_on_dask(do_item, produce, todo, work, scheduler)
        return
    if jobs == 1 or len(todo) == 1:
        for index, item in todo:
            yield run_item(do_item, produce, item, index, work)
        return
    import joblib

    detached = backend in PROCESS_BACKENDS and not storage.shared_between_processes(work)
    results = joblib.Parallel(n_jobs=jobs, backend=backend, return_as="generator_unordered")(
        joblib.delayed(run_item)(do_item, produce, item, index, None if detached else work)
        for index, item in todo
    )
    yield from _store(results, work)


def run_item(do_item: DoItem, produce: Callable[[Any], Iterable[Any]], item: Any, index: int,
             work: str | None) -> Any:
    """Worker side: one item. With ``work=None`` the part files are written to a private
    temporary folder and returned as ``(records, {file name: bytes})`` for :func:`store_part`.
    """
    keep_freed_memory()  # large per-item arrays reuse the heap: no page faults per item
    try:
        if work is not None:
            return do_item(produce, item, index, work)
        with tempfile.TemporaryDirectory(prefix="lpie-item-") as tmp:
            count = do_item(produce, item, index, tmp)
            files = {}
            for name in sorted(os.listdir(tmp)):
                with open(os.path.join(tmp, name), "rb") as f:
                    files[name] = f.read()
            return count, files
    except LpieError:
        raise
    except Exception as e:
        where = traceback.extract_tb(e.__traceback__)[-1]
        raise DataError(
            f"work item {getattr(item, 'key', item)!r} failed: {type(e).__name__}: {e} "
            f"(at {os.path.basename(where.filename)}:{where.lineno})"
        ) from e


def store_part(result: Any, work: str) -> int:
    """Parent side of a detached item: write its files into ``work``, sidecars (``.json``,
    which mark the item finished) last; return its record count."""
    if isinstance(result, int):
        return result
    count, files = result
    for name in sorted(files, key=lambda n: (n.endswith(".json"), n)):
        storage.write_atomic(storage.join(work, name), files[name])
    return count


def _store(results: Iterable[Any], work: str) -> Iterator[int]:
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    try:
        for result in results:
            yield store_part(result, work)
    except TerminatedWorkerError as e:
        raise DataError(_died(e)) from None


def _died(e: BaseException) -> str:
    return (f"a worker process died ({type(e).__name__}: {e}); out of memory? Finished items "
            "are kept: rerun the same command to resume")


def _run_on_dask(do_item: DoItem, produce: Callable[[Any], Iterable[Any]],
                 todo: Sequence[tuple[int, Any]], work: str,
                 scheduler: str | None) -> Iterator[int]:
    if not scheduler:
        raise OutputError("--backend dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    try:
        import joblib
        from dask.distributed import Client
        from distributed.scheduler import KilledWorker
    except ImportError:
        raise OutputError("the dask backend needs dask.distributed: "
                          "pip install 'lpie[dask]'") from None
    # Workers run elsewhere: give them an absolute work folder, not one relative to our cwd.
    work = storage.absolute(work)
    detached = not storage.shared_between_processes(work)
    try:
        client = Client(scheduler, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise OutputError(f"cannot connect to the Dask scheduler at {scheduler}: {e}") from None
    try:
        _check_workers(client, scheduler, work, detached)
        with joblib.parallel_config(backend="dask", client=client):
            results = joblib.Parallel(n_jobs=-1, return_as="generator_unordered")(
                joblib.delayed(run_item)(do_item, produce, item, index,
                                         None if detached else work)
                for index, item in todo
            )
            yield from _store(results, work)
    except KilledWorker as e:
        raise DataError(_died(e)) from None
    except TimeoutError:
        raise OutputError(f"no Dask worker joined the scheduler at {scheduler} in time; start "
                          f"workers with: dask worker {scheduler}") from None
    finally:
        client.close()


def _check_workers(client: Any, scheduler: str, work: str, detached: bool) -> None:
    """Fail early, before any work is sent, when the cluster has no worker, its workers cannot
    import lpie, or they do not see the output folder this process sees."""
    try:
        client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
    except TimeoutError:
        raise OutputError(f"no Dask worker joined the scheduler at {scheduler} within "
                          f"{WAIT_FOR_WORKERS_S} s; start workers with: dask worker {scheduler}"
                          ) from None
    # Detached workers only need to import lpie; the others must also see the work folder.
    marker = None if detached else storage.join(work, f".dask-probe-{uuid.uuid4().hex}")
    if marker:
        storage.write_atomic(marker, b"")
    try:
        if marker:
            seen = client.run(storage.exists, marker)
        else:
            seen = {w: True for w in client.run(storage.is_remote, work)}
    except ImportError as e:
        raise OutputError(f"the Dask workers at {scheduler} cannot import lpie ({e}); install "
                          "the same lpie version in the workers' environment") from None
    finally:
        if marker:
            storage.remove(marker)
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise OutputError(
            f"Dask worker(s) {', '.join(blind)} do not see {work}: the output folder (and the "
            "sources) must be on a filesystem shared by this machine and every worker, at the "
            "same path (NFS, ...), or in an object store such as gs://"
        )

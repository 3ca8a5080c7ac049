"""A job's output folder: the advisory lock a running job holds (`output_lock`), the check that
an existing output was made by the same job (`prepare_out`), and temporary-file clean-up."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any

from lpie_data import storage
from lpie_data.errors import OutputError
from lpie_data.fingerprint import (
    FILE_HASHES,
    combined_digest,
    inputs_digest,
    newer_inputs,
    same_job,
)
from lpie_data.items import WorkItem
from lpie_data.jsonfile import read_json
from lpie_data.shards import (
    MANIFEST,
)

WORK_DIR = ".lpie-work"
#: The advisory lock file a running job holds inside its (local) output folder.
LOCK_FILE = ".lpie-lock"


def read_state(path: str, what: str) -> Any:
    """A JSON state file of the job; OutputError naming it when it is damaged."""
    hint = "use --overwrite to replace the dataset, or another --out"
    try:
        data = read_json(path, what=what, hint=hint)
    except OSError as e:
        raise OutputError(f"{path}: damaged {what} ({type(e).__name__}: {e}); {hint}") from None
    if not isinstance(data, dict):
        raise OutputError(f"{path}: damaged {what} (not a JSON object); use --overwrite to "
                          "replace the dataset, or another --out")
    return data


def prepare_out(out: str, fingerprint: dict, overwrite: bool, name: str,
                 items: Sequence[WorkItem] = (),
                 stats: Sequence[Sequence[tuple[str, int, int]]] = ()) -> str:
    """Check OUT (which exists) and return 'done', 'resume' or 'new'."""
    if not storage.isdir(out):
        raise OutputError(f"{out}: exists and is not a folder")
    entries = [e for e in storage.listdir(out) if e != LOCK_FILE]
    manifest_path = storage.join(out, MANIFEST)
    job_path = storage.join(out, WORK_DIR, "job.json")
    previous = None
    for p, what in ((manifest_path, "manifest"), (job_path, "job file")):
        if storage.exists(p):
            try:
                previous = read_state(p, what)
            except OutputError:
                if not overwrite:
                    raise
                previous = {}
            break
    if previous is None:
        if entries:
            raise OutputError(
                f"{out}: exists, is not empty and is not an lpie dataset; choose a new folder"
            )
        return "new"
    done = storage.exists(manifest_path)
    job = previous.get("job", previous)
    same = isinstance(job, dict) and same_job(job, fingerprint)
    if same and done:
        # Modification times first (cheap); contents only where a file is newer.
        recorded = job.get("inputs_sha256")
        if recorded is None or not newer_inputs([s for st in stats for s in st],
                                                 storage.mtime_ns(manifest_path)):
            return "done"
        name = job.get("inputs_hash", "sha256")  # as the dataset recorded its digests
        if (name in FILE_HASHES
                and combined_digest([inputs_digest(it, name) for it in items]) == recorded):
            if not storage.is_remote(manifest_path):  # the same content: hash it once only
                os.utime(manifest_path)
            return "done"
    elif same:
        remove_tmp(out)  # left by a run killed while joining (a hard-linked part, ...)
        return "resume"
    if not overwrite:
        if same:
            raise OutputError(
                f"{out}: its input files changed (size or modification time) since this "
                "dataset was made; use --overwrite to rebuild it, or another --out"
            )
        raise OutputError(
            f"{out}: holds a dataset made by '{previous.get('command', '?')}' with other "
            "arguments or inputs; use another --out, or --overwrite to replace it"
        )
    from lpie_data.tfds_info import TFDS_FILES

    for entry in entries:
        if entry == MANIFEST or ".tfrecord-" in entry or entry in TFDS_FILES:
            storage.remove(storage.join(out, entry))
    remove_tmp(out)
    if storage.exists(storage.join(out, WORK_DIR)):
        storage.rmtree(storage.join(out, WORK_DIR))
    return "new"


def remove_tmp(out: str) -> None:
    """Remove the temporary files (``.NAME.tmp``) an interrupted run left in ``out``."""
    for entry in storage.listdir(out):
        if entry.startswith(".") and entry.endswith(".tmp"):
            storage.remove(storage.join(out, entry))


@contextlib.contextmanager
def output_lock(out: str, command: str) -> Iterator[None]:
    """Hold an advisory lock on the local folder ``out`` (which exists) while the block runs.

    The lock file ``out/.lpie-lock`` records who holds it (pid, host, command, start time); a
    second run fails at once with OutputError naming the holder. The lock goes when its process
    ends, however it ends. Remote folders (``gs://``, ``ram://``) are not locked.
    """
    if storage.is_remote(out):
        yield
        return
    path = os.path.join(out, LOCK_FILE)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"{out}: cannot write ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode(errors="replace")
            os.close(fd)
            try:
                info = json.loads(holder)
                who = (f"pid {info['pid']} on {info['host']}, '{info['command']}' started "
                       f"{info['started']}")
            except (ValueError, KeyError, TypeError):
                who = "another process"
            raise OutputError(f"{out}: in use by another run ({who}); wait for it to end or "
                              "use another --out") from None
        try:  # the run that held it may have removed the file just before we locked it
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
        os.close(fd)

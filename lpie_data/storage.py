"""File operations on local paths and on any URL ``tf.io.gfile`` understands.

Plain paths use the standard library (no TensorFlow import, which costs seconds); paths with a
scheme (``gs://``, ``s3://``, ``ram://``, ...) go through ``tf.io.gfile``. Every writer in lpie
writes a temporary name and renames it, so a reader never sees a half-written file.

``gs://`` needs TensorFlow's GCS support (``pip install 'lpie[gcs]'``, i.e.
``tensorflow[gcs-filesystem]``) and Google credentials. ``ram://`` is TensorFlow's in-memory
filesystem: it lives in one process's memory, so other processes (joblib or Dask workers)
cannot see it (:func:`shared_between_processes`).
"""

from __future__ import annotations

import os
import shutil
from typing import IO, Any

# Filesystems that exist only inside the process that writes them.
PROCESS_LOCAL_SCHEMES = ("ram",)


def is_remote(path: str) -> bool:
    """True for URLs with a scheme (handled by tf.io.gfile)."""
    return "://" in str(path)


def scheme(path: str) -> str:
    """The URL scheme (``gs``, ``ram``, ...), or ``""`` for a plain local path."""
    return str(path).split("://", 1)[0].lower() if is_remote(path) else ""


def shared_between_processes(path: str) -> bool:
    """False where another process sees nothing of what this one wrote (``ram://``).

    Local paths and object stores (``gs://``, ``s3://``, ``hdfs://``) are shared; whether a
    local path is also shared between *hosts* (NFS, ...) is up to the cluster's setup.
    """
    return scheme(path) not in PROCESS_LOCAL_SCHEMES


def absolute(path: str) -> str:
    """``path`` made absolute if it is local (for workers whose working folder differs)."""
    return str(path) if is_remote(path) else os.path.abspath(path)


def _gfile() -> Any:
    import tensorflow as tf

    return tf.io.gfile


def join(base: str, *parts: str) -> str:
    base = str(base)
    if is_remote(base):
        return "/".join([base.rstrip("/"), *parts])
    return os.path.join(base, *parts)


def basename(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def makedirs(path: str) -> None:
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def listdir(path: str) -> list[str]:
    """Names (not paths) in a folder, sorted; folders without a trailing slash."""
    if is_remote(path):
        return sorted(n.rstrip("/") for n in _gfile().listdir(path))
    return sorted(os.listdir(path))


def open_file(path: str, mode: str = "rb") -> IO[Any]:
    if is_remote(path):
        return _gfile().GFile(path, mode)
    return open(path, mode)  # noqa: SIM115 - caller closes


def size(path: str) -> int:
    return _gfile().stat(path).length if is_remote(path) else os.path.getsize(path)


def remove(path: str) -> None:
    if is_remote(path):
        _gfile().remove(path)
    else:
        os.remove(path)


def rmtree(path: str) -> None:
    if is_remote(path):
        _gfile().rmtree(path)
    else:
        shutil.rmtree(path)


def rename(src: str, dst: str) -> None:
    """Atomic replace on local filesystems; gfile rename (overwrite) elsewhere."""
    if is_remote(src):
        _gfile().rename(src, dst, overwrite=True)
    else:
        os.replace(src, dst)


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name and a rename."""
    tmp = join(*_split(path)[:1], "." + basename(path) + ".tmp") if "/" in str(path) else (
        "." + str(path) + ".tmp"
    )
    with open_file(tmp, "wb") as f:
        f.write(data)
    rename(tmp, path)


def _split(path: str) -> tuple[str, str]:
    path = str(path).rstrip("/")
    head, _, tail = path.rpartition("/")
    return head, tail

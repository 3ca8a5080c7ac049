"""File operations on local paths and on any URL ``tf.io.gfile`` understands.

Plain paths use the standard library (no TensorFlow import, which costs seconds); paths with a
scheme (``gs://``, ``ram://``, ...) go through ``tf.io.gfile``. Every writer in lpie writes a
temporary name and renames it, so a reader never sees a half-written file.

``gs://`` needs TensorFlow's GCS filesystem (built into TensorFlow's Linux wheels; elsewhere
``pip install 'lpie[gcs]'``, i.e. ``tensorflow[gcs-filesystem]``) and Google credentials.
``ram://`` is TensorFlow's in-memory filesystem: it lives in one process's memory, so other
processes (joblib or Dask workers) cannot see it (:func:`shared_between_processes`).

Failures on URLs (unknown scheme, missing file, no credentials or network) raise DataError when
reading and OutputError when writing, naming the path; local paths raise the usual OSError.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import IO, Any

from lpie_data.errors import DataError, LpieError, OutputError

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

    Local paths and object stores (``gs://``) are shared; whether a local path is also shared
    between *hosts* (NFS, ...) is up to the cluster's setup.
    """
    return scheme(path) not in PROCESS_LOCAL_SCHEMES


def absolute(path: str) -> str:
    """``path`` made absolute if it is local (for workers whose working folder differs)."""
    return str(path) if is_remote(path) else os.path.abspath(path)


def _error(path: str, e: Exception, write: bool) -> LpieError:
    detail = getattr(e, "message", "") or str(e) or "no details"
    if type(e).__name__ == "NotFoundError" and not write:
        return DataError(f"{path}: no such file or folder")
    kind = OutputError if write else DataError
    return kind(f"{path}: cannot {'write' if write else 'read'} ({type(e).__name__}: {detail})")


def _gfile(path: str, write: bool) -> Any:
    """tf.io.gfile, once ``path``'s scheme is known to TensorFlow."""
    import tensorflow as tf

    name = scheme(path)
    registered = tf.io.gfile.get_registered_schemes()
    if name not in registered:
        hint = " (install TensorFlow's GCS support: pip install 'lpie[gcs]')" if name == "gs" \
            else ""
        valid = ", ".join(f"{s}://" for s in sorted(registered) if s and s != "file")
        kind = OutputError if write else DataError
        raise kind(f"{path}: TensorFlow has no filesystem for {name}:// here{hint}; "
                   f"available: {valid}, and local paths")
    return tf.io.gfile


def _remote(op: str, path: str, *args: Any, write: bool = False, **kwargs: Any) -> Any:
    gfile = _gfile(path, write)
    import tensorflow as tf

    try:
        return getattr(gfile, op)(path, *args, **kwargs)
    except tf.errors.OpError as e:
        raise _error(path, e, write) from None


class _RemoteFile:
    """A tf.io.gfile.GFile whose TensorFlow errors become DataError / OutputError."""

    def __init__(self, path: str, mode: str) -> None:
        self._write = any(c in mode for c in "wa+")
        self._path = path
        self._f = _gfile(path, self._write).GFile(path, mode)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import tensorflow as tf

        try:
            return fn(*args, **kwargs)
        except tf.errors.OpError as e:
            raise _error(self._path, e, self._write) from None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._f, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: self._call(attr, *args, **kwargs)

    def __iter__(self) -> Any:
        return iter(self._f)

    def __enter__(self) -> _RemoteFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._f.close)


def join(base: str, *parts: str) -> str:
    base = str(base)
    if is_remote(base):
        return "/".join([base.rstrip("/"), *parts])
    return os.path.join(base, *parts)


def basename(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def exists(path: str) -> bool:
    return _remote("exists", path) if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    return _remote("isdir", path) if is_remote(path) else os.path.isdir(path)


def makedirs(path: str) -> None:
    if is_remote(path):
        _remote("makedirs", path, write=True)
    else:
        os.makedirs(path, exist_ok=True)


def listdir(path: str) -> list[str]:
    """Names (not paths) in a folder, sorted; folders without a trailing slash."""
    if is_remote(path):
        return sorted(n.rstrip("/") for n in _remote("listdir", path))
    return sorted(os.listdir(path))


def open_file(path: str, mode: str = "rb") -> IO[Any]:
    if is_remote(path):
        return _RemoteFile(path, mode)  # type: ignore[return-value]
    return open(path, mode)  # noqa: SIM115 - caller closes


def size(path: str) -> int:
    return _remote("stat", path).length if is_remote(path) else os.path.getsize(path)


def mtime_ns(path: str) -> int:
    """Modification time in nanoseconds."""
    return _remote("stat", path).mtime_nsec if is_remote(path) else os.stat(path).st_mtime_ns


def remove(path: str) -> None:
    if is_remote(path):
        _remote("remove", path, write=True)
    else:
        os.remove(path)


def rmtree(path: str) -> None:
    if is_remote(path):
        _remote("rmtree", path, write=True)
    else:
        shutil.rmtree(path)


def rename(src: str, dst: str) -> None:
    """Atomic replace on local filesystems; gfile rename (overwrite) elsewhere."""
    if is_remote(src):
        _remote("rename", src, dst, overwrite=True, write=True)
    else:
        os.replace(src, dst)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """The one atomic write: yields a temporary name next to ``path`` (``.<name>.tmp``) for the
    caller to write; renamed over ``path`` when the block ends. A reader never sees a
    half-written file. (Writers that take a path must accept the URL for remote ``path``s;
    :func:`open_file` does.)

    If the block or the rename fails (a full disk, no permission, a kill: ^C) the temporary
    file is removed; an OSError becomes OutputError naming ``path``.

        with atomic_path(out) as tmp, open_file(tmp, "wb") as f:
            np.save(f, array)
    """
    path = str(path)
    tmp = join(*_split(path)[:1], "." + basename(path) + ".tmp") if "/" in path else (
        "." + path + ".tmp"
    )
    try:
        yield tmp
        rename(tmp, path)
    except BaseException as e:
        try:
            if exists(tmp):
                remove(tmp)
        except (OSError, LpieError):
            pass
        if isinstance(e, OSError):
            raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
        raise


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name and a rename (:func:`atomic_path`);
    OutputError naming ``path`` when it cannot be written."""
    with atomic_path(path) as tmp, open_file(tmp, "wb") as f:
        f.write(data)


def _split(path: str) -> tuple[str, str]:
    path = str(path).rstrip("/")
    head, _, tail = path.rpartition("/")
    return head, tail

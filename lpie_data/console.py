"""Shared pieces of the command-line layer: error handling, progress bars, quiet TensorFlow.

Only the Typer apps use this module; the libraries never print.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from lpie_data.errors import LpieError

F = TypeVar("F", bound=Callable[..., Any])
console = Console()
err_console = Console(stderr=True)


_STATE = {"verbose": False}


def quiet_tensorflow(verbose: bool | None = None) -> None:
    """Silence TensorFlow's C++ and absl logging unless ``verbose`` (call before importing TF).

    TensorFlow 2.21 prints start-up lines from C++ before its log level applies, so the
    process's file descriptor 2 is pointed at /dev/null while Python's ``sys.stderr`` keeps
    writing to the real terminal: our own messages and tracebacks still show.
    """
    if verbose is None:
        verbose = _STATE["verbose"]
    _STATE["verbose"] = verbose
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # Keras and TensorFlow also warn from Python (absl logging, the warnings module): hundreds
    # of lines during an export would bury the one error that matters.
    for name in ("absl", "tensorflow", "keras"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in ("keras", "tensorflow", "absl", "tf_keras", "h5py"):
        warnings.filterwarnings("ignore", module=module)
    if os.environ.get("LPIE_KEEP_STDERR") == "1" or not hasattr(sys.stderr, "fileno"):
        return
    try:
        fd = sys.stderr.fileno()
    except (OSError, ValueError):  # e.g. a test runner's captured stream
        return
    if fd != 2:
        return
    sys.stderr.flush()
    real = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(real, "w", buffering=1, encoding=sys.stderr.encoding,
                           errors="backslashreplace")
    os.environ["LPIE_KEEP_STDERR"] = "1"  # child processes inherit the silenced fd 2 as it is


def fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def error_handler(*errors: type[Exception]) -> Callable[[F], F]:
    """A decorator turning `LpieError` and the given exception types (e.g. `lpie_model`'s network
    errors, which lpie_data cannot know) into a red message and exit status 1, and Ctrl-C into
    a note and exit status 130."""
    caught = (LpieError, *errors)

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except caught as e:
                raise fail(str(e)) from None
            except KeyboardInterrupt:
                raise interrupted() from None

        return wrapper  # type: ignore[return-value]

    return decorate


handle_errors = error_handler()
handle_errors.__doc__ = "Turn lpie's own exceptions into a red message and exit status 1."


class ProgressUpdate(Protocol):
    """``update(done, total=None, *, description=None, note=None)``: what `progress_bar` yields."""

    def __call__(self, done: int | None = None, total: int | None = None, *,
                 description: str | None = None, note: str | None = None) -> None: ...


@contextlib.contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[ProgressUpdate]:
    """A rich progress bar on stderr (shown on a terminal, or with LPIE_PROGRESS=1); yields
    ``update(done, total=None, *, description=None, note=None)`` for library callbacks: steps
    done, a new total, a new description (e.g. the epoch) and a short note after the bar (e.g.
    the loss)."""
    progress = Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        disable=not sys.stderr.isatty() and os.environ.get("LPIE_PROGRESS") != "1",
    )
    with progress:
        task = progress.add_task(description, total=total, note="")

        def update(done: int | None = None, total: int | None = None, *,
                   description: str | None = None, note: str | None = None) -> None:
            fields: dict[str, Any] = {}
            if total is not None:
                fields["total"] = total
            if done is not None:
                fields["completed"] = done
            if description is not None:
                fields["description"] = description
            if note is not None:
                fields["note"] = note
            progress.update(task, **fields)

        yield update


def interrupted(hint: str = "rerun the same command to resume") -> typer.Exit:
    """After Ctrl-C: says how to go on (``hint``) and returns the exit (status 130) to raise."""
    err_console.print(f"[yellow]interrupted; {escape(hint)}[/]", soft_wrap=True)
    return typer.Exit(130)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


class LpieGroup(typer.core.TyperGroup):
    """Root group of both CLIs (``typer.Typer(cls=LpieGroup)``): help shows what each option takes.

    Typer 0.29's rich help prints a type for every parameter, so flags read ``--compare <bool>``
    and repeatable options ``--psf <list[Path]>``, as if they took such a value. Once the whole
    command tree is built, this gives flags no metavar, repeatable options their element type
    (``--psf <path>``, once per value) and variadic arguments ``<path>...``. It runs in
    ``main`` (what ``app()`` and ``CliRunner.invoke(app)`` call), after Typer has added the
    completion options.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _tidy_metavars(self)
        return super().main(*args, **kwargs)


def _tidy_metavars(command: typer.core.TyperCommand | typer.core.TyperGroup) -> None:
    # The help option is made on first use and cached, so make it now to reach it too.
    ctx = typer.Context(command, **(command.context_settings or {}))
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            label = ""
        elif getattr(param, "type_descriptor", None) is not None and param.type_descriptor.is_list:
            label = param.display_type(ctx)  # e.g. "<list[Path]>", "<list[fp32|int8]>"
            inner = label.removeprefix("<list[").removesuffix("]>")
            label = f"<{inner.lower() if inner.isidentifier() else inner}>"
            if param.nargs != 1:
                label += "..."
        else:
            continue
        param.display_type_rich = lambda ctx, label=label: label  # type: ignore[method-assign]
    for sub in getattr(command, "commands", {}).values():
        _tidy_metavars(sub)

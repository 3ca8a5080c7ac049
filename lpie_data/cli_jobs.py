"""Shared pieces of the dataset-job commands (``prepare *``, ``synth``): the job flags declared
once (`job_command`, `JobFlags` -> `lpie_data.jobs.JobOptions`) and the summary they print."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from inspect import Parameter, signature
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from lpie_data.console import console, err_console, human_bytes

if TYPE_CHECKING:
    from lpie_data.jobs import JobOptions


class Backend(StrEnum):
    loky = "loky"
    threading = "threading"
    dask = "dask"


OutOpt = Annotated[str, typer.Option("--out", help="Output dataset folder (or gs://, ram:// URL).")]
JobsOpt = Annotated[int | None, typer.Option(
    "--jobs", "-j", show_default="one per two cores",
    help="Parallel workers (-1: one per core; 1: in this process, every core still used).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite",
                                            help="Replace an existing dataset made differently.")]
ShardOpt = Annotated[int, typer.Option("--shard-mb", min=1, help="Target shard size in MiB.")]
BackendOpt = Annotated[Backend, typer.Option("--backend", help="joblib backend: loky "
                                             "(local processes), threading, or dask (cluster).")]
SchedulerOpt = Annotated[
    str | None, typer.Option("--scheduler", help="Dask scheduler address for --backend dask.")
]


def _warn(note: str) -> None:
    err_console.print(f"[bold yellow]warning:[/] {escape(note)}", highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class JobFlags:
    """The flags every dataset-job command shares (added by :func:`job_command`)."""

    jobs: int | None = None
    overwrite: bool = False
    shard_mb: int = 128
    backend: Backend = Backend.loky
    scheduler: str | None = None

    def options(self, progress: Callable[[int, int], None] | None, *,
                warn: bool = True) -> JobOptions:
        """The library's JobOptions (``warn``: print notes about the inputs up front)."""
        from lpie_data.jobs import JobOptions

        return JobOptions(jobs=self.jobs, backend=self.backend.value, scheduler=self.scheduler,
                          shard_bytes=self.shard_mb * 2**20, overwrite=self.overwrite,
                          progress=progress, warn=_warn if warn else None)


_JOB_FLAGS = {"jobs": JobsOpt, "overwrite": OverwriteOpt, "shard_mb": ShardOpt,
              "backend": BackendOpt, "scheduler": SchedulerOpt}


def job_command(fn: Callable[..., None]) -> Callable[..., None]:
    """Give a dataset-job command the shared --jobs/--overwrite/--shard-mb/--backend/--scheduler
    flags; the command takes them as one ``flags: JobFlags`` argument."""
    own_signature = signature(fn, eval_str=True)
    own = [p for p in own_signature.parameters.values() if p.name != "flags"]
    defaults = JobFlags()
    shared = [Parameter(name, Parameter.KEYWORD_ONLY, annotation=annotation,
                        default=getattr(defaults, name))
              for name, annotation in _JOB_FLAGS.items()]

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> None:
        flags = JobFlags(**{name: kwargs.pop(name) for name in _JOB_FLAGS})
        fn(*args, flags=flags, **kwargs)

    params = [*own, *shared]
    command.__signature__ = own_signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return command


def print_summary(summary: Any, out: str, what: str = "items", lines: Sequence[str] = ()) -> None:
    """The short report after a dataset job: pairs and bytes per split, ``lines`` (e.g. the
    clipped share of synth pairs), notes, time."""
    if summary.noop:
        console.print(f"[green]{escape(out)} is already complete[/] (same inputs and arguments): "
                      "nothing to do.", soft_wrap=True)
    for split, s in sorted(summary.splits.items()):
        console.print(f"  {split:>10}: {s['examples']:>7} pairs  {human_bytes(s['bytes'])}")
    for line in lines:
        console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    for note in summary.notes:
        console.print(f"  [yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    if not summary.noop:
        resumed = f", {summary.items_resumed} resumed" if summary.items_resumed else ""
        workers = ("on the Dask cluster" if summary.workers == 0 else
                   f"{summary.workers} worker{'s' if summary.workers != 1 else ''}")
        console.print(f"[green]wrote {escape(out)}[/] from {summary.items} {what}{resumed} "
                      f"in {summary.seconds:.1f} s ({workers})", soft_wrap=True)

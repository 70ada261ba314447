"""What a person at the terminal sees during a run: a progress bar per long step, and no INFO noise.

Prefect logs every task's start and end at INFO and Dask every worker's life; useful for an operator
reading a server's logs, noise for an analyst waiting for a demo. :func:`quiet_console` raises only the
*console* handlers to WARNING (the Prefect API handler keeps every record, so a server still shows
the full run log) and tells Dask, here and in every worker process started later, to log warnings
only. ``--verbose`` leaves all of it as configured.

:class:`StepProgress` draws one rich progress bar per step of Dask tasks (``flows.dask_cluster``
reports each finished task to it), with the rows and euros the finished tasks report, and removes the
bar when the step ends, so a finished run leaves only its summary on the screen.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

#: Human names of the functions ``flows.dask_cluster.dask_mapper`` runs, for the bars.
STEP_NAMES = {
    "process_partition": "ingest: validating partitions",
    "validate_verdicts": "ingest: Great Expectations",
    "process_id_part": "ingest: claim ids",
    "process_bucket": "ingest: links, quarantine, netting",
    "partial_prices": "episodes: reference prices",
    "build_buckets": "episodes: buckets",
    "build_bundle": "panels: bundles",
    "bucket_step": "population: buckets",
    "partition_step": "DiD panel: partitions",
}


def quiet_console(verbose: bool = False) -> None:
    """Console logging at WARNING for Prefect and Dask unless ``verbose``."""
    if verbose:
        return
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # worker processes spawned later
    import dask

    dask.config.set({"logging.distributed": "warning"})
    for name in (
        "distributed",
        "distributed.scheduler",
        "distributed.worker",
        "distributed.nanny",
        "distributed.core",
        "distributed.http.proxy",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    _raise_console_handlers()


class _ConsoleLevel(logging.Filter):
    """Lets WARNING and above through a console handler; records keep their level elsewhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_CONSOLE_LEVEL = _ConsoleLevel()


def _raise_console_handlers() -> None:
    """Put :class:`_ConsoleLevel` on the stream handlers of the root and Prefect loggers (Prefect
    configures its console handler on the root; it may do so again when a flow starts, so the
    filter is also attached when the first run record passes, see :func:`install_on_run_loggers`)."""
    for logger in (logging.getLogger(), logging.getLogger("prefect")):
        for handler in logger.handlers:
            if (
                isinstance(handler, logging.StreamHandler)
                and type(handler).__name__ != "LogCaptureHandler"
                and _CONSOLE_LEVEL not in handler.filters
            ):
                handler.addFilter(_CONSOLE_LEVEL)


class _Reattach(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        _raise_console_handlers()
        return True


_REATTACH = _Reattach()


def install_on_run_loggers() -> None:
    """Re-check the console handlers whenever a flow or task run logs (Prefect sets up logging
    when its engine starts, after the command has begun)."""
    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect"):
        logger = logging.getLogger(name)
        if _REATTACH not in logger.filters:
            logger.addFilter(_REATTACH)


def _volume(result: Any) -> tuple[int, int]:
    """Rows and cents a finished task reports, where it reports them (0, 0 otherwise)."""
    for rows_name, cents_name in (("rows", "cents"), ("rows_in", "cents_in")):
        rows, cents = getattr(result, rows_name, None), getattr(result, cents_name, None)
        if isinstance(rows, int):
            return rows, cents if isinstance(cents, int) else 0
    episodes, cents = getattr(result, "episodes", None), getattr(result, "allocated_cents", None)
    if isinstance(episodes, dict):
        return sum(episodes.values()), sum(cents.values()) if isinstance(cents, dict) else 0
    return 0, 0


class StepProgress:
    """Progress bars for the Dask steps of a run; see the module docstring."""

    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("    {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[volume]}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=True,
        )
        self._totals: dict[TaskID, list[int]] = {}

    def __enter__(self) -> StepProgress:
        from flows import dask_cluster

        self.progress.start()
        dask_cluster.PROGRESS_LISTENERS.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        from flows import dask_cluster

        if self in dask_cluster.PROGRESS_LISTENERS:
            dask_cluster.PROGRESS_LISTENERS.remove(self)
        self.progress.stop()

    def step_started(self, function_name: str, tasks: int) -> TaskID:
        task = self.progress.add_task(
            STEP_NAMES.get(function_name, function_name.replace("_", " ")), total=tasks, volume=""
        )
        self._totals[task] = [0, 0]
        return task

    def task_finished(self, step: TaskID, result: Any) -> None:
        rows, cents = _volume(result)
        total = self._totals.setdefault(step, [0, 0])
        total[0] += rows
        total[1] += cents
        volume = f"{total[0]:,} rows" + (f", EUR {total[1] / 100:,.2f}" if total[1] else "") if total[0] else ""
        self.progress.update(step, advance=1, volume=volume)

    def step_finished(self, step: TaskID) -> None:
        self.progress.remove_task(step)
        self._totals.pop(step, None)


@contextlib.contextmanager
def flow_console(verbose: bool = False) -> Iterator[StepProgress]:
    """What every command that runs a flow shows while it runs: progress bars, and Prefect's and
    Dask's INFO records only with ``verbose`` (they still reach the Prefect API either way)."""
    if not verbose:
        quiet_console()
        install_on_run_loggers()
    with StepProgress() as progress:
        yield progress


__all__ = ["StepProgress", "flow_console", "install_on_run_loggers", "quiet_console"]

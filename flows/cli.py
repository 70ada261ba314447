"""The ``zorgpad`` command line.

Each sub-command is a thin wrapper: it parses options, calls a Prefect flow (or, for ``synth`` and
``docs``, plain code in ``transforms/``) and prints where the output went. Errors a user can fix
(a bad delivery, a wrong option) are printed as one clear message and exit with status 2, never as
a traceback.

An error a user can fix is a :class:`transforms.errors.UserFacingError`, wherever it is raised: in
a command, or inside a Prefect flow or task. Prefect logs a failing task or flow on the console with
its traceback ("Task run failed with exception ...", "Finished in state Failed(...)", "Encountered
exception during execution ..."); :func:`quiet_user_errors` leaves those records out of the console
for user errors only (a Prefect server still records them), so the ``error:`` line is all a user
sees. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections import deque
from typing import Annotated

import typer

from transforms.errors import UserFacingError

#: The ``--verbose`` option of every command that runs a flow (``flows.terminal.flow_console``).
Verbose = Annotated[bool, typer.Option("--verbose", help="show Prefect's and Dask's INFO logs")]

app = typer.Typer(
    name="zorgpad",
    help="Dutch claims-data pipeline: generate or ingest a delivery, build care-path episodes and panels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """zorgpad: a distributed claims-data pipeline for Dutch health-care data."""
    quiet_user_errors()  # also when the app is invoked without main(), e.g. by typer's CliRunner


class UserError(UserFacingError):
    """An error caused by input or options: reported as one message, exit status 2."""


# --- keeping user errors out of Prefect's console logging ------------------------------------------

#: The loggers Prefect's flow and task engines log a run's failure on (``prefect.flow_runs``,
#: ``prefect.task_runs``); their API handler is attached to them, the console handler to the root.
_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")

#: Messages of Prefect 3's engines that name a run's exception without carrying it as ``exc_info``
#: (the task's "Finished in state Failed('Task run encountered an exception DeliveryError: ...')",
#: the flow's "Finished in state Failed('Flow run encountered an exception: DeliveryError: ...')").
_NAMING_MESSAGES = ("Finished in state", "Encountered exception", "Task run failed with", "Flow run failed")

#: "TypeName: message" of the user errors seen in run records, squashed (see ``_squash``), newest
#: last: the records above name an exception only in text, after the record that carried it.
_SEEN: deque[str] = deque(maxlen=200)
_SEEN_LOCK = threading.Lock()

#: Record attribute caching the verdict of :func:`is_about_user_error`.
_VERDICT = "zorgpad_user_error"


def _squash(text: str) -> str:
    """Letters and digits only: Prefect shows a state's message as ``repr``, which may quote and
    escape it differently than the exception's ``str``."""
    return re.sub(r"[\W_]+", "", text)


def _remember(exc: BaseException) -> None:
    key = _squash(f"{type(exc).__name__}: {exc}")
    with _SEEN_LOCK:
        if key not in _SEEN:
            _SEEN.append(key)


def is_about_user_error(record: logging.LogRecord) -> bool:
    """Is ``record`` Prefect reporting a :class:`UserFacingError`? True when the record carries one
    (``exc_info``, or an argument of its message, as in the retry message), or when it is one of
    Prefect's run messages (:data:`_NAMING_MESSAGES`) naming a user error seen before."""
    verdict = record.__dict__.get(_VERDICT)
    if verdict is not None:
        return verdict
    verdict = False
    exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
    if exc is not None:
        verdict = isinstance(exc, UserFacingError)
        if verdict:
            _remember(exc)
    else:
        args = record.args if isinstance(record.args, tuple) else ()
        carried = [arg for arg in args if isinstance(arg, UserFacingError)]
        if carried:
            verdict = True
            for arg in carried:
                _remember(arg)
        elif isinstance(record.msg, str) and record.msg.startswith(_NAMING_MESSAGES) and _SEEN:
            try:
                text = _squash(record.getMessage())
            except Exception:  # noqa: BLE001 - a malformed record is not ours to judge
                text = ""
            with _SEEN_LOCK:
                verdict = any(seen in text for seen in _SEEN)
    record.__dict__[_VERDICT] = verdict
    return verdict


class UserErrorConsoleFilter(logging.Filter):
    """Drops the records about a :class:`UserFacingError` (see :func:`is_about_user_error`); put on
    console handlers only, so a Prefect server still records the failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_about_user_error(record)


class _InstallOnFirstRecord(logging.Filter):
    """A logger filter on Prefect's run loggers that drops nothing: it judges every run record
    before any handler sees it (so the user errors are remembered in order) and makes sure the
    console handlers in effect carry the console filter, also when Prefect configured its logging
    after :func:`quiet_user_errors` ran, or again (a new configuration makes new handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        is_about_user_error(record)
        _filter_console_handlers()
        return True


_CONSOLE_FILTER = UserErrorConsoleFilter()
_INSTALLER = _InstallOnFirstRecord()


def _is_console(handler: logging.Handler) -> bool:
    """Prefect's console handler and other stream handlers (live logging, a user's own); not the API
    log handler (a plain ``logging.Handler``) and not pytest's ``caplog`` capture."""
    return isinstance(handler, logging.StreamHandler) and type(handler).__name__ != "LogCaptureHandler"


def _filter_console_handlers() -> None:
    """Put the console filter on every console handler a run record reaches: those of the run
    loggers, of their parents and of the root logger."""
    seen: set[int] = set()
    for name in _RUN_LOGGERS:
        logger: logging.Logger | None = logging.getLogger(name)
        while logger is not None:
            for handler in logger.handlers:
                if id(handler) not in seen and _is_console(handler) and _CONSOLE_FILTER not in handler.filters:
                    handler.addFilter(_CONSOLE_FILTER)
                seen.add(id(handler))
            logger = logger.parent if logger.propagate else None


def quiet_user_errors() -> None:
    """Keep Prefect's failure logging for a :class:`UserFacingError` (its traceback, "Task run
    failed with exception ...", "Encountered exception during execution ...", "Finished in state
    Failed(...)") off the console; other exceptions are logged as before, and Prefect's API handler
    still receives every record. Cheap, idempotent, and needs Prefect neither imported nor
    configured yet: the console handlers are filtered now and again whenever a run logs."""
    for name in _RUN_LOGGERS:
        logger = logging.getLogger(name)
        if _INSTALLER not in logger.filters:
            logger.addFilter(_INSTALLER)
    _filter_console_handlers()


def main() -> None:
    """Console entry point (``zorgpad``)."""
    import os

    # Without a Prefect server configured, flows run against a temporary local API; its first start
    # runs database migrations, so allow it time.
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from health data
    from flows import commands  # noqa: F401  (registers the sub-commands on ``app``)

    quiet_user_errors()
    try:
        app()
    except UserFacingError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

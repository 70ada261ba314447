"""The ``zorgpad`` command line.

Each sub-command is a thin wrapper: it parses options, calls a Prefect flow (or, for ``synth`` and
``docs``, plain code in ``transforms/``) and prints where the output went. Errors a user can fix
(a bad delivery, a wrong option) are printed as one clear message and exit with status 2, never as
a traceback.
"""

from __future__ import annotations

import sys

import typer

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


class UserError(Exception):
    """An error caused by input or options: reported as one message, exit status 2."""


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

    try:
        app()
    except UserError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

"""Test configuration shared by the whole suite.

Prefect runs against a real, private, ephemeral API: a fresh ``PREFECT_HOME`` per test session, the
ephemeral server enabled and a generous start-up timeout (the first start runs the database
migrations). These variables are set before anything imports Prefect.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="zorgpad-prefect-"))
os.environ.setdefault("PREFECT_HOME", str(_PREFECT_HOME))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_API_DATABASE_TIMEOUT", "60")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.pop("PREFECT_API_URL", None)

# Configure Prefect's logging now, bound to the real stderr: a CliRunner that invokes a flow would
# otherwise bind Prefect's console handler to its temporary stream, which is closed afterwards.
from prefect.logging.configuration import setup_logging  # noqa: E402

setup_logging()


def pytest_unconfigure(config) -> None:
    """Prefect stops its temporary API server at interpreter exit and logs that to the console
    handler, whose stream (pytest's capture) is closed by then: without this, every run ends with a
    "Logging error" traceback printed after the test summary. Errors during the tests still show."""
    import logging

    logging.raiseExceptions = False

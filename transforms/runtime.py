"""Small pieces every pipeline stage shares: how work is mapped over partitions, and the code
version stamped on every output. Kept free of heavy imports (no Great Expectations, no Dask), so
that a worker process importing a stage loads only what that stage needs."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

#: ``mapper(function, argument_tuples, on_result=None) -> results in argument order``; ``on_result``
#: is applied to each result as it arrives (to fold what is large into a summary early).
Mapper = Callable[..., list]


def local_map(function: Callable, arguments: list[tuple], on_result: Callable[[Any], Any] | None = None) -> list:
    """Run the calls one after the other in this process (the single-process reference)."""
    keep = on_result or (lambda result: result)
    return [keep(function(*args)) for args in arguments]


@lru_cache(maxsize=1)
def code_version() -> str:
    """The installed package version and the git commit it was built from (when known)."""
    try:
        from importlib.metadata import version

        package = version("zorgpad")
    except Exception:  # not installed (running from a checkout)
        package = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
    except Exception:
        commit = ""
    return f"{package}+{commit}" if commit else package

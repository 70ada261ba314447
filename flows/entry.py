"""The ``zorgpad`` console entry point: make sure the packages it imports are zorgpad's own.

zorgpad installs four top-level packages, ``flows``, ``transforms``, ``expectations`` and
``reference`` (the design fixes these folders; ``docs/install.md`` says why they are not moved under
one ``zorgpad`` package). A generic name can collide: another distribution in the same environment
may install a ``transforms`` of its own (pip then lets one overwrite the other's files), or a folder
early on ``sys.path`` (the working directory, ``PYTHONPATH``) may hold one. Either way zorgpad would
import someone else's code and fail later with an ``ImportError`` or, worse, run it. This module
imports nothing of zorgpad but ``flows`` itself, finds where each name resolves and which
distributions claim it, and refuses with one ``error:`` line before anything else is imported.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

#: zorgpad's top-level packages besides ``flows`` (which this module is part of).
OWN_PACKAGES = ("transforms", "expectations", "reference")
DISTRIBUTION = "zorgpad"


def foreign_package() -> str | None:
    """A sentence saying which of zorgpad's package names resolves to code that is not zorgpad's,
    or ``None`` when all of them are zorgpad's."""
    root = Path(__file__).resolve().parent.parent  # the folder holding zorgpad's ``flows``
    claimed = packages_distributions()
    for name in ("flows", *OWN_PACKAGES):
        others = sorted({d for d in claimed.get(name, []) if d.lower() != DISTRIBUTION})
        if others:
            return (
                f"the distribution {others[0]!r} also installs a top-level package {name!r}, one of zorgpad's "
                f"own; install zorgpad in a virtual environment of its own (python -m venv) or uninstall {others[0]!r}"
            )
        if name == "flows":
            continue
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if origin is None or origin.parent != root / name:
            where = f"from {origin.parent}" if origin is not None else "nowhere (it is missing)"
            return (
                f"the package {name!r} resolves {where}, not to zorgpad's ({root / name}); a folder of that name "
                "earlier on the Python path (the working directory or PYTHONPATH) hides it: run zorgpad from "
                "another folder or remove it from PYTHONPATH"
            )
    return None


def main() -> None:
    """Console entry point (``zorgpad``): the package check, then the command line."""
    if (problem := foreign_package()) is not None:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    from flows.cli import main as cli_main

    cli_main()

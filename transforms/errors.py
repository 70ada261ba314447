"""The one exception type a user can act on.

A broken delivery, a wrong option or an output folder zorgpad must not touch is the user's to fix,
not a bug: the command line prints such an error as one ``error:`` line and exits with status 2,
and Prefect's console logging leaves it out (``flows.cli``). Every other exception is a bug and
keeps its traceback. Kept free of imports so any module, on any Dask worker, can raise it.
"""

from __future__ import annotations


class UserFacingError(Exception):
    """An error caused by the input, the options or the environment, explained in its message."""

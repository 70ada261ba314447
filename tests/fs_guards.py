"""Making a folder or a file impossible to change, for tests of what zorgpad does when it cannot write
or delete: ``chattr +i`` when the tests run as root (root ignores permissions), ``chmod`` otherwise."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


class Guard:
    """Where the guarded entry is now (a test sets ``path`` when zorgpad moved it)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)


@contextlib.contextmanager
def unchangeable(path: Path) -> Iterator[Guard]:
    """While inside, ``path`` (a file or folder) cannot be changed, renamed into or deleted from."""
    guard = Guard(path)
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a file unchangeable")
        done = subprocess.run(["chattr", "+i", str(guard.path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"chattr +i is not supported here: {done.stderr.decode().strip()}")
        try:
            yield guard
        finally:
            subprocess.run(["chattr", "-i", str(guard.path)], check=True)
    else:
        # a file in a folder without write permission cannot be deleted
        folder = guard.path if guard.path.is_dir() else guard.path.parent
        mode = folder.stat().st_mode
        folder.chmod(stat.S_IMODE(mode) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield guard
        finally:
            restore = guard.path if guard.path.is_dir() else guard.path.parent
            restore.chmod(stat.S_IMODE(mode))

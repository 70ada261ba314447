"""Bundled public reference data (compressed parquet), converted from ``../shared/reference``.

See ``ORIGIN.md`` for the origin and licence of every file and ``convert.py`` for the conversion.
Nothing in zorgpad reads outside this folder at run time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent


def path(relative: str) -> Path:
    """Absolute path of a bundled reference file, e.g. ``path("nza/diagnoses.parquet")``."""
    p = ROOT / relative
    if not p.exists():
        raise FileNotFoundError(f"reference file {relative!r} is not bundled in {ROOT}")
    return p


@lru_cache(maxsize=64)
def table(relative: str) -> pl.DataFrame:
    """Read (and cache) a bundled reference table."""
    return pl.read_parquet(path(relative))

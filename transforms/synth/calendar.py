"""Dates as int32 days since 1970-01-01 inside the generator (vectorised), ``date32`` on output."""

from __future__ import annotations

from datetime import date

import numpy as np

EPOCH = date(1970, 1, 1)


def day(d: date) -> int:
    """A date as days since the epoch."""
    return (d - EPOCH).days


def year_start(year: int | np.ndarray) -> np.ndarray:
    """Day number of 1 January of ``year`` (vectorised)."""
    y = np.asarray(year, dtype=np.int64)
    return (y - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)


def year_of(days: np.ndarray) -> np.ndarray:
    """Calendar year of day numbers (vectorised)."""
    return np.asarray(days, dtype=np.int64).astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def days_in_year(year: int | np.ndarray) -> np.ndarray:
    return year_start(np.asarray(year) + 1) - year_start(year)

"""Reading a store's claim tables into the frames of ``transforms.maturity.triangle`` (polars, lazily:
only the date, amount and netting columns are read, and only the few corrected lines need their
claim id joined to the corrections audit)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transforms.contract import load_contract
from transforms.ingest.layout import CLAIM_TABLES
from transforms.maturity.triangle import original_declarations
from transforms.money import decimal_cents

#: The service date of each claim table: the end of its period. DBC subtrajecten are declared after
#: they close (the contract checks ``end_date <= declared_on``), so their service month is the month
#: of ``end_date``; a first-line service's period is its one day.
SERVICE_DATE = {t: load_contract().table(t).period.end for t in CLAIM_TABLES}


def _files(store: Path, folder: str, table: str) -> list[Path]:
    return sorted((Path(store) / folder / table).glob("bucket=*/*.parquet"))


def read_stored(store: Path | str, table: str) -> pl.LazyFrame | None:
    """The stored lines of ``table`` as :data:`transforms.maturity.triangle.STORED` (None: no files)."""
    files = sorted((Path(store) / table).glob("bucket=*/*.parquet"))
    if not files:
        return None
    return pl.scan_parquet(files, hive_partitioning=False).select(
        "claim_id",
        pl.col(SERVICE_DATE[table]).alias("service_date"),
        "declared_on",
        decimal_cents("amount").alias("cents"),
        "n_corrections",
        "fully_credited",
    )


def read_corrections(store: Path | str, table: str) -> pl.LazyFrame | None:
    """The merged lines of ``table`` in the store's corrections audit (None: there are none)."""
    files = _files(Path(store), "corrections", table)
    if not files:
        return None
    return pl.scan_parquet(files, hive_partitioning=False).select("root_claim_id", "kind", "declared_on")


def read_lines(store: Path | str, table: str) -> pl.LazyFrame | None:
    """One row per service of ``table`` dated by its original declaration (see
    ``transforms.maturity.triangle``), or None when the store has no lines of it."""
    stored = read_stored(store, table)
    if stored is None:
        return None
    return original_declarations(stored, read_corrections(store, table))


__all__ = ["SERVICE_DATE", "read_corrections", "read_lines", "read_stored"]

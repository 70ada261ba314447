"""Read one partition of a delivery table and normalise it to the contract's types.

Inside ingest, money columns hold **int64 cents** (exact; converted back to ``decimal128(12, 2)``
when the store is written), dates are ``Date``, codes are strings with their leading zeros
restored, and every row carries ``_row`` (its position in the partition). A value that cannot be
converted exactly (a float with a fraction of a cent, NaN, an amount beyond decimal(12, 2)) is not
guessed: the row gets a normalisation issue in ``_issue`` and is quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms.contract import Column, Table
from transforms.ingest.delivery import Partition

MAX_CENTS = 10**12  # decimal(12, 2): at most 10 digits before the decimal point
EXTRA_PREFIX = "extra__"


@dataclass
class Normalised:
    frame: pl.DataFrame
    padded: dict[str, int] = field(default_factory=dict)  # values whose leading zeros were restored
    extra_columns: list[str] = field(default_factory=list)


def read_partition(partition: Partition) -> pa.Table:
    pf = pq.ParquetFile(partition.path)
    if partition.row_groups:
        return pf.read_row_groups(list(partition.row_groups))
    return pf.schema_arrow.empty_table()


def money_to_cents(values: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Euros (decimal or float64) -> (cents int64, null mask, exactness problem mask)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    n = len(values)
    null = ~np.asarray(values.is_valid()) if n else np.zeros(0, dtype=bool)
    t = values.type
    if pa.types.is_decimal(t):
        scale = t.scale
        wide = values.cast(pa.decimal128(38, scale))
        # decimal -> python ints only through exact string formatting would be slow; use the 128-bit words
        words = np.frombuffer(wide.buffers()[1], dtype=np.int64)[2 * wide.offset : 2 * (wide.offset + n)]
        low, high = words[0::2], words[1::2]
        fits = (high == np.where(low < 0, -1, 0))  # value fits in int64
        unscaled = low.copy()
        if scale <= 2:
            cents = unscaled * 10 ** (2 - scale)
            problem = ~fits | (np.abs(unscaled) >= MAX_CENTS // 10 ** (2 - scale))
        else:
            factor = 10 ** (scale - 2)
            cents = np.sign(unscaled) * ((np.abs(unscaled) + factor // 2) // factor)
            problem = ~fits | (unscaled % factor != 0) | (np.abs(cents) >= MAX_CENTS)
        problem &= ~null
        return np.where(null | problem, 0, cents), null, problem
    floats = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    scaled = floats * 100.0
    with np.errstate(invalid="ignore"):
        cents = np.round(scaled)
        problem = ~np.isfinite(scaled) | (np.abs(scaled - cents) > 1e-4) | (np.abs(cents) >= MAX_CENTS)
    problem &= ~null
    return np.where(null | problem, 0, cents).astype(np.int64), null, problem


def _string_column(col: Column, values: pa.ChunkedArray) -> tuple[pl.Series, int]:
    t = values.type
    if pa.types.is_dictionary(t):
        values = values.cast(t.value_type)
        t = t.value_type
    padded = 0
    if pa.types.is_integer(t):
        values = pc.cast(values, pa.string())
    series = pl.Series(col.name, values).cast(pl.String)
    if col.length is not None:
        short = series.str.contains(r"^\d+$") & (series.str.len_chars() < col.length)
        padded = int(short.sum() or 0)
        if padded:
            series = pl.select(pl.when(short).then(series.str.zfill(col.length)).otherwise(series)).to_series().alias(col.name)
    return series, padded


def normalise(raw: pa.Table, table: Table) -> Normalised:
    """Convert a raw partition to the contract's types (money in cents); see the module docstring."""
    n = raw.num_rows
    series: list[pl.Series] = [pl.Series("_row", np.arange(n, dtype=np.int64))]
    issues = np.full(n, None, dtype=object)
    padded: dict[str, int] = {}
    for col in table.columns:
        values = raw.column(col.name)
        if col.type == "money":
            cents, null, problem = money_to_cents(values)
            series.append(pl.Series(col.name, cents, dtype=pl.Int64).set(pl.Series(null), None) if null.any()
                          else pl.Series(col.name, cents, dtype=pl.Int64))
            issues[problem & (issues == None)] = f"inexact_amount:{col.name}"  # noqa: E711
        elif col.type == "string":
            s, count = _string_column(col, values)
            if count:
                padded[col.name] = count
            series.append(s)
        elif col.type == "date":
            t = values.type
            if pa.types.is_timestamp(t):
                values = pc.cast(values, pa.date32())
            series.append(pl.Series(col.name, values).cast(pl.Date))
        elif col.type in ("int16", "int32"):
            s = pl.Series(col.name, values)
            target = pl.Int16 if col.type == "int16" else pl.Int32
            casted = s.cast(target, strict=False)
            overflow = (casted.is_null() & s.is_not_null()).to_numpy()
            issues[overflow & (issues == None)] = f"out_of_range:{col.name}"  # noqa: E711
            series.append(casted)
        elif col.type == "float64":
            s = pl.Series(col.name, values).cast(pl.Float64)
            bad = (~s.is_finite() & s.is_not_null()).to_numpy()
            issues[bad & (issues == None)] = f"not_a_number:{col.name}"  # noqa: E711
            series.append(s)
        elif col.type == "bool":
            series.append(pl.Series(col.name, values).cast(pl.Boolean))
    extra = [c for c in raw.column_names if c not in table.column_names]
    for name in extra:
        series.append(pl.Series(f"{EXTRA_PREFIX}{name}", raw.column(name)).cast(pl.String, strict=False))
    series.append(pl.Series("_issue", issues.tolist(), dtype=pl.String))
    return Normalised(pl.DataFrame(series), padded, extra)

"""Read one partition of a delivery table and normalise it to the contract's types.

Inside ingest, money columns hold **int64 cents** (exact; converted back to ``decimal128(12, 2)``
when the store is written), dates are ``Date``, codes are strings with their leading zeros
restored, and every row carries ``_row`` (its position in the partition). A value that cannot be
converted exactly is not guessed: the row gets an issue in ``_issue`` (``kind:column``, several
joined by ``;``) and is quarantined, and what was delivered is kept as text in ``_as_delivered``
(a JSON object, column -> text), so the quarantine shows ``0.123`` or ``NaN`` rather than a
converted value, and the books can count the euros as delivered:

- money: a float with a fraction of a cent, NaN or infinite, or an amount beyond decimal(12, 2);
- integers out of the column's range, floats that are NaN or infinite;
- text that is not valid UTF-8 (the bytes are kept with ``\\xNN`` escapes);
- an empty or blank string in a text column becomes null (a key column then fails as
  ``missing_key``, not as an unknown value), counted per column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms.contract import Column, Table
from transforms.ingest.delivery import Partition
from transforms.money import delivered_cents

EXTRA_PREFIX = "extra__"
ISSUE = "_issue"
AS_DELIVERED = "_as_delivered"


@dataclass
class Normalised:
    frame: pl.DataFrame
    padded: dict[str, int] = field(default_factory=dict)  # values whose leading zeros were restored
    extra_columns: list[str] = field(default_factory=list)
    blank_to_null: dict[str, int] = field(default_factory=dict)  # empty or blank strings read as null
    #: per money column: the exact sum of the finite delivered amounts that are not whole cents, and
    #: how many amounts were not a number (NaN, infinite), so the books count what was delivered
    unrepresentable: dict[str, str] = field(default_factory=dict)
    not_a_number: dict[str, int] = field(default_factory=dict)


class _Issues:
    """Per-row issues and delivered texts, filled column by column. Only the rows with an issue
    (few) are visited in Python; the columns of the rest are null."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.kinds: dict[int, list[str]] = {}
        self.texts: dict[int, dict[str, str]] = {}

    def add(self, mask: np.ndarray, kind: str, column: str, texts: list[str] | None = None) -> None:
        rows = np.flatnonzero(mask)
        for i, row in enumerate(rows.tolist()):
            self.kinds.setdefault(row, []).append(f"{kind}:{column}")
            if texts is not None:
                self.texts.setdefault(row, {})[column] = texts[i]

    def columns(self) -> list[pl.Series]:
        issue = pl.repeat(None, self.n, dtype=pl.String, eager=True).alias(ISSUE)
        delivered = pl.repeat(None, self.n, dtype=pl.String, eager=True).alias(AS_DELIVERED)
        if self.kinds:
            rows = pl.Series(sorted(self.kinds), dtype=pl.Int64)
            issue = issue.scatter(rows, pl.Series([";".join(self.kinds[r]) for r in rows], dtype=pl.String))
        if self.texts:
            rows = pl.Series(sorted(self.texts), dtype=pl.Int64)
            texts = [json.dumps(self.texts[r], ensure_ascii=False) for r in rows]
            delivered = delivered.scatter(rows, pl.Series(texts, dtype=pl.String))
        return [issue, delivered]


def read_partition(partition: Partition) -> pa.Table:
    pf = pq.ParquetFile(partition.path)
    if partition.row_groups:
        return pf.read_row_groups(list(partition.row_groups))
    return pf.schema_arrow.empty_table()


def delivered_text(values: pa.Array, mask: np.ndarray) -> list[str]:
    """The delivered values at ``mask`` as text, exactly: a decimal as written, a float by its
    shortest round-trip form (``0.123``, ``1000000000000.0``, ``nan``)."""
    chosen = values.filter(pa.array(mask))
    return [("null" if v is None else repr(v) if isinstance(v, float) else str(v)) for v in chosen.to_pylist()]


def exact_sum(texts: list[str]) -> Decimal:
    """The exact sum of delivered amounts given as text (non-finite ones left out)."""
    total = Decimal(0)
    for text in texts:
        value = Decimal(text)
        if value.is_finite():
            total += value
    return total


def valid_utf8(values: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray, list[str]]:
    """Text that is valid UTF-8 as it is; otherwise the bad values with their bytes escaped
    (``caf\\xe9``), their rows, and the escaped texts. Parquet does not check the encoding of what a
    producer wrote, and polars cannot hold invalid text."""
    n = len(values)
    try:
        values.validate(full=True)
        return values, np.zeros(n, dtype=bool), []
    except pa.ArrowInvalid:
        pass
    raw = pc.cast(values, pa.large_binary()).to_pylist()
    fixed, bad, texts = [], np.zeros(n, dtype=bool), []
    for i, value in enumerate(raw):
        if value is None:
            fixed.append(None)
            continue
        try:
            fixed.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            text = value.decode("utf-8", errors="backslashreplace")
            fixed.append(text)
            bad[i] = True
            texts.append(text)
    return pa.chunked_array([pa.array(fixed, pa.large_string())]), bad, texts


def _string_column(col: Column, values: pa.ChunkedArray, issues: _Issues) -> tuple[pl.Series, int, int]:
    t = values.type
    if pa.types.is_dictionary(t):
        values = values.cast(t.value_type)
        t = t.value_type
    padded = 0
    if pa.types.is_integer(t):
        values = pc.cast(values, pa.string())
    else:
        values, bad, texts = valid_utf8(values)
        if bad.any():
            issues.add(bad, "bad_encoding", col.name, texts)
    series = pl.Series(col.name, values).cast(pl.String)
    # a blank value is empty or whitespace only (what ``str.strip_chars`` would empty), found
    # without copying every value as stripping would
    blank = series.str.contains(r"^\s*$")
    blanks = int(blank.sum() or 0)
    if blanks:
        series = pl.select(pl.when(blank).then(None).otherwise(series)).to_series().alias(col.name)
    if col.length is not None:
        # digits only, so bytes are characters (and the byte length is read off the offsets)
        short = (series.str.len_bytes() < col.length) & series.str.contains(r"^\d+$")
        padded = int(short.sum() or 0)
        if padded:
            series = (
                pl.select(pl.when(short).then(series.str.zfill(col.length)).otherwise(series))
                .to_series()
                .alias(col.name)
            )
    return series, padded, blanks


def normalise(raw: pa.Table, table: Table) -> Normalised:
    """Convert a raw partition to the contract's types (money in cents); see the module docstring."""
    n = raw.num_rows
    series: list[pl.Series] = [pl.Series("_row", np.arange(n, dtype=np.int64))]
    issues = _Issues(n)
    out = Normalised(pl.DataFrame())
    for col in table.columns:
        values = raw.column(col.name)
        if col.type == "money":
            cents, null, problem = delivered_cents(values)
            series.append(
                pl.Series(col.name, cents, dtype=pl.Int64).set(pl.Series(null), None)
                if null.any()
                else pl.Series(col.name, cents, dtype=pl.Int64)
            )
            if problem.any():
                flat = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
                texts = delivered_text(flat, problem)
                issues.add(problem, "inexact_amount", col.name, texts)
                out.unrepresentable[col.name] = str(exact_sum(texts))
                out.not_a_number[col.name] = sum(not Decimal(t).is_finite() for t in texts)
        elif col.type == "string":
            s, count, blanks = _string_column(col, values, issues)
            if count:
                out.padded[col.name] = count
            if blanks:
                out.blank_to_null[col.name] = blanks
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
            if overflow.any():
                issues.add(overflow, "out_of_range", col.name, [str(v) for v in s.filter(pl.Series(overflow))])
            series.append(casted)
        elif col.type == "float64":
            s = pl.Series(col.name, values).cast(pl.Float64)
            bad = (~s.is_finite() & s.is_not_null()).to_numpy()
            if bad.any():
                issues.add(bad, "not_a_number", col.name, [repr(v) for v in s.filter(pl.Series(bad))])
            series.append(s)
        elif col.type == "bool":
            series.append(pl.Series(col.name, values).cast(pl.Boolean))
    extra = [c for c in raw.column_names if c not in table.column_names]
    for name in extra:
        values = raw.column(name)
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            values, bad, _ = valid_utf8(values)  # an ignored column: escaped, not a finding
        series.append(pl.Series(f"{EXTRA_PREFIX}{name}", values).cast(pl.String, strict=False))
    series += issues.columns()
    out.frame = pl.DataFrame(series)
    out.extra_columns = extra
    return out

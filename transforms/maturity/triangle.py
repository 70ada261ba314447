"""The declaration triangle of one claim table: service month x development month, in lines and cents.

Pure functions over polars frames (no file access, no Prefect); ``transforms.maturity.store`` reads
a store into the frames they take. Months are counted as integers (``year * 12 + month - 1``) inside
and written as the date of their first day.

Which line counts where (see ``transforms.maturity`` for the reasons):

- a stored line is one service: the netting of ingest has already folded its credits and
  re-declarations into it; a **fully credited** line (withdrawn to zero) is no service and counts
  nowhere, in neither lines nor cents;
- its **service month** is the month of its service date (DBC: ``end_date``, the day the subtraject
  closes and may be declared; first-line tables: ``service_date``);
- its **declaration month** is the month its *original* line was declared: for a line without
  corrections the stored ``declared_on``; for a corrected line (whose stored ``declared_on`` is the
  latest of its group) the ``declared_on`` of its original in the store's corrections audit
  (``kind = original``), or, where the original is itself the stored line, the earliest
  ``declared_on`` known of the group (stored line and merged corrections);
- its **cents** are its net amount (original + credits + re-declarations as netted), all counted
  in the original's declaration month: a correction moves money, never a line, to a later month;
- the **development month** is declaration month - service month (0 = declared in the month of
  service; a line declared before its service month, which the contract's date checks refuse,
  would count at 0);
- the triangle is **truncated at data_as_of**: a cell is observed when its declaration month lies
  wholly on or before ``data_as_of`` (the last complete month: ``data_as_of``'s month when it is the
  month's last day, else the month before); lines declared in a later, partial month, and service
  months after the last complete month, are left out (and counted by the caller). The service months
  are those from the first with a line to the last with a line or the last month of the delivery
  years, whichever is later (a first-line table has no service after its last delivery year; a DBC
  table has subtrajecten that started in it and closed after it, up to data_as_of).
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

#: Columns of the frame :func:`original_declarations` takes (a store claim table, read).
STORED = {
    "claim_id": pl.String,
    "service_date": pl.Date,
    "declared_on": pl.Date,
    "cents": pl.Int64,
    "n_corrections": pl.Int16,
    "fully_credited": pl.Boolean,
}
#: Columns of the store's corrections audit that are used.
CORRECTIONS = {"root_claim_id": pl.String, "kind": pl.String, "declared_on": pl.Date}
#: The frame the triangle is built from: one row per service, dated by its original declaration.
LINES = {"service_date": pl.Date, "declared_on": pl.Date, "cents": pl.Int64}
CELLS = {"service_month": pl.Int32, "declaration_month": pl.Int32, "lines": pl.Int64, "cents": pl.Int64}


def month_index(d: date) -> int:
    return d.year * 12 + d.month - 1


def month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def month_expr(column: str | pl.Expr) -> pl.Expr:
    col = pl.col(column) if isinstance(column, str) else column
    return (col.dt.year().cast(pl.Int32) * 12 + col.dt.month().cast(pl.Int32) - 1).cast(pl.Int32)


def month_start_expr(column: str) -> pl.Expr:
    """An integer month column as the date of the month's first day."""
    col = pl.col(column)
    return pl.date(col // 12, col % 12 + 1, 1)


def last_complete_month(data_as_of: date) -> int:
    """The last declaration month wholly on or before ``data_as_of``."""
    month = month_index(data_as_of)
    return month if (data_as_of + timedelta(days=1)).day == 1 else month - 1


def original_declarations(
    stored: pl.DataFrame | pl.LazyFrame, corrections: pl.DataFrame | pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """One row per service (fully credited lines left out): ``service_date``, ``declared_on`` of its
    original line, net ``cents``. ``stored`` has the columns of :data:`STORED`; ``corrections``
    (the merged lines of the store's corrections audit, :data:`CORRECTIONS`) may be None when the
    store has none."""
    stored = stored.lazy().filter(~pl.col("fully_credited"))
    plain = stored.filter(pl.col("n_corrections") == 0).select(list(LINES))
    if corrections is None:
        return plain
    corrected = stored.filter(pl.col("n_corrections") > 0).select("claim_id", *LINES)
    merged = (
        corrections.lazy()
        .group_by("root_claim_id")
        .agg(
            pl.col("declared_on").filter(pl.col("kind") == "original").min().alias("_original_declared"),
            pl.col("declared_on").min().alias("_earliest_merged"),
        )
    )
    corrected = corrected.join(merged, left_on="claim_id", right_on="root_claim_id", how="left").select(
        "service_date",
        pl.coalesce("_original_declared", pl.min_horizontal("declared_on", "_earliest_merged")).alias("declared_on"),
        "cents",
    )
    return pl.concat([plain, corrected])


def declaration_cells(lines: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Lines and cents per service month and declaration month (integer months), sorted."""
    return (
        lines.lazy()
        .select(
            month_expr("service_date").alias("service_month"),
            pl.max_horizontal(month_expr("declared_on"), month_expr("service_date")).alias("declaration_month"),
            "cents",
        )
        .group_by("service_month", "declaration_month")
        .agg(pl.len().cast(pl.Int64).alias("lines"), pl.col("cents").sum().cast(pl.Int64).alias("cents"))
        .sort("service_month", "declaration_month")
        .collect()
        .select([pl.col(c).cast(t) for c, t in CELLS.items()])
    )


def build_triangle(cells: pl.DataFrame, last_month: int, through_month: int | None = None) -> pl.DataFrame:
    """The observed triangle from :func:`declaration_cells`: every service month from the first one
    with a line to the last one with a line or ``through_month`` (the last month of the delivery
    years, which may have nothing declared yet), whichever is later, but not after ``last_month``;
    every development month 0 .. ``last_month`` - service month (zero where nothing was declared),
    with the cumulative lines and cents up to and including each.
    Columns: ``service_month``, ``development_month``, ``declaration_month`` (integer months),
    ``lines``, ``cents``, ``cumulative_lines``, ``cumulative_cents``."""
    kept = cells.filter((pl.col("declaration_month") <= last_month) & (pl.col("service_month") <= last_month))
    schema = {
        "service_month": pl.Int32,
        "development_month": pl.Int32,
        "declaration_month": pl.Int32,
        "lines": pl.Int64,
        "cents": pl.Int64,
        "cumulative_lines": pl.Int64,
        "cumulative_cents": pl.Int64,
    }
    if kept.height == 0:
        return pl.DataFrame(schema=schema)
    first = int(kept["service_month"].min())
    final = min(last_month, max(int(kept["service_month"].max()), through_month if through_month is not None else -1))
    grid = pl.DataFrame({"service_month": list(range(first, final + 1))}, schema={"service_month": pl.Int32})
    grid = (
        grid.with_columns(
            pl.int_ranges(0, last_month - pl.col("service_month") + 1, dtype=pl.Int32).alias("development_month")
        )
        .explode("development_month")
        .with_columns((pl.col("service_month") + pl.col("development_month")).cast(pl.Int32).alias("declaration_month"))
    )
    out = (
        grid.join(kept, on=["service_month", "declaration_month"], how="left")
        .with_columns(pl.col("lines").fill_null(0), pl.col("cents").fill_null(0))
        .sort("service_month", "development_month")
        .with_columns(
            pl.col("lines").cum_sum().over("service_month").alias("cumulative_lines"),
            pl.col("cents").cum_sum().over("service_month").alias("cumulative_cents"),
        )
    )
    return out.select([pl.col(c).cast(t) for c, t in schema.items()])


__all__ = [
    "CELLS",
    "CORRECTIONS",
    "LINES",
    "STORED",
    "build_triangle",
    "declaration_cells",
    "last_complete_month",
    "month_expr",
    "month_index",
    "month_start",
    "month_start_expr",
    "original_declarations",
]

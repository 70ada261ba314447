"""Rule 6: the national reference price of each DBC product and year, from the data itself.

The mean declared amount per ``product_cd`` and year of ``end_date`` over all (not fully credited)
DBC lines of the whole store. It spans all buckets, so each bucket contributes a partial sum and
count (:func:`partial_prices`) and :func:`combine_prices` reduces them: a tiny aggregate, not a
shuffle.
"""

from __future__ import annotations

import polars as pl

from transforms.episodes.inputs import read_store_table
from transforms.episodes.rules import round_half_away
from transforms.money import decimal_cents

PRICE_SCHEMA = {"product_cd": pl.String, "year": pl.Int32, "reference_cents": pl.Int64, "n_lines": pl.UInt32}


def partial_prices(root: str, buckets: list[int]) -> pl.DataFrame:
    """Sum and count of the declared cents per product and year over the DBC lines of ``buckets``
    (one task's group; the sums of all groups make the national price)."""
    from pathlib import Path

    frames = [
        f
        for b in buckets
        if (f := read_store_table(Path(root), "dbc", b, ["product_cd", "end_date", "amount"])) is not None
    ]
    if not frames:
        return pl.DataFrame(
            schema={"product_cd": pl.String, "year": pl.Int32, "sum_cents": pl.Int64, "n_lines": pl.UInt32}
        )
    lines = (
        pl.concat(frames)
        .with_columns(decimal_cents("amount").alias("amount_cents"))
        .filter(pl.col("amount_cents") != 0)
    )
    return lines.group_by("product_cd", pl.col("end_date").dt.year().cast(pl.Int32).alias("year")).agg(
        pl.col("amount_cents").sum().alias("sum_cents"), pl.len().alias("n_lines")
    )


def combine_prices(partials: list[pl.DataFrame]) -> pl.DataFrame:
    if not partials:
        return pl.DataFrame(schema=PRICE_SCHEMA)
    total = pl.concat(partials).group_by("product_cd", "year").agg(pl.col("sum_cents").sum(), pl.col("n_lines").sum())
    return total.select(
        "product_cd",
        "year",
        round_half_away(pl.col("sum_cents"), pl.col("n_lines")).alias("reference_cents"),
        pl.col("n_lines").cast(pl.UInt32),
    ).sort("product_cd", "year")

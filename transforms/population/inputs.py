"""What the population benchmark reads: spending per insured and quarter from a store's claim tables
(one patient bucket at a time, so a Dask task per bucket), the insured's age and sex per quarter, and
the Vektis costs per insured-year by age class and sex.

Spending: the stored lines are netted (a credited line contributes its net amount, a fully credited
one nothing), dated by their service date (``end_date`` for DBC subtrajecten, which are declared
when they close); ``dbc_activity`` is left out because its amounts break down the subtrajecten's.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transforms.contract import load_contract
from transforms.maturity.store import SERVICE_DATE
from transforms.money import decimal_cents

#: The claim tables whose amounts are Zvw spending (dbc_activity only breaks dbc down).
SPENDING_TABLES = load_contract().claim_tables
#: The Vektis categories the claim tables cover (the rest -- GGZ, aids, dental, ... -- has no table).
VEKTIS_CATEGORIES = ("msz", "pharmacy", "gp", "paramedical", "maternity")


def buckets(store: Path | str) -> list[str]:
    """The patient buckets of a store (folder names ``bucket=NNNN``), in order."""
    return sorted(p.name for p in (Path(store) / "insured").glob("bucket=*"))


def bucket_spending(store: Path | str, bucket: str) -> pl.DataFrame:
    """Net cents per patient, year and quarter of service in one bucket, over the spending tables."""
    frames = []
    for table in SPENDING_TABLES:
        files = sorted((Path(store) / table / bucket).glob("*.parquet"))
        if not files:
            continue
        day = pl.col(SERVICE_DATE[table])
        frames.append(
            pl.scan_parquet(files).select(
                "patient_id",
                day.dt.year().cast(pl.Int32).alias("year"),
                day.dt.quarter().cast(pl.Int8).alias("quarter"),
                decimal_cents("amount").alias("cents"),
            )
        )
    if not frames:
        return pl.DataFrame(schema={"patient_id": pl.String, "year": pl.Int32, "quarter": pl.Int8, "cents": pl.Int64})
    return (
        pl.concat(frames)
        .group_by("patient_id", "year", "quarter")
        .agg(pl.col("cents").sum())
        .sort("patient_id", "year", "quarter")
        .collect()
    )


def bucket_insured(store: Path | str, bucket: str) -> pl.DataFrame:
    """The enrolment spells of one bucket (patient, insurer, from, to, birth year, sex, gemeente)."""
    files = sorted((Path(store) / "insured" / bucket).glob("*.parquet"))
    return pl.read_parquet(
        files,
        columns=["patient_id", "insurer_uzovi", "enrolled_from", "enrolled_to", "birth_year", "sex", "gemeente_code"],
    )


def vektis_rates(vektis: Path | str) -> pl.DataFrame:
    """Vektis cost per insured-quarter (cents) by year, sex and age class over the categories the claim
    tables cover: the national sum of their costs / the national insured-years / 4 (final release;
    the unknown-gemeente row has no sex or age and is left out of the cells, not of nothing else)."""
    files = sorted((Path(vektis) / "vektis_long").rglob("*.parquet"))
    long = pl.scan_parquet(files, hive_partitioning=True).filter(
        (pl.col("release") == "final") & pl.col("sex").is_not_null() & pl.col("age_min").is_not_null()
    )
    cells = long.group_by(pl.col("year").cast(pl.Int32), "sex", pl.col("age_min").cast(pl.Int16)).agg(
        pl.col("value_cents").filter(pl.col("measure") == "insured_years").sum().alias("insured_year_cents"),
        pl.col("value_cents").filter(pl.col("category").is_in(list(VEKTIS_CATEGORIES))).sum().alias("cost_cents"),
    )
    # insured_years is a count in the table's cents column (x 100): cost per insured-year = cost / (iy / 100)
    return (
        cells.select(
            "year",
            "sex",
            "age_min",
            (pl.col("cost_cents") / (pl.col("insured_year_cents") / 100) / 4).alias("expected_cents"),
        )
        .sort("year", "sex", "age_min")
        .collect()
    )


__all__ = ["SPENDING_TABLES", "VEKTIS_CATEGORIES", "bucket_insured", "bucket_spending", "buckets", "vektis_rates"]

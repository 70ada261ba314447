"""Periods and cohorts of a DiD panel.

A period is an integer the estimators can subtract: the calendar year for ``year`` (as in R
``did``'s ``mpdta``), and a running number from 1 at the spec's first year for ``quarter`` and
``month`` (2015-Q1 = 1, 2015-Q2 = 2, ...), so ``rel_time = period - cohort`` counts periods in
every case. ``period_label`` says which calendar period it is (``2018``, ``2018-Q3``, ``2018-07``).

The cohort of a provider (per bundle) is the period holding its first contract start for that
bundle, whichever insurer signed it: treatment is a property of the provider, and the treatment is
absorbing (a contract that ends does not make a provider untreated again, as the staggered-adoption
estimators assume). A provider whose first contract starts after the last period is never treated
within the panel (cohort 0, counted per status in the manifest's ``cohorts``); one whose contract
started before the first period has no pre-period to compare with, so its episodes are left out and
counted in the attrition report.
"""

from __future__ import annotations

from datetime import date

import polars as pl

#: Cohort of units never treated within the panel (R did, csdid, pyfixest).
NEVER_TREATED = 0
IN_PANEL, BEFORE_FIRST, AFTER_LAST, NEVER = (
    "in_panel",
    "treated_before_first_period",
    "treated_after_last_period",
    "never_treated",
)


def period_index(column: str | pl.Expr, kind: str, first_year: int) -> pl.Expr:
    """The period of a date column."""
    day = pl.col(column) if isinstance(column, str) else column
    year = day.dt.year().cast(pl.Int32)
    if kind == "year":
        return year
    if kind == "quarter":
        return ((year - first_year) * 4 + day.dt.quarter().cast(pl.Int32)).cast(pl.Int32)
    return ((year - first_year) * 12 + day.dt.month().cast(pl.Int32)).cast(pl.Int32)


def period_of(day: date, kind: str, first_year: int) -> int:
    if kind == "year":
        return day.year
    if kind == "quarter":
        return (day.year - first_year) * 4 + (day.month - 1) // 3 + 1
    return (day.year - first_year) * 12 + day.month


def periods_frame(kind: str, years: tuple[int, int]) -> pl.DataFrame:
    """Every period of the panel: ``period``, ``period_label``, ``first_day``, ``last_day``, and the
    maturity keys (``maturity_kind``, ``maturity_period``: how ``transforms.maturity`` names it)."""
    first, last = years
    rows = []
    for year in range(first, last + 1):
        if kind == "year":
            rows.append((year, str(year), date(year, 1, 1), date(year, 12, 31), "year", str(year)))
            continue
        steps = 4 if kind == "quarter" else 12
        for step in range(1, steps + 1):
            month = (step - 1) * 3 + 1 if kind == "quarter" else step
            start = date(year, month, 1)
            months = 3 if kind == "quarter" else 1
            nxt = date(year + (month + months - 1) // 12, (month + months - 1) % 12 + 1, 1)
            end = date.fromordinal(nxt.toordinal() - 1)
            label = f"{year}-Q{step}" if kind == "quarter" else f"{year}-{month:02d}"
            rows.append((period_of(start, kind, first), label, start, end, kind, label))
    return pl.DataFrame(
        rows,
        schema={
            "period": pl.Int32,
            "period_label": pl.String,
            "first_day": pl.Date,
            "last_day": pl.Date,
            "maturity_kind": pl.String,
            "maturity_period": pl.String,
        },
        orient="row",
    )


def provider_cohorts(
    contracts: pl.DataFrame, bundles: tuple[str, ...], kind: str, years: tuple[int, int]
) -> pl.DataFrame:
    """Per bundle and contracted provider: ``contract_start`` (its first), ``cohort`` (0 when it
    starts after the last period), ``cohort_status`` and ``contract_insurers`` (the insurers its
    contracts name; empty when one names all insurers)."""
    first_day, last_day = date(years[0], 1, 1), date(years[1], 12, 31)
    own = contracts.filter(pl.col("bundle_id").is_in(list(bundles)))
    grouped = own.group_by("bundle_id", "provider_agb").agg(
        pl.col("start_date").min().alias("contract_start"),
        pl.col("insurer_uzovi").is_null().any().alias("all_insurers"),
        pl.col("insurer_uzovi").drop_nulls().unique().sort().alias("contract_insurers"),
    )
    status = (
        pl.when(pl.col("contract_start") < first_day)
        .then(pl.lit(BEFORE_FIRST))
        .when(pl.col("contract_start") > last_day)
        .then(pl.lit(AFTER_LAST))
        .otherwise(pl.lit(IN_PANEL))
    )
    cohort = (
        pl.when(status == IN_PANEL)
        .then(period_index("contract_start", kind, years[0]))
        .otherwise(pl.lit(NEVER_TREATED))
        .cast(pl.Int32)
    )
    return grouped.with_columns(
        cohort.alias("cohort"),
        status.alias("cohort_status"),
        pl.when(pl.col("all_insurers"))
        .then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(pl.col("contract_insurers"))
        .alias("contract_insurers"),
    ).sort("bundle_id", "provider_agb")


def treatment_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """``rel_time`` (null for never treated) and ``treated`` from ``period`` and ``cohort``."""
    ever = pl.col("cohort") != NEVER_TREATED
    return frame.with_columns(
        pl.when(ever).then(pl.col("period") - pl.col("cohort")).otherwise(None).cast(pl.Int32).alias("rel_time"),
        (ever & (pl.col("period") >= pl.col("cohort"))).alias("treated"),
    )


__all__ = [
    "AFTER_LAST",
    "BEFORE_FIRST",
    "IN_PANEL",
    "NEVER",
    "NEVER_TREATED",
    "period_index",
    "period_of",
    "periods_frame",
    "provider_cohorts",
    "treatment_columns",
]

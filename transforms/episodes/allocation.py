"""Rules 4 and 6: allocate every line overlapping an episode's window to exactly one component,
prorated by its days inside the window, with declared and standardised amounts; phases for the
birth-care bundle."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from transforms.bundles import TABLE_COMPONENT, BundleDefinition, care_path_codes
from transforms.episodes.formation import rule_expr
from transforms.episodes.rules import days_in_window, line_days, overlaps_window, prorate, standardised_cents


def with_standardised(lines: pl.DataFrame, prices: pl.DataFrame) -> pl.DataFrame:
    """Add ``standardised_cents`` (rule 6) to the lines."""
    priced = lines.with_columns(pl.col("end").dt.year().cast(pl.Int32).alias("_year")).join(
        prices.select("product_cd", pl.col("year").alias("_year"), "reference_cents"),
        on=["product_cd", "_year"],
        how="left",
        maintain_order="left",
    )
    return priced.with_columns(standardised_cents().fill_null(pl.col("amount_cents")).alias("standardised_cents")).drop(
        "_year", "reference_cents"
    )


def in_bundle_expr(bundle: BundleDefinition, activities: pl.DataFrame) -> pl.Expr:
    expr = pl.lit(False)
    for rule in bundle.in_bundle:
        expr = expr | rule_expr(rule, activities)
    return expr


def allocate(
    bundle: BundleDefinition, episodes: pl.DataFrame, lines: pl.DataFrame, activities: pl.DataFrame
) -> pl.DataFrame:
    """One row per (episode, line) for every line overlapping the episode's window."""
    window = episodes.select(
        "episode_id", "patient_key", "patient_id", "window_start", "window_end", "anchor_date", "anchor_claim_id"
    )
    joined = lines.join(window, on=["patient_key", "patient_id"], how="inner").filter(overlaps_window())
    table_component = pl.col("source_table").replace_strict(TABLE_COMPONENT, return_dtype=pl.String)
    allocated = joined.with_columns(
        pl.when(in_bundle_expr(bundle, activities))
        .then(pl.lit("in_bundle"))
        .otherwise(table_component)
        .alias("component"),
        days_in_window().cast(pl.Int32).alias("days_in"),
        line_days().cast(pl.Int32).alias("days"),
    ).with_columns(
        prorate(pl.col("amount_cents"), pl.col("days_in"), pl.col("days")).alias("allocated_cents"),
        prorate(pl.col("standardised_cents"), pl.col("days_in"), pl.col("days")).alias("allocated_standardised_cents"),
    )
    if bundle.window.kind == "phases":
        allocated = allocated.with_columns(phase_of_line().alias("phase"))
    else:
        allocated = allocated.with_columns(pl.lit(None, pl.String).alias("phase"))
    return allocated


def phase_of_line() -> pl.Expr:
    """Birth care phases (docs/episode-rules.md, rule 3): by the line's reference date relative to the
    birth; maternity-care hours are their own phase; the trigger line is natal."""
    ref = pl.col("start")
    return (
        pl.when(pl.col("claim_id") == pl.col("anchor_claim_id"))
        .then(pl.lit("natal"))
        .when(pl.col("service_cd") == care_path_codes().maternity_care_hours_service)
        .then(pl.lit("maternity_care"))
        .when(ref < pl.col("anchor_date"))
        .then(pl.lit("prenatal"))
        .when(ref <= pl.col("anchor_date") + timedelta(days=1))
        .then(pl.lit("natal"))
        .otherwise(pl.lit("postnatal"))
    )

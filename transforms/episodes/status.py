"""Rules 7 and 8: episode status (death, enrolment, data completeness) and case-mix covariates
measured in the 365 days before the anchor, never on or after it."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from transforms.episodes.rules import CHRONIC_ATC, days_in_window, overlaps_window, prorate

FAR_FUTURE = date(9999, 12, 31)


def episode_status(episodes: pl.DataFrame, insured: pl.DataFrame, completeness: date) -> pl.DataFrame:
    """Add ``status``: death > censored_enrolment > censored_data > complete."""
    keys = ["patient_key", "patient_id"]
    deaths = insured.group_by(keys).agg(pl.col("death_date").max())
    # enrolment: valid spells do not overlap, so the covered days of the window are a sum
    spells = insured.select(*keys, "enrolled_from", pl.col("enrolled_to").fill_null(FAR_FUTURE))
    covered = (
        episodes.select("episode_id", *keys, "window_start", "window_end")
        .join(spells, on=keys, how="inner")
        .with_columns(
            (pl.min_horizontal("enrolled_to", "window_end") - pl.max_horizontal("enrolled_from", "window_start"))
            .dt.total_days()
            .add(1)
            .clip(lower_bound=0)
            .alias("_days")
        )
        .group_by("episode_id")
        .agg(pl.col("_days").sum().alias("_covered"))
    )
    out = episodes.join(deaths, on=keys, how="left", maintain_order="left").join(
        covered, on="episode_id", how="left", maintain_order="left"
    )
    window_days = (pl.col("window_end") - pl.col("window_start")).dt.total_days() + 1
    status = (
        pl.when(
            pl.col("death_date").is_not_null()
            & (pl.col("death_date") >= pl.col("window_start"))
            & (pl.col("death_date") <= pl.col("window_end"))
        )
        .then(pl.lit("death"))
        .when(pl.col("_covered").fill_null(0) < window_days)
        .then(pl.lit("censored_enrolment"))
        .when(pl.col("window_end") > completeness)
        .then(pl.lit("censored_data"))
        .otherwise(pl.lit("complete"))
    )
    return out.with_columns(status.alias("status")).drop("_covered")


def covariates(episodes: pl.DataFrame, insured: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """Add age, sex, residence, chronic-condition flags and prior-year standardised cost."""
    keys = ["patient_key", "patient_id"]
    # residence (and birth year, sex) from the spell covering the anchor, else the latest before it
    spells = insured.select(*keys, "enrolled_from", "birth_year", "sex", "postcode3", "gemeente_code").sort(
        "enrolled_from"
    )
    anchors = episodes.select("episode_id", *keys, "anchor_date").sort("anchor_date")
    person = anchors.join_asof(
        spells, left_on="anchor_date", right_on="enrolled_from", by=keys, strategy="backward", check_sortedness=False
    )
    person = person.select(
        "episode_id",
        (pl.col("anchor_date").dt.year() - pl.col("birth_year")).cast(pl.Int32).alias("age_at_anchor"),
        "sex",
        "postcode3",
        "gemeente_code",
    )

    period = episodes.select(
        "episode_id",
        *keys,
        (pl.col("anchor_date") - timedelta(days=365)).alias("_from"),
        (pl.col("anchor_date") - timedelta(days=1)).alias("_to"),
    )
    prior = lines.join(period, on=keys, how="inner").filter(overlaps_window("_from", "_to"))
    cost = prior.group_by("episode_id").agg(
        prorate(
            pl.col("standardised_cents"),
            days_in_window("_from", "_to"),
            (pl.col("end") - pl.col("start")).dt.total_days() + 1,
        )
        .sum()
        .alias("prior_year_standardised_cents")
    )
    dispensed = prior.filter(pl.col("source_table") == "pharmacy")
    flags = dispensed.group_by("episode_id").agg(
        [
            pl.any_horizontal([pl.col("atc_cd").str.starts_with(p) for p in prefixes]).any().alias(name)
            for name, prefixes in CHRONIC_ATC.items()
        ]
    )
    out = episodes.join(person, on="episode_id", how="left", maintain_order="left")
    out = out.join(flags, on="episode_id", how="left", maintain_order="left")
    out = out.join(cost, on="episode_id", how="left", maintain_order="left")
    return out.with_columns(
        [pl.col(name).fill_null(False) for name in CHRONIC_ATC]
        + [
            pl.sum_horizontal([pl.col(name).cast(pl.Int32) for name in CHRONIC_ATC])
            .cast(pl.Int32)
            .alias("n_chronic_conditions"),
            pl.col("prior_year_standardised_cents").fill_null(0),
        ]
    )

"""Rules 1-3: trigger events, one episode at a time per patient and bundle, and windows.

Trigger events come from the bundle's trigger rules; episodes are formed per patient in order of
(date, claim id): the first event opens an episode, later events on or before its window end join
it (``n_triggers``), the next one after it opens the next episode, whose window starts no earlier
than the day after the previous window end. This is done for all patients at once, one "round" of
episodes at a time, so the number of passes is the largest number of episodes of one patient.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from transforms.bundles import BundleDefinition, LineRule
from transforms.episodes.rules import line_matches

EVENT_SCHEMA = {
    "patient_key": pl.Int64,
    "patient_id": pl.String,
    "date": pl.Date,
    "claim_id": pl.String,
    "provider_agb": pl.String,
    "source_table": pl.String,
}


def claims_with_activity(activities: pl.DataFrame, codes: tuple[str, ...]) -> pl.Series:
    return activities.filter(pl.col("activity_cd").is_in(list(codes)))["claim_id"].unique()


def rule_expr(rule: LineRule, activities: pl.DataFrame) -> pl.Expr:
    """``line_matches`` with the activity part resolved against this bucket's activities."""
    claims = claims_with_activity(activities, rule.activity) if rule.activity else None
    return line_matches(rule, pl.col("claim_id").is_in(claims.implode()) if claims is not None else None)


def trigger_events(
    bundle: BundleDefinition, lines: pl.DataFrame, activities: pl.DataFrame, insured: pl.DataFrame
) -> pl.DataFrame:
    """Rule 1: every trigger event (patient, date, claim, provider)."""
    parts = []
    for rule in bundle.trigger.any_of:
        matching = lines.filter(line_matches(rule, pl.lit(True)))
        if rule.activity:
            acts = activities.filter(pl.col("activity_cd").is_in(list(rule.activity))).select(
                "claim_id", "activity_date"
            )
            events = matching.join(acts, on="claim_id").select(
                "patient_key",
                "patient_id",
                pl.col("activity_date").alias("date"),
                "claim_id",
                "provider_agb",
                "source_table",
            )
        else:
            events = matching.select(
                "patient_key", "patient_id", pl.col("start").alias("date"), "claim_id", "provider_agb", "source_table"
            )
        parts.append(events)
    events = pl.concat(parts).unique(["claim_id", "date"]) if parts else pl.DataFrame(schema=EVENT_SCHEMA)
    if bundle.trigger.requires:
        events = _with_required_lines(bundle, events, lines, activities)
    events = _apply_exclusions(bundle, events, insured)
    return events.sort("patient_key", "patient_id", "date", "claim_id")


def _with_required_lines(
    bundle: BundleDefinition, events: pl.DataFrame, lines: pl.DataFrame, activities: pl.DataFrame
) -> pl.DataFrame:
    """Keep events of patients who also have a ``requires`` line in the same window (calendar year,
    or the day window around the event)."""
    required = pl.concat([lines.filter(rule_expr(rule, activities)) for rule in bundle.trigger.requires])
    if bundle.window.kind == "calendar_year":
        have = required.select("patient_key", "patient_id", pl.col("start").dt.year().alias("_year")).unique()
        return (
            events.with_columns(pl.col("date").dt.year().alias("_year"))
            .join(have, on=["patient_key", "patient_id", "_year"], how="semi")
            .drop("_year")
        )
    req = required.select("patient_key", "patient_id", pl.col("start").alias("_s"), pl.col("end").alias("_e"))
    pre, post = timedelta(days=bundle.window.pre_days), timedelta(days=bundle.window.post_days)
    joined = events.join(req, on=["patient_key", "patient_id"]).filter(
        (pl.col("_s") <= pl.col("date") + post) & (pl.col("_e") >= pl.col("date") - pre)
    )
    return events.join(joined.select("claim_id", "date").unique(), on=["claim_id", "date"], how="semi")


def _apply_exclusions(bundle: BundleDefinition, events: pl.DataFrame, insured: pl.DataFrame) -> pl.DataFrame:
    ex = bundle.exclusions
    if ex.min_age is None and ex.max_age is None and ex.sex is None:
        return events
    person = insured.group_by("patient_key", "patient_id").agg(pl.col("birth_year").first(), pl.col("sex").first())
    events = events.join(person, on=["patient_key", "patient_id"], how="left")
    keep = pl.lit(True)
    age = pl.col("date").dt.year() - pl.col("birth_year")
    if ex.min_age is not None:
        keep = keep & (age >= ex.min_age)
    if ex.max_age is not None:
        keep = keep & (age <= ex.max_age)
    if ex.sex is not None:
        keep = keep & (pl.col("sex") == ex.sex)
    return events.filter(keep.fill_null(False)).drop("birth_year", "sex")


def form_episodes(bundle: BundleDefinition, events: pl.DataFrame) -> pl.DataFrame:
    """Rules 2-3: one row per episode with anchor, anchor claim and provider, window and n_triggers."""
    if bundle.window.kind == "calendar_year":
        return _calendar_year_episodes(bundle, events)
    pre, post = timedelta(days=bundle.window.pre_days), timedelta(days=bundle.window.post_days)
    remaining = events
    previous_end = pl.DataFrame(schema={"patient_key": pl.Int64, "patient_id": pl.String, "_prev_end": pl.Date})
    rounds = []
    while remaining.height:
        first = remaining.group_by("patient_key", "patient_id", maintain_order=True).first()
        opened = (
            first.select(
                "patient_key",
                "patient_id",
                pl.col("date").alias("anchor_date"),
                pl.col("claim_id").alias("anchor_claim_id"),
                pl.col("provider_agb").alias("anchor_provider_agb"),
                pl.col("source_table").alias("anchor_table"),
                (pl.col("date") + post).alias("window_end"),
                (pl.col("date") - pre).alias("_start"),
            )
            .join(previous_end, on=["patient_key", "patient_id"], how="left", maintain_order="left")
            .with_columns(
                pl.max_horizontal("_start", pl.col("_prev_end") + timedelta(days=1))
                .fill_null(pl.col("_start"))
                .alias("window_start")
            )
            .drop("_start", "_prev_end")
        )
        tagged = remaining.join(
            opened.select("patient_key", "patient_id", "window_end"),
            on=["patient_key", "patient_id"],
            how="left",
            maintain_order="left",
        )
        inside = tagged.filter(pl.col("date") <= pl.col("window_end"))
        counts = inside.group_by("patient_key", "patient_id").agg(pl.len().cast(pl.Int32).alias("n_triggers"))
        rounds.append(opened.join(counts, on=["patient_key", "patient_id"], how="left", maintain_order="left"))
        remaining = tagged.filter(pl.col("date") > pl.col("window_end")).drop("window_end")
        previous_end = opened.select("patient_key", "patient_id", pl.col("window_end").alias("_prev_end"))
    if not rounds:
        return _empty_episodes()
    return pl.concat(rounds).sort("patient_key", "patient_id", "anchor_date")


def _calendar_year_episodes(bundle: BundleDefinition, events: pl.DataFrame) -> pl.DataFrame:
    if events.height == 0:
        return _empty_episodes()
    year = pl.col("date").dt.year()
    return (
        events.with_columns(year.alias("_year"))
        .group_by("patient_key", "patient_id", "_year", maintain_order=True)
        .agg(
            pl.col("date").first().alias("anchor_date"),
            pl.col("claim_id").first().alias("anchor_claim_id"),
            pl.col("provider_agb").first().alias("anchor_provider_agb"),
            pl.col("source_table").first().alias("anchor_table"),
            pl.len().cast(pl.Int32).alias("n_triggers"),
        )
        .with_columns(
            pl.date(pl.col("_year"), 1, 1).alias("window_start"),
            pl.date(pl.col("_year"), 12, 31).alias("window_end"),
        )
        .drop("_year")
        .select(_empty_episodes().columns)
    )


def _empty_episodes() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "patient_key": pl.Int64,
            "patient_id": pl.String,
            "anchor_date": pl.Date,
            "anchor_claim_id": pl.String,
            "anchor_provider_agb": pl.String,
            "anchor_table": pl.String,
            "window_end": pl.Date,
            "window_start": pl.Date,
            "n_triggers": pl.Int32,
        }
    )

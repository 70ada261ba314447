"""Outcome flags and counts per episode, as declared in each bundle definition.

Conventions (docs/episode-rules.md, outcome flags):
- "after the anchor within N days" means a date in ``(anchor, anchor + N]``; with no ``within_days``
  the whole window counts;
- a line's date is its start (service) date; for a rule that names activities, the activity date;
- ``component: in_bundle`` restricts to the episode's in-bundle lines; otherwise any of the
  episode's allocated lines counts;
- nothing found gives ``False`` / 0, never null.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from transforms.bundles import BundleDefinition, LineRule, Outcome
from transforms.episodes.rules import line_matches


def _scoped(outcome: Outcome, allocated: pl.DataFrame) -> pl.DataFrame:
    return allocated.filter(pl.col("component") == "in_bundle") if outcome.component == "in_bundle" else allocated


def _after_anchor(date_col: str, within_days: int | None) -> pl.Expr:
    if within_days is None:
        return (pl.col(date_col) >= pl.col("window_start")) & (pl.col(date_col) <= pl.col("window_end"))
    return (pl.col(date_col) > pl.col("anchor_date")) & (
        pl.col(date_col) <= pl.col("anchor_date") + timedelta(days=within_days)
    )


def _matching_dates(rules: tuple[LineRule, ...], lines: pl.DataFrame, activities: pl.DataFrame) -> pl.DataFrame:
    """(episode_id, claim_id, date) of lines matching any rule; the activity date for activity rules."""
    parts = []
    for rule in rules:
        matched = lines.filter(line_matches(rule, pl.lit(True)))
        if rule.activity:
            acts = activities.filter(pl.col("activity_cd").is_in(list(rule.activity))).select(
                "claim_id", "activity_date"
            )
            parts.append(
                matched.join(acts, on="claim_id").select(
                    "episode_id",
                    "claim_id",
                    pl.col("activity_date").alias("_date"),
                    "anchor_date",
                    "window_start",
                    "window_end",
                )
            )
        else:
            parts.append(
                matched.select(
                    "episode_id",
                    "claim_id",
                    pl.col("start").alias("_date"),
                    "anchor_date",
                    "window_start",
                    "window_end",
                )
            )
    return pl.concat(parts) if parts else pl.DataFrame()


def compute_outcomes(
    bundle: BundleDefinition, episodes: pl.DataFrame, allocated: pl.DataFrame, activities: pl.DataFrame
) -> pl.DataFrame:
    """Add one column per outcome of the bundle."""
    out = episodes
    for outcome in bundle.outcomes:
        name, kind = outcome.name, outcome.kind
        scoped = _scoped(outcome, allocated)
        if kind in ("any_line", "count_lines"):
            hits = _matching_dates(outcome.rules, scoped, activities)
            hits = hits.filter(_after_anchor("_date", outcome.within_days)) if hits.height else hits
            if kind == "any_line":
                value = (
                    hits.select("episode_id").unique().with_columns(pl.lit(True).alias(name)) if hits.height else None
                )
                out = _attach(out, value, name, False, pl.Boolean)
            else:
                value = (
                    hits.group_by("episode_id").agg(pl.col("claim_id").n_unique().cast(pl.Int32).alias(name))
                    if hits.height
                    else None
                )
                out = _attach(out, value, name, 0, pl.Int32)
        elif kind == "count_activities":
            lines = scoped
            if outcome.rules:
                cond = pl.lit(False)
                for rule in outcome.rules:
                    cond = cond | line_matches(rule, pl.lit(True))
                lines = lines.filter(cond)
            acts = activities.filter(pl.col("activity_cd").is_in(list(outcome.activity)))
            joined = lines.select("episode_id", "claim_id", "window_start", "window_end").join(acts, on="claim_id")
            joined = joined.filter(
                (pl.col("activity_date") >= pl.col("window_start")) & (pl.col("activity_date") <= pl.col("window_end"))
            )
            value = joined.group_by("episode_id").agg(pl.col("quantity").sum().cast(pl.Int32).alias(name))
            out = _attach(out, value, name, 0, pl.Int32)
        elif kind == "care_days_of_trigger":
            acts = activities.filter(pl.col("activity_cd").is_in(list(outcome.activity)))
            value = (
                episodes.select("episode_id", "anchor_claim_id")
                .join(acts, left_on="anchor_claim_id", right_on="claim_id")
                .group_by("episode_id")
                .agg(pl.col("quantity").sum().cast(pl.Int32).alias(name))
            )
            out = _attach(out, value, name, 0, pl.Int32)
        elif kind == "n_triggers_at_least":
            out = out.with_columns((pl.col("n_triggers") >= outcome.value).alias(name))
        elif kind == "allocated_amount":
            cond = pl.lit(False)
            for rule in outcome.rules:
                cond = cond | line_matches(rule, pl.lit(True))
            value = scoped.filter(cond).group_by("episode_id").agg(pl.col("allocated_cents").sum().alias(name))
            out = _attach(out, value, name, 0, pl.Int64)
        elif kind == "distinct_drugs":
            in_window = scoped
            acts = activities.filter(pl.col("activity_cd").is_in(list(outcome.activity)))
            drug_acts = (
                in_window.select("episode_id", "claim_id", "window_start", "window_end")
                .join(acts, on="claim_id")
                .filter(
                    (pl.col("activity_date") >= pl.col("window_start"))
                    & (pl.col("activity_date") <= pl.col("window_end"))
                )
                .select("episode_id", pl.col("activity_cd").alias("_drug"))
            )
            cond = pl.lit(False)
            for rule in outcome.rules:
                cond = cond | line_matches(rule, pl.lit(True))
            drug_lines = in_window.filter(cond).select("episode_id", pl.col("atc_cd").alias("_drug"))
            value = (
                pl.concat([drug_acts, drug_lines])
                .group_by("episode_id")
                .agg(pl.col("_drug").n_unique().cast(pl.Int32).alias(name))
            )
            out = _attach(out, value, name, 0, pl.Int32)
        elif kind == "death_within":
            died = (
                pl.col("death_date").is_not_null()
                & (pl.col("death_date") >= pl.col("anchor_date"))
                & (pl.col("death_date") <= pl.col("anchor_date") + timedelta(days=outcome.within_days or 365))
            )
            out = out.with_columns(died.fill_null(False).alias(name))
    return out


def _attach(out: pl.DataFrame, value: pl.DataFrame | None, name: str, default, dtype) -> pl.DataFrame:
    if value is None or value.height == 0:
        return out.with_columns(pl.lit(default, dtype).alias(name))
    return out.join(value, on="episode_id", how="left", maintain_order="left").with_columns(
        pl.col(name).fill_null(default).cast(dtype)
    )

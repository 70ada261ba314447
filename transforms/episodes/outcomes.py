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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from transforms.bundles import BundleDefinition, LineRule, Outcome, outcome_kinds
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


@dataclass(frozen=True)
class OutcomeInputs:
    """What an outcome is computed from: the episodes, their allocated lines, the activities of
    those lines."""

    episodes: pl.DataFrame
    allocated: pl.DataFrame
    activities: pl.DataFrame

    def lines(self, outcome: Outcome) -> pl.DataFrame:
        """The allocated lines the outcome looks at (only the in-bundle ones for ``component: in_bundle``)."""
        return _scoped(outcome, self.allocated)


#: An outcome kind's computation: either a column expression over the episodes, or a frame of
#: (``episode_id``, value) for the episodes where something was found.
OutcomeFunction = Callable[[Outcome, OutcomeInputs], "pl.Expr | pl.DataFrame"]

#: The function of every outcome kind, by the kind's name in ``transforms/bundles/schema/outcome_kinds.yml``.
OUTCOME_FUNCTIONS: dict[str, OutcomeFunction] = {}

#: Column type and "nothing found" value per type of outcome kind.
_COLUMN = {"boolean": (pl.Boolean, False), "count": (pl.Int32, 0), "cents": (pl.Int64, 0)}


def outcome_kind(name: str) -> Callable[[OutcomeFunction], OutcomeFunction]:
    """Register the function that computes the outcome kind ``name``."""

    def register(function: OutcomeFunction) -> OutcomeFunction:
        if name in OUTCOME_FUNCTIONS:
            raise ValueError(f"outcome kind {name!r} is registered twice")
        OUTCOME_FUNCTIONS[name] = function
        return function

    return register


def any_rule(rules: tuple[LineRule, ...]) -> pl.Expr:
    """True for a line matching any of ``rules`` (False when there are none)."""
    return pl.any_horizontal(pl.lit(False), *(line_matches(rule, pl.lit(True)) for rule in rules))


def _in_window(date_col: str) -> pl.Expr:
    return (pl.col(date_col) >= pl.col("window_start")) & (pl.col(date_col) <= pl.col("window_end"))


def _matching_after_anchor(outcome: Outcome, inputs: OutcomeInputs) -> pl.DataFrame:
    hits = _matching_dates(outcome.rules, inputs.lines(outcome), inputs.activities)
    return hits.filter(_after_anchor("_date", outcome.within_days)) if hits.height else hits


@outcome_kind("any_line")
def _any_line(outcome: Outcome, inputs: OutcomeInputs) -> pl.DataFrame:
    hits = _matching_after_anchor(outcome, inputs)
    if not hits.height:
        return pl.DataFrame(schema={"episode_id": pl.String, outcome.name: pl.Boolean})
    return hits.select("episode_id").unique().with_columns(pl.lit(True).alias(outcome.name))


@outcome_kind("count_lines")
def _count_lines(outcome: Outcome, inputs: OutcomeInputs) -> pl.DataFrame:
    hits = _matching_after_anchor(outcome, inputs)
    if not hits.height:
        return pl.DataFrame(schema={"episode_id": pl.String, outcome.name: pl.Int32})
    return hits.group_by("episode_id").agg(pl.col("claim_id").n_unique().cast(pl.Int32).alias(outcome.name))


@outcome_kind("count_activities")
def _count_activities(outcome: Outcome, inputs: OutcomeInputs) -> pl.DataFrame:
    lines = inputs.lines(outcome)
    if outcome.rules:
        lines = lines.filter(any_rule(outcome.rules))
    acts = inputs.activities.filter(pl.col("activity_cd").is_in(list(outcome.activity)))
    joined = lines.select("episode_id", "claim_id", "window_start", "window_end").join(acts, on="claim_id")
    return (
        joined.filter(_in_window("activity_date"))
        .group_by("episode_id")
        .agg(pl.col("quantity").sum().cast(pl.Int32).alias(outcome.name))
    )


@outcome_kind("care_days_of_trigger")
def _care_days_of_trigger(outcome: Outcome, inputs: OutcomeInputs) -> pl.DataFrame:
    acts = inputs.activities.filter(pl.col("activity_cd").is_in(list(outcome.activity)))
    return (
        inputs.episodes.select("episode_id", "anchor_claim_id")
        .join(acts, left_on="anchor_claim_id", right_on="claim_id")
        .group_by("episode_id")
        .agg(pl.col("quantity").sum().cast(pl.Int32).alias(outcome.name))
    )


@outcome_kind("n_triggers_at_least")
def _n_triggers_at_least(outcome: Outcome, inputs: OutcomeInputs) -> pl.Expr:
    return pl.col("n_triggers") >= outcome.value


@outcome_kind("allocated_amount")
def _allocated_amount(outcome: Outcome, inputs: OutcomeInputs) -> pl.DataFrame:
    return (
        inputs.lines(outcome)
        .filter(any_rule(outcome.rules))
        .group_by("episode_id")
        .agg(pl.col("allocated_cents").sum().alias(outcome.name))
    )


@outcome_kind("distinct_drugs")
def _distinct_drugs(outcome: Outcome, inputs: OutcomeInputs) -> pl.DataFrame:
    lines = inputs.lines(outcome)
    acts = inputs.activities.filter(pl.col("activity_cd").is_in(list(outcome.activity)))
    drug_acts = (
        lines.select("episode_id", "claim_id", "window_start", "window_end")
        .join(acts, on="claim_id")
        .filter(_in_window("activity_date"))
        .select("episode_id", pl.col("activity_cd").alias("_drug"))
    )
    drug_lines = lines.filter(any_rule(outcome.rules)).select("episode_id", pl.col("atc_cd").alias("_drug"))
    return (
        pl.concat([drug_acts, drug_lines])
        .group_by("episode_id")
        .agg(pl.col("_drug").n_unique().cast(pl.Int32).alias(outcome.name))
    )


@outcome_kind("death_within")
def _death_within(outcome: Outcome, inputs: OutcomeInputs) -> pl.Expr:
    return (
        pl.col("death_date").is_not_null()
        & (pl.col("death_date") >= pl.col("anchor_date"))
        & (pl.col("death_date") <= pl.col("anchor_date") + timedelta(days=outcome.within_days or 365))
    ).fill_null(False)


def compute_outcomes(
    bundle: BundleDefinition, episodes: pl.DataFrame, allocated: pl.DataFrame, activities: pl.DataFrame
) -> pl.DataFrame:
    """Add one column per outcome of the bundle, computed by its kind's registered function; an
    episode where nothing was found gets the kind's "nothing" value (False / 0), never null."""
    inputs = OutcomeInputs(episodes, allocated, activities)
    kinds = outcome_kinds()
    out = episodes
    for outcome in bundle.outcomes:
        dtype, default = _COLUMN[kinds[outcome.kind].type]
        value = OUTCOME_FUNCTIONS[outcome.kind](outcome, inputs)
        if isinstance(value, pl.Expr):
            out = out.with_columns(value.cast(dtype).alias(outcome.name))
        else:
            out = _attach(out, value, outcome.name, default, dtype)
    return out


def _attach(out: pl.DataFrame, value: pl.DataFrame, name: str, default, dtype) -> pl.DataFrame:
    if value.height == 0:
        return out.with_columns(pl.lit(default, dtype).alias(name))
    return out.join(value, on="episode_id", how="left", maintain_order="left").with_columns(
        pl.col(name).fill_null(default).cast(dtype)
    )

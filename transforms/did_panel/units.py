"""The rows of a DiD panel, per unit, as pure functions over polars frames.

:func:`select_episodes` takes one partition of a bundle's episodes (one anchor year), keeps the
episodes the spec asks for and counts every one it leaves out with its reason (the attrition
report), and gives each kept episode its provider's cohort, its outcomes and covariates as numbers,
and the patient's insurer at the anchor. The units are then built from those rows:

- ``episode``: one row per episode at its anchor period (repeated cross-sections);
- ``episode_quarter``: :func:`episode_quarters`, each episode's allocated lines summed per calendar
  quarter of service over the quarters of its window (zeros where nothing was declared);
- ``provider_period``: :func:`provider_periods`, one row per provider (and bundle) and period, every
  period present (balanced), with the volume of episodes and mean outcomes, covariates fixed before
  treatment.

Numbers: booleans become 0/1, ``sex`` becomes 1 for ``V`` and 0 for ``M``, counts and cents become
floats (cents stay cents).
"""

from __future__ import annotations

import polars as pl

from transforms.bundles import COMPONENTS
from transforms.did_panel.periods import AFTER_LAST, BEFORE_FIRST, NEVER, NEVER_TREATED, period_index, treatment_columns
from transforms.did_panel.spec import VOLUME_OUTCOMES, PanelSpec

#: Episode columns the builder always reads.
BASE_COLUMNS = (
    "episode_id",
    "patient_id",
    "anchor_date",
    "anchor_provider_agb",
    "anchor_table",
    "window_start",
    "window_end",
    "status",
    "gemeente_code",
)
#: Outcomes an episode_quarter panel can sum from the episode lines.
QUARTER_OUTCOMES = tuple(
    [f"{c}_cents" for c in COMPONENTS]
    + [f"{c}_standardised_cents" for c in COMPONENTS]
    + ["total_cents", "total_standardised_cents"]
)
ATTRITION_SCHEMA = {"step": pl.Int32, "reason": pl.String, "bundle_id": pl.String, "episodes": pl.Int64}


def number(column: str, dtype: pl.DataType) -> pl.Expr:
    """An episode column as Float64 (booleans 0/1, sex 1 = V)."""
    if column == "sex":
        return (
            pl.when(pl.col(column) == "V").then(1.0).when(pl.col(column) == "M").then(0.0).otherwise(None).alias(column)
        )
    return pl.col(column).cast(pl.Float64).alias(column)


def _allowed(column: str, rule) -> pl.Expr:
    if isinstance(rule, list):
        return pl.col(column).is_in(rule)
    expr = pl.lit(True)
    if rule.min is not None:
        expr = expr & (pl.col(column) >= rule.min)
    if rule.max is not None:
        expr = expr & (pl.col(column) <= rule.max)
    return expr.fill_null(False)


def within_spec(episodes: pl.DataFrame, spec: PanelSpec) -> tuple[pl.DataFrame, list[tuple[str, int]]]:
    """The episodes anchored in the spec's years that pass its filters, and per step how many were
    left out (``anchor outside <years>``, ``filter <column>``): the first steps of every unit."""
    steps: list[tuple[str, int]] = []
    first, last = spec.years
    frame = episodes
    inside = frame.filter(pl.col("anchor_date").dt.year().is_between(first, last))
    steps.append((f"anchor outside {first}-{last}", frame.height - inside.height))
    frame = inside
    for column, rule in spec.filters.items():
        kept = frame.filter(_allowed(column, rule))
        steps.append((f"filter {column}", frame.height - kept.height))
        frame = kept
    return frame, steps


def select_episodes(
    episodes: pl.DataFrame,
    spec: PanelSpec,
    cohorts: pl.DataFrame,
    insured: pl.DataFrame,
    bundle_id: str,
    *,
    several_insurers: bool,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One partition's kept episodes (with ``bundle_id``, ``provider_agb``, ``period``, ``cohort``,
    outcomes and covariates as floats, ``insurer_uzovi`` and ``contracting_insurer``) and its
    attrition rows (step, reason, bundle, episodes left out)."""
    frame, steps = within_spec(episodes, spec)
    first = spec.years[0]
    joined = frame.join(
        cohorts.filter(pl.col("bundle_id") == bundle_id).drop("bundle_id"),
        left_on="anchor_provider_agb",
        right_on="provider_agb",
        how="left",
    )
    joined = joined.with_columns(pl.col("cohort").fill_null(NEVER_TREATED), pl.col("cohort_status").fill_null(NEVER))
    kept = joined.filter(pl.col("cohort_status") != BEFORE_FIRST)
    steps.append(("provider treated before the first period (no pre-period)", joined.height - kept.height))
    frame = kept
    dtypes = episodes.schema
    period = period_index("anchor_date", spec.period, first).alias("period")
    values = [number(c, dtypes[c]) for c in spec.outcomes if c not in VOLUME_OUTCOMES]
    values += [number(c, dtypes[c]) for c in spec.covariates]
    frame = frame.with_columns(
        period, *values, pl.lit(bundle_id).alias("bundle_id"), pl.col("anchor_provider_agb").alias("provider_agb")
    )
    frame = _insurer(frame, insured) if several_insurers else frame
    attrition = pl.DataFrame(
        [(i + 1, reason, bundle_id, n) for i, (reason, n) in enumerate(steps)], schema=ATTRITION_SCHEMA, orient="row"
    )
    keep = [
        "episode_id",
        "bundle_id",
        "provider_agb",
        "gemeente_code",
        "anchor_date",
        "window_start",
        "window_end",
        "period",
        "cohort",
        "cohort_status",
        "contract_insurers",
        "status",
    ]
    keep += [c for c in spec.outcomes if c not in VOLUME_OUTCOMES] + list(spec.covariates)
    keep += ["insurer_uzovi", "contracting_insurer"] if several_insurers else []
    return frame.select(list(dict.fromkeys(keep))).sort("episode_id"), attrition


def _insurer(frame: pl.DataFrame, insured: pl.DataFrame) -> pl.DataFrame:
    """The patient's insurer on the anchor date (from the enrolment spells), and whether that insurer
    signed the provider's contract (null for providers without one in the panel)."""
    spells = insured.join(frame.select("episode_id", "patient_id", "anchor_date"), on="patient_id", how="inner")
    on_anchor = spells.filter(
        (pl.col("enrolled_from") <= pl.col("anchor_date"))
        & (pl.col("enrolled_to").is_null() | (pl.col("enrolled_to") >= pl.col("anchor_date")))
    )
    first = (
        on_anchor.sort("episode_id", "enrolled_from")
        .group_by("episode_id", maintain_order=True)
        .agg(pl.col("insurer_uzovi").first())
    )
    frame = frame.join(first, on="episode_id", how="left")
    signed = (
        pl.when(pl.col("cohort_status").is_in([NEVER, AFTER_LAST]))
        .then(None)
        .when(pl.col("contract_insurers").list.len() == 0)
        .then(True)
        .otherwise(pl.col("contract_insurers").list.contains(pl.col("insurer_uzovi")))
    )
    return frame.with_columns(signed.alias("contracting_insurer"))


def episode_quarters(kept: pl.DataFrame, lines: pl.DataFrame, spec: PanelSpec, periods: pl.DataFrame) -> pl.DataFrame:
    """Per kept episode and calendar quarter inside the panel, from the first quarter of its window
    (or of its first line, if earlier) to the last of its window (or its last line): the allocated
    cents of the outcome columns from the episode's lines by quarter of service (line start), 0
    where the episode has nothing that quarter; ``n_lines`` counts them. Every allocated cent of a
    line starting inside the panel's years is in exactly one row."""
    first = spec.years[0]
    sums = []
    for outcome in spec.outcomes:
        standardised = outcome.endswith("_standardised_cents")
        amount = "allocated_standardised_cents" if standardised else "allocated_cents"
        component = outcome.removesuffix("_standardised_cents" if standardised else "_cents")
        selected = (
            pl.col(amount)
            if component == "total"
            else pl.when(pl.col("component") == component).then(pl.col(amount)).otherwise(0)
        )
        sums.append(selected.sum().cast(pl.Float64).alias(outcome))
    binned = (
        lines.join(kept.select("episode_id"), on="episode_id", how="semi")
        .with_columns(period_index("start", "quarter", first).alias("period"))
        .group_by("episode_id", "period")
        .agg(*sums, pl.len().cast(pl.Int64).alias("n_lines"))
    )
    lo, hi = int(periods["period"].min()), int(periods["period"].max())
    binned = binned.filter(pl.col("period").is_between(lo, hi))
    # a line can start before the window (a subtraject opened earlier and allocated to the episode):
    # the episode's quarters run from the first of its window and its lines to the last of them
    reach = binned.group_by("episode_id").agg(
        pl.col("period").min().alias("_first"), pl.col("period").max().alias("_last")
    )
    spans = (
        kept.join(reach, on="episode_id", how="left")
        .with_columns(
            pl.min_horizontal(period_index("window_start", "quarter", first), "_first").clip(lo, hi).alias("_from"),
            pl.max_horizontal(period_index("window_end", "quarter", first), "_last").clip(lo, hi).alias("_to"),
        )
        .with_columns(pl.int_ranges("_from", pl.col("_to") + 1, dtype=pl.Int32).alias("_periods"))
    )
    base = (
        spans.drop("period", "_first", "_last", *spec.outcomes)
        .explode("_periods")
        .rename({"_periods": "period"})
        .drop("_from", "_to")
    )
    quarters = base.join(binned, on=["episode_id", "period"], how="left").with_columns(
        *[pl.col(o).fill_null(0.0) for o in spec.outcomes], pl.col("n_lines").fill_null(0)
    )
    return quarters.sort("episode_id", "period")


def pre_treatment(frame: pl.DataFrame, spec: PanelSpec, first_cohort: int | None) -> pl.Expr:
    """Rows before treatment: before ``cohort - anticipation`` for treated units; for never-treated
    units, before the first cohort of the panel (all rows when nobody is treated). Public because
    the gemeente panel (``transforms.did_panel.gemeente``) fixes its covariates on the same rows."""
    lead = spec.treatment.anticipation
    never_cut = first_cohort - lead if first_cohort is not None else None
    treated = (pl.col("cohort") != NEVER_TREATED) & (pl.col("period") < pl.col("cohort") - lead)
    never = (pl.col("cohort") == NEVER_TREATED) & (pl.lit(True) if never_cut is None else pl.col("period") < never_cut)
    return treated | never


def provider_periods(kept: pl.DataFrame, spec: PanelSpec, periods: pl.DataFrame) -> pl.DataFrame:
    """One row per provider and bundle and period of the panel (every period, so the panel is
    balanced): ``volume`` (episodes anchored there that period), ``log_volume`` (null at 0), the mean
    of each episode outcome, the covariates as the provider's mean over its episodes before treatment,
    ``balanced`` (episodes in every period) and ``n_episodes``."""
    means = [o for o in spec.outcomes if o not in VOLUME_OUTCOMES]
    cells = kept.group_by("bundle_id", "provider_agb", "period").agg(
        pl.len().cast(pl.Int64).alias("n_episodes"), *[pl.col(o).mean().alias(o) for o in means]
    )
    units = kept.group_by("bundle_id", "provider_agb").agg(
        pl.col("cohort").first(), pl.col("cohort_status").first(), pl.len().alias("_total")
    )
    units = units.filter(pl.col("_total") >= spec.min_episodes).drop("_total")
    grid = units.join(periods.select("period"), how="cross")
    panel = grid.join(cells, on=["bundle_id", "provider_agb", "period"], how="left").with_columns(
        pl.col("n_episodes").fill_null(0)
    )
    treated_cohorts = units.filter(pl.col("cohort") != NEVER_TREATED)["cohort"]
    first_cohort = int(treated_cohorts.min()) if treated_cohorts.len() else None
    if spec.covariates:
        pre = (
            kept.filter(pre_treatment(kept, spec, first_cohort))
            .group_by("bundle_id", "provider_agb")
            .agg([pl.col(c).mean().alias(c) for c in spec.covariates])
        )
        panel = panel.join(pre, on=["bundle_id", "provider_agb"], how="left")
    n_periods = periods.height
    panel = panel.with_columns(
        pl.col("n_episodes").cast(pl.Float64).alias("volume"),
        pl.when(pl.col("n_episodes") > 0)
        .then(pl.col("n_episodes").cast(pl.Float64).log())
        .otherwise(None)
        .alias("log_volume"),
        ((pl.col("n_episodes") > 0).sum().over("bundle_id", "provider_agb") == n_periods).alias("balanced"),
    )
    return panel.sort("bundle_id", "provider_agb", "period")


def finish_rows(
    frame: pl.DataFrame, spec: PanelSpec, periods: pl.DataFrame, maturity: pl.DataFrame, unit_id: pl.Expr
) -> pl.DataFrame:
    """The columns every unit shares: ``unit_id``, ``unit_num`` (1, 2, ... in ``unit_id`` order, for
    estimators that want a number), the period label, ``rel_time`` and ``treated``, ``weight``, the
    maturity of the period and, with ``adjust``, ``<outcome>_adjusted``."""
    frame = frame.with_columns(unit_id.alias("unit_id"))
    frame = frame.with_columns(pl.col("unit_id").rank("dense").cast(pl.Int64).alias("unit_num"))
    frame = treatment_columns(frame.join(periods.select("period", "period_label"), on="period", how="left"))
    frame = frame.join(maturity, on="period", how="left")
    if spec.weights == "episodes":
        weight = pl.col("n_episodes").cast(pl.Float64)
    elif spec.weights == "insured_years":
        weight = pl.col("insured_years").cast(pl.Float64)
    else:
        weight = pl.lit(1.0)
    frame = frame.with_columns(weight.alias("weight"))
    if spec.adjust:
        frame = frame.with_columns(
            [
                (pl.col(o) / pl.col("completion_cents" if o.endswith("_cents") else "completion_lines")).alias(
                    f"{o}_adjusted"
                )
                for o in spec.outcomes
            ]
        )
    return frame


__all__ = [
    "ATTRITION_SCHEMA",
    "BASE_COLUMNS",
    "QUARTER_OUTCOMES",
    "episode_quarters",
    "finish_rows",
    "number",
    "provider_periods",
    "select_episodes",
]

"""The provider benchmark of one bundle (``docs/panels-spec.md`` section 1): the rows of ``benchmark`` (in-bundle
cost, declared and standardised) and ``benchmark_outcomes`` (every binary outcome), per provider,
per province and nationally, before suppression.

The episodes come with their expected values from the bundle's case-mix models
(``transforms.panels.casemix``). Expected costs are scaled per anchor year so that they add up to
the observed total of that year (a Poisson model with year terms does this itself at its optimum;
the scaling removes the solver's last digits, so the national O/E is exactly 1 and a provider whose
episodes are copies of everyone else's has O/E exactly 1). O/E of a cost cell is computed from its
published integer cents, ``observed_cents / expected_cents``.

Comparison groups for the funnel limits and the overdispersion: the providers of one year and basis
(or outcome) among themselves, and the provinces among themselves. National rows carry the totals,
with no limits. A null outcome is counted as "did not happen" (the outcome was not observed).
"""

from __future__ import annotations

import polars as pl

from transforms.panels.bundle_costs import round_cents
from transforms.panels.funnel import benchmark_cells, cells

COST_BASES = {
    "declared": ("in_bundle_cents", "expected_declared"),
    "standardised": ("in_bundle_standardised_cents", "expected_standardised"),
}
FUNNEL_COLUMNS = [
    "cv_pooled",
    "se0",
    "limit95_low",
    "limit95_high",
    "limit998_low",
    "limit998_high",
    "phi",
    "tau2",
    "limit95_mult_low",
    "limit95_mult_high",
    "limit998_mult_low",
    "limit998_mult_high",
    "limit95_adj_low",
    "limit95_adj_high",
    "limit998_adj_low",
    "limit998_adj_high",
    "outlier",
    "oe_shrunk",
]


def expected_column(target: str) -> str:
    """Where the expected value of a case-mix target is kept on the episodes."""
    for y, yhat in COST_BASES.values():
        if target == y:
            return yhat
    return f"expected__{target}"


def calibrated(episodes: pl.DataFrame) -> pl.DataFrame:
    """Expected costs scaled per anchor year to the observed total (see the module docstring)."""
    scaled = []
    for y, yhat in COST_BASES.values():
        factor = pl.col(y).sum().over("anchor_year") / pl.col(yhat).sum().over("anchor_year")
        scaled.append((pl.col(yhat) * factor).alias(yhat))
    return episodes.with_columns(scaled)


def _levels(episodes: pl.DataFrame, y: str, yhat: str, kind: str) -> pl.DataFrame:
    """Provider, region and national cells of one measure, the first two with their funnel."""
    frame = episodes.with_columns(pl.col("anchor_year").cast(pl.Int32).alias("year"))
    providers = (
        benchmark_cells(frame, ["year", "provider_agb"], ["year"], y, yhat, kind)
        .join(
            frame.select("provider_agb", "region_code", "region_name").unique("provider_agb"),
            on="provider_agb",
            how="left",
        )
        .with_columns(pl.lit("provider").alias("level"), pl.col("provider_agb").alias("unit"))
    )
    regions = (
        benchmark_cells(frame, ["year", "region_code"], ["year"], y, yhat, kind)
        .join(frame.select("region_code", "region_name").unique("region_code"), on="region_code", how="left")
        .with_columns(
            pl.lit("region").alias("level"),
            pl.col("region_code").alias("unit"),
            pl.lit(None, pl.String).alias("provider_agb"),
        )
    )
    funnel_columns = [c for c in FUNNEL_COLUMNS if c in providers.columns]
    national = cells(frame, ["year"], y, yhat, kind).with_columns(
        pl.lit("national").alias("level"),
        pl.lit("NL").alias("unit"),
        pl.lit(None, pl.String).alias("provider_agb"),
        pl.lit(None, pl.String).alias("region_code"),
        pl.lit(None, pl.String).alias("region_name"),
        *[pl.lit(None, pl.Float64).alias(c) for c in funnel_columns if c != "outlier"],
        pl.lit(None, pl.String).alias("outlier"),
    )
    columns = national.columns
    return pl.concat([providers.select(columns), regions.select(columns), national])


def cost_rows(episodes: pl.DataFrame, bundle_id: str) -> pl.DataFrame:
    """The ``benchmark`` rows of a bundle (episodes: eligible, with ``provider_agb``, ``region_code``,
    ``region_name`` and the expected costs)."""
    episodes = calibrated(episodes)
    parts = []
    for basis, (y, yhat) in COST_BASES.items():
        rows = _levels(episodes, y, yhat, "cost")
        expected_cents = round_cents(pl.col("expected"))
        parts.append(
            rows.with_columns(
                pl.lit(basis).alias("cost_basis"),
                pl.col("n").alias("n_episodes"),
                pl.col("observed").cast(pl.Int64).alias("observed_cents"),
                expected_cents.alias("expected_cents"),
                round_cents(pl.col("observed") / pl.col("n")).alias("mean_observed_cents"),
                round_cents(pl.col("expected") / pl.col("n")).alias("mean_expected_cents"),
                pl.when(expected_cents != 0)
                .then(pl.col("observed").cast(pl.Float64) / expected_cents.cast(pl.Float64))
                .alias("oe"),
            )
        )
    return pl.concat(parts).with_columns(pl.lit(bundle_id).alias("bundle_id"))


def outcome_rows(
    episodes: pl.DataFrame, bundle_id: str, outcomes: list[str], skipped: dict[str, str] | None = None
) -> pl.DataFrame:
    """The ``benchmark_outcomes`` rows of a bundle's binary outcomes. An outcome that never (or
    always) occurs has no expected rate strictly between 0 and 1 and cannot be compared: it is left
    out and named in ``skipped`` with the reason."""
    parts = []
    for outcome in outcomes:
        frame = episodes.with_columns(pl.col(outcome).fill_null(False))
        p = pl.col(expected_column(outcome))
        if frame.filter((p <= 0) | (p >= 1) | p.is_null()).height:
            if skipped is not None:
                skipped[outcome] = f"rate {frame[outcome].mean():.3f}: no variation to compare providers on"
            continue
        rows = _levels(frame, outcome, expected_column(outcome), "binary")
        parts.append(
            rows.with_columns(
                pl.lit(outcome).alias("outcome"), pl.col("n").alias("n_episodes"), pl.col("observed").cast(pl.Int64)
            )
        )
    if not parts:
        return pl.DataFrame()
    return pl.concat(parts).with_columns(pl.lit(bundle_id).alias("bundle_id"))

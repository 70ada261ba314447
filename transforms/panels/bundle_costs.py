"""Bundle costs (``docs/panels-spec.md`` section 2): the distribution of episode costs per component and phase.

For one bundle and anchor year, every eligible episode gets its allocated cost (declared and
standardised, from ``episode_lines``) per component (``in_bundle``, ``msz_other``, ``gp``,
``pharmacy``, ``paramedical``, ``maternity``, and their ``total``) and phase: ``pre`` (lines
starting before the anchor day), ``index`` (the triggering claim line), ``post`` (every other line);
birth care has its own four phases instead (``prenatal``, ``natal``, ``postnatal``,
``maternity_care``, set on the lines by the episode engine). ``all`` is the whole episode. An
episode without a line in a component and phase counts as 0 there, so every cell of a bundle and
year describes the same episodes.

Per cell (the country, and every anchor provider): n, mean, median and the 10th to 99th
percentiles (linear interpolation), the total, and a winsorised mean (each episode capped at the
national percentile ``winsorise_pct`` of its bundle, year, basis, component and phase, so that
providers are capped at the same level). Money is integer cents, rounded half away from zero once.
"""

from __future__ import annotations

import polars as pl

COMPONENTS = ("in_bundle", "msz_other", "gp", "pharmacy", "paramedical", "maternity")
PHASES = ("pre", "index", "post")
BIRTH_PHASES = ("prenatal", "natal", "postnatal", "maternity_care")
PERCENTILES = {
    "p10_cents": 0.10,
    "p25_cents": 0.25,
    "median_cents": 0.50,
    "p75_cents": 0.75,
    "p90_cents": 0.90,
    "p95_cents": 0.95,
    "p99_cents": 0.99,
}
DEFAULT_WINSORISE_PCT = 99.0
BASES = {"declared": "allocated_cents", "standardised": "allocated_standardised_cents"}


def round_cents(expr: pl.Expr) -> pl.Expr:
    """Half away from zero to a whole number of cents (polars rounds half to even)."""
    return (expr.sign() * (expr.abs() + 0.5).floor()).cast(pl.Int64)


def phases_of(bundle_id: str) -> tuple[str, ...]:
    return BIRTH_PHASES if bundle_id == "birth_care" else PHASES


def episode_costs(episodes: pl.DataFrame, lines: pl.DataFrame, bundle_id: str) -> pl.DataFrame:
    """One row per eligible episode x basis x component x phase with its cost in cents (0 where it
    has none): columns ``episode_id``, ``provider_agb``, ``cost_basis``, ``component``, ``phase``,
    ``cents``."""
    keys = episodes.select(
        "episode_id",
        pl.col("anchor_provider_agb").alias("provider_agb"),
        "anchor_claim_id",
        "anchor_table",
        "anchor_date",
    )
    phases = phases_of(bundle_id)
    if lines.height:
        lines = lines.join(keys, on="episode_id", how="inner")
        if bundle_id == "birth_care":
            phase = pl.col("phase")
        else:
            phase = (
                pl.when(
                    (pl.col("claim_id") == pl.col("anchor_claim_id"))
                    & (pl.col("source_table") == pl.col("anchor_table"))
                )
                .then(pl.lit("index"))
                .when(pl.col("start") < pl.col("anchor_date"))
                .then(pl.lit("pre"))
                .otherwise(pl.lit("post"))
            )
        long = pl.concat(
            [
                lines.select(
                    "episode_id",
                    "component",
                    phase.alias("phase"),
                    pl.lit(basis).alias("cost_basis"),
                    pl.col(column).alias("cents"),
                )
                for basis, column in BASES.items()
            ]
        )
        sums = long.group_by("episode_id", "cost_basis", "component", "phase").agg(pl.col("cents").sum())
        by_component = (
            sums.group_by("episode_id", "cost_basis", "component")
            .agg(pl.col("cents").sum())
            .with_columns(pl.lit("all").alias("phase"))
        )
        cells = pl.concat([sums, by_component.select(sums.columns)])
        totals = (
            cells.group_by("episode_id", "cost_basis", "phase")
            .agg(pl.col("cents").sum())
            .with_columns(pl.lit("total").alias("component"))
        )
        cells = pl.concat([cells, totals.select(cells.columns)])
    else:
        cells = pl.DataFrame(
            schema={
                "episode_id": pl.String,
                "cost_basis": pl.String,
                "component": pl.String,
                "phase": pl.String,
                "cents": pl.Int64,
            }
        )
    grid = (
        pl.DataFrame({"cost_basis": list(BASES)})
        .join(pl.DataFrame({"component": [*COMPONENTS, "total"]}), how="cross")
        .join(pl.DataFrame({"phase": ["all", *phases]}), how="cross")
    )
    full = keys.select("episode_id", "provider_agb").join(grid, how="cross")
    return full.join(cells, on=["episode_id", "cost_basis", "component", "phase"], how="left").with_columns(
        pl.col("cents").fill_null(0).cast(pl.Int64)
    )


def _stats(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    return frame.group_by(by).agg(
        pl.len().cast(pl.Int64).alias("n_episodes"),
        round_cents(pl.col("cents").mean()).alias("mean_cents"),
        *[
            round_cents(pl.col("cents").quantile(q, interpolation="linear")).alias(name)
            for name, q in PERCENTILES.items()
        ],
        round_cents(pl.col("_capped").mean()).alias("winsorised_mean_cents"),
        pl.col("cents").sum().cast(pl.Int64).alias("total_cents"),
    )


def bundle_costs(
    episodes: pl.DataFrame, lines: pl.DataFrame, bundle_id: str, year: int, winsorise_pct: float = DEFAULT_WINSORISE_PCT
) -> pl.DataFrame:
    """The ``bundle_costs`` rows of one bundle and anchor year (before suppression)."""
    costs = episode_costs(episodes, lines, bundle_id)
    cell = ["cost_basis", "component", "phase"]
    caps = costs.group_by(cell).agg(pl.col("cents").quantile(winsorise_pct / 100, interpolation="linear").alias("_cap"))
    costs = costs.join(caps, on=cell).with_columns(pl.min_horizontal("cents", "_cap").alias("_capped"))
    national = _stats(costs, cell).with_columns(
        pl.lit("national").alias("level"), pl.lit("NL").alias("unit"), pl.lit(None, pl.String).alias("provider_agb")
    )
    providers = _stats(costs, ["provider_agb", *cell]).with_columns(
        pl.lit("provider").alias("level"), pl.col("provider_agb").alias("unit")
    )
    out = pl.concat([national, providers.select(national.columns)])
    return out.with_columns(
        pl.lit(bundle_id).alias("bundle_id"),
        pl.lit(year, pl.Int32).alias("year"),
        pl.lit(None, pl.String).alias("region_code"),
    )

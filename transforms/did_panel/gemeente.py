"""Unit ``gemeente_year``: the Vektis regional panel, one row per CBS gemeente and year.

The rows come from the harmonised Vektis table (``zorgpad ingest-vektis``, ``docs/vektis.md``),
release ``final`` only, of every year of the spec (a spec whose years the ``--vektis`` folder does
not all hold is refused in the preflight). A Vektis *cell* is one row of an original file: a
gemeente x sex x age class of one year and release (and one unknown-gemeente row per file); the
cells of a gemeente and year are summed into its row, in exact integer cents:

- outcomes (:data:`OUTCOMES`): ``insured_years`` and ``insured``; ``total_cents_per_insured_year``
  (every Zvw cost category / insured-years, in cents) and one ``<category>_cents_per_insured_year``
  per coarse Vektis cost category (null in a year whose file has no column of that category, e.g.
  ``rehabilitation_nursing`` before 2013);
- covariates (:data:`COVARIATES`): ``share_female``, ``share_65_plus`` and ``mean_age`` (age-class
  midpoints, 92.5 for 90+), weighted by insured-years, each fixed before treatment: the mean of the
  gemeente's yearly values in its pre-treatment years (as ``provider_period`` fixes its covariates);
- treatment: the cohort of a gemeente is the year of the first contract start (for the spec's
  bundles, whichever insurer) of any provider located in it (the store's ``providers.gemeente_code``);
  0 = never treated within the panel; a gemeente whose first start lies before the first year has
  no pre-period and is left out (its cells counted);
- ``n_episodes``: the episodes of the spec's bundles (after the spec's filters) whose patient lived
  in the gemeente at the anchor, in the anchor year; ``balanced``: the gemeente has a row in every
  year of the panel (a gemeente merged after 2020 loses its CBS code in Vektis from the merger on).

What is left out is counted (:func:`attrition`): per bundle the episodes, as for the other units,
and in the block ``vektis`` the Vektis cells (first release, years outside the panel, no CBS code,
gemeente treated before the first year), each block adding up to what the panel holds.

The build runs in the steps of ``transforms.did_panel.run``: one extra partition task (bundle
:data:`VEKTIS_PART`) reads the Vektis folder (:func:`read_vektis`) and writes the gemeente-year rows
(:func:`vektis_part`); the bundle partitions count their episodes per gemeente and year
(:func:`resident_episodes`); both are written in one schema (:data:`PART_SCHEMA`) so the assemble
step concatenates them, and :func:`unit_rows` joins the counts onto the rows.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from transforms.did_panel.periods import AFTER_LAST, BEFORE_FIRST, IN_PANEL, NEVER, NEVER_TREATED
from transforms.did_panel.spec import PanelSpec
from transforms.did_panel.units import ATTRITION_SCHEMA, pre_treatment, within_spec
from transforms.vektis.columns import CATEGORIES, CATEGORY_DESCRIPTIONS, POPULATION

UNIT = "gemeente_year"
#: The bundle name of the partition that reads the Vektis folder (and of its attrition block).
VEKTIS_PART = "vektis"
FINAL = "final"
LONG_DIR = "vektis_long"
COST_CATEGORIES = tuple(c for c in CATEGORIES if c != POPULATION)

#: Outcome name -> meaning (the spec's outcomes of a gemeente_year panel are among these).
OUTCOMES: dict[str, str] = {
    "total_cents_per_insured_year": "Zvw cost of the gemeente's insured in the year, all categories, per insured-year "
    "(cents; Vektis)",
    **{
        f"{c}_cents_per_insured_year": f"Zvw cost of {CATEGORY_DESCRIPTIONS[c]} per insured-year (cents; Vektis; null "
        "in a year whose file has no column of this category)"
        for c in COST_CATEGORIES
    },
    "insured_years": "insured-years (person-years) of the gemeente's insured in the year (Vektis)",
    "insured": "insured persons of the gemeente in the year (Vektis, cells of at least 10 insured)",
}
#: Covariate name -> meaning (per year, weighted by insured-years; fixed before treatment in the panel).
COVARIATES: dict[str, str] = {
    "share_female": "share of the insured-years that are women's (sex V)",
    "share_65_plus": "share of the insured-years of insured aged 65 or over",
    "mean_age": "mean age of the insured-years (age-class midpoints: 2.5, 7.5, ..., 92.5 for 90+)",
}
#: The columns every gemeente_year partition writes (episode counts and Vektis rows alike).
PART_SCHEMA: dict[str, pl.DataType] = {
    "part": pl.String(),
    "bundle_id": pl.String(),
    "gemeente_code": pl.String(),
    "period": pl.Int32(),
    "n_episodes": pl.Int64(),
    "cohort": pl.Int32(),
    "cohort_status": pl.String(),
    "n_cells": pl.Int64(),
    "balanced": pl.Boolean(),
    **{o: pl.Float64() for o in OUTCOMES},
    **{c: pl.Float64() for c in COVARIATES},
}
EPISODE_COLUMNS = ("episode_id", "anchor_date", "gemeente_code")
_CELL = ("year", "release", "gemeente_vektis", "gemeente_code", "sex", "age_class", "age_min")


def describe(column: str) -> str:
    """The dictionary's meaning of a gemeente_year outcome or covariate."""
    if column in COVARIATES:
        return f"{COVARIATES[column]}: mean over the gemeente's years before treatment (fixed)"
    return OUTCOMES[column]


def panel_bundle(spec: PanelSpec) -> str:
    """The ``bundle_id`` of a gemeente_year panel: its bundles joined by ``+``."""
    return "+".join(spec.bundles)


# ------------------------------------------------------------------------------ the Vektis folder
def final_years(manifest: dict) -> list[int]:
    """The years of a Vektis folder's final release (from its manifest)."""
    return sorted(int(r.split("/")[0]) for r in manifest.get("releases", []) if r.endswith(f"/{FINAL}"))


def read_vektis(folder: Path | str) -> pl.LazyFrame:
    """The harmonised long table of a Vektis folder (every year and release), lazily."""
    return pl.scan_parquet(
        Path(folder) / LONG_DIR / "year=*" / "*.parquet", hive_partitioning=True, hive_schema={"year": pl.Int16}
    )


def vektis_cells(long: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """One row per Vektis cell (year, release, gemeente, sex, age class) with its insured-years
    (``insured_years_centi``: hundredths, exact), insured, the cents of every cost category
    (``<category>_cents``) and ``categories``: the cost categories its file has a column of."""
    lazy = long.lazy()
    present = (
        lazy.filter(pl.col("category") != POPULATION)
        .group_by("year", "release")
        .agg(pl.col("category").unique().sort().alias("categories"))
    )
    sums = [
        pl.col("value_cents").filter(pl.col("measure") == "insured_years").sum().alias("insured_years_centi"),
        (pl.col("value_cents").filter(pl.col("measure") == "insured").sum() // 100).alias("insured"),
        *[pl.col("value_cents").filter(pl.col("category") == c).sum().alias(f"{c}_cents") for c in COST_CATEGORIES],
    ]
    cells = lazy.group_by(*_CELL).agg(*sums).join(present, on=["year", "release"], how="left")
    return cells.collect().with_columns(pl.col("year").cast(pl.Int32)).sort(*_CELL, nulls_last=True)


def gemeente_cohorts(cohorts: pl.DataFrame, providers: pl.DataFrame, years: tuple[int, int]) -> pl.DataFrame:
    """Per gemeente with a contracted provider: ``contract_start`` (the first of its providers'
    first starts, from ``periods.provider_cohorts``), ``cohort`` (its year; 0 after the last year),
    ``cohort_status`` and ``treated_providers``."""
    first_day, last_day = date(years[0], 1, 1), date(years[1], 12, 31)
    located = cohorts.join(providers.select("provider_agb", "gemeente_code"), on="provider_agb", how="inner")
    grouped = (
        located.drop_nulls("gemeente_code")
        .group_by("gemeente_code")
        .agg(
            pl.col("contract_start").min(), pl.col("provider_agb").n_unique().cast(pl.Int64).alias("treated_providers")
        )
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
        .then(pl.col("contract_start").dt.year())
        .otherwise(pl.lit(NEVER_TREATED))
        .cast(pl.Int32)
    )
    return grouped.with_columns(cohort.alias("cohort"), status.alias("cohort_status")).sort("gemeente_code")


def _conform(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        [pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c) for c, t in PART_SCHEMA.items()]
    )


def vektis_part(cells: pl.DataFrame, cohorts: pl.DataFrame, spec: PanelSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The gemeente-year rows of the panel (in :data:`PART_SCHEMA`) from the Vektis cells and the
    gemeente cohorts, and the attrition rows of the cells (step, reason, bundle ``vektis``, cells)."""
    first, last = spec.years
    steps: list[tuple[str, int]] = []
    frame = cells
    kept = frame.filter(pl.col("release") == FINAL)
    steps.append(("Vektis cells of the first 2015 release (the final release is used)", frame.height - kept.height))
    frame = kept
    kept = frame.filter(pl.col("year").is_between(first, last))
    steps.append((f"Vektis cells of a year outside {first}-{last}", frame.height - kept.height))
    frame = kept
    kept = frame.filter(pl.col("gemeente_code").is_not_null())
    steps.append(
        (
            "Vektis cells without a CBS gemeente code (the unknown-gemeente row, or a name without a 2020 code)",
            frame.height - kept.height,
        )
    )
    frame = kept.join(cohorts.select("gemeente_code", "cohort", "cohort_status"), on="gemeente_code", how="left")
    frame = frame.with_columns(pl.col("cohort").fill_null(NEVER_TREATED), pl.col("cohort_status").fill_null(NEVER))
    kept = frame.filter(pl.col("cohort_status") != BEFORE_FIRST)
    steps.append(
        ("Vektis cells of a gemeente treated before the first period (no pre-period)", frame.height - kept.height)
    )
    rows = _gemeente_years(kept, spec)
    attrition = pl.DataFrame(
        [(i + 1, reason, VEKTIS_PART, n) for i, (reason, n) in enumerate(steps)], schema=ATTRITION_SCHEMA, orient="row"
    )
    return _conform(rows), attrition


def _quotient(frame: pl.DataFrame, numerator: str, denominator: str | int, up: int = 1, down: int = 1) -> pl.Series:
    """``numerator * up / (denominator * down)`` of integer sums (below 2**53, so exact as floats)
    as the float nearest the exact ratio: numpy's IEEE division (polars divides through a
    reciprocal, which can be one unit in the last place off)."""
    top = frame[numerator].to_numpy().astype(np.int64) * up
    bottom = (
        frame[denominator].to_numpy().astype(np.int64)
        if isinstance(denominator, str)
        else np.full(frame.height, denominator, dtype=np.int64)
    ) * down
    return pl.Series(top.astype(np.float64) / bottom.astype(np.float64), dtype=pl.Float64)


def _gemeente_years(cells: pl.DataFrame, spec: PanelSpec) -> pl.DataFrame:
    """Sum the kept cells per gemeente and year into its outcomes and (yearly) covariates, then fix
    the covariates before treatment and flag the balanced gemeenten."""
    centi = pl.col("insured_years_centi")
    sums = {
        "_centi": centi.sum(),
        "_female": centi.filter(pl.col("sex") == "V").sum(),
        "_older": centi.filter(pl.col("age_min") >= 65).sum(),
        "_age2": (centi * (2 * pl.col("age_min").cast(pl.Int64) + 5)).sum(),  # twice the class midpoint
        **{f"_{c}": pl.col(f"{c}_cents").sum() for c in COST_CATEGORIES},
    }
    grouped = cells.group_by("gemeente_code", pl.col("year").alias("period")).agg(
        pl.col("cohort").first(),
        pl.col("cohort_status").first(),
        pl.len().cast(pl.Int64).alias("n_cells"),
        pl.col("categories").first(),
        pl.col("insured").sum().cast(pl.Float64),
        *[e.alias(n) for n, e in sums.items()],
    )
    grouped = grouped.with_columns(pl.sum_horizontal([f"_{c}" for c in COST_CATEGORIES]).alias("_total"))
    # (numerator, denominator, numerator factor, denominator factor): insured-years are hundredths
    quotients = {
        "insured_years": ("_centi", 100, 1, 1),
        "total_cents_per_insured_year": ("_total", "_centi", 100, 1),
        **{f"{c}_cents_per_insured_year": (f"_{c}", "_centi", 100, 1) for c in COST_CATEGORIES},
        "share_female": ("_female", "_centi", 1, 1),
        "share_65_plus": ("_older", "_centi", 1, 1),
        "mean_age": ("_age2", "_centi", 1, 2),
    }
    grouped = grouped.with_columns([_quotient(grouped, *how).alias(out) for out, how in quotients.items()])
    # a category its year's file has no column of is not published (null), not zero
    grouped = grouped.with_columns(
        [
            pl.when(pl.col("categories").list.contains(c))
            .then(pl.col(f"{c}_cents_per_insured_year"))
            .otherwise(None)
            .alias(f"{c}_cents_per_insured_year")
            for c in COST_CATEGORIES
        ]
    ).drop("categories", *sums, "_total")
    grouped = grouped.with_columns(pl.col("period").cast(pl.Int32), pl.col("cohort").cast(pl.Int32))
    treated = grouped.filter(pl.col("cohort") != NEVER_TREATED)["cohort"]
    first_cohort = int(treated.min()) if treated.len() else None
    pre = (
        grouped.filter(pre_treatment(grouped, spec, first_cohort))
        .group_by("gemeente_code")
        .agg([pl.col(c).mean() for c in COVARIATES])
    )
    n_years = spec.years[1] - spec.years[0] + 1
    rows = (
        grouped.drop(*COVARIATES)
        .join(pre, on="gemeente_code", how="left")
        .with_columns(
            pl.lit("vektis").alias("part"),
            pl.lit(panel_bundle(spec)).alias("bundle_id"),
            (pl.len().over("gemeente_code") == n_years).alias("balanced"),
        )
    )
    return rows.sort("gemeente_code", "period")


# ------------------------------------------------------------------------------ the episodes
def resident_episodes(episodes: pl.DataFrame, spec: PanelSpec, bundle_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One partition's episodes counted per gemeente of the patient at the anchor and anchor year
    (in :data:`PART_SCHEMA`), and its attrition rows: anchor outside the years, each filter, no
    gemeente. Whether a gemeente-year is a row of the panel is known only when assembling."""
    frame, steps = within_spec(episodes, spec)
    kept = frame.filter(pl.col("gemeente_code").is_not_null())
    steps.append(("patient's gemeente at the anchor unknown", frame.height - kept.height))
    counts = (
        kept.group_by("gemeente_code", pl.col("anchor_date").dt.year().cast(pl.Int32).alias("period"))
        .agg(pl.len().cast(pl.Int64).alias("n_episodes"))
        .with_columns(pl.lit("episodes").alias("part"), pl.lit(bundle_id).alias("bundle_id"))
        .sort("gemeente_code", "period")
    )
    attrition = pl.DataFrame(
        [(i + 1, reason, bundle_id, n) for i, (reason, n) in enumerate(steps)], schema=ATTRITION_SCHEMA, orient="row"
    )
    return _conform(counts), attrition


# ------------------------------------------------------------------------------ assemble
def unit_rows(kept: pl.DataFrame) -> pl.DataFrame:
    """The panel rows (before the shared columns): the Vektis gemeente-years with ``n_episodes``,
    the episodes of the spec's bundles of the gemeente's residents that year (0 when none)."""
    rows = kept.filter(pl.col("part") == "vektis").drop("n_episodes")
    counts = (
        kept.filter(pl.col("part") == "episodes").group_by("gemeente_code", "period").agg(pl.col("n_episodes").sum())
    )
    return (
        rows.join(counts, on=["gemeente_code", "period"], how="left")
        .with_columns(
            pl.col("n_episodes").fill_null(0),
            pl.lit(None, pl.String).alias("provider_agb"),
            pl.lit(None, pl.Int64).alias("n_lines"),
        )
        .drop("part")
        .sort("gemeente_code", "period")
    )


def attrition(reports: list[dict], kept: pl.DataFrame) -> pl.DataFrame:
    """Per bundle the episodes read, what each step left out (the last: a gemeente-year that is no
    row of the panel) and the episodes counted in ``n_episodes``; in block ``vektis`` the Vektis
    cells read, left out and in the panel's rows. Every block adds up (checked)."""
    rows = pl.DataFrame([r for rep in reports for r in rep["attrition"]], schema=ATTRITION_SCHEMA)
    read = (
        pl.DataFrame(
            [(rep["bundle_id"], rep["episodes"]) for rep in reports],
            schema={"bundle_id": pl.String, "read": pl.Int64},
            orient="row",
        )
        .group_by("bundle_id")
        .agg(pl.col("read").sum())
    )
    steps = rows.group_by("bundle_id", "step", "reason").agg(pl.col("episodes").sum()).sort("bundle_id", "step")
    panel = kept.filter(pl.col("part") == "vektis")
    keys = panel.select("gemeente_code", "period").with_columns(pl.lit(True).alias("_in_panel"))
    counted = kept.filter(pl.col("part") == "episodes").join(keys, on=["gemeente_code", "period"], how="left")
    counted = counted.with_columns(pl.col("_in_panel").fill_null(False))
    out = []
    for bundle, n_read in read.sort("bundle_id").iter_rows():
        remaining = n_read
        noun = "Vektis cells" if bundle == VEKTIS_PART else "episodes"
        out.append((bundle, 0, f"{noun} read", n_read, remaining))
        own = steps.filter(pl.col("bundle_id") == bundle)
        for _, step, reason, n in own.iter_rows():
            remaining -= n
            out.append((bundle, step, reason, n, remaining))
        if bundle == VEKTIS_PART:
            n_kept = int(panel["n_cells"].sum())
            last = "kept: Vektis cells summed into the panel's rows"
        else:
            mine = counted.filter(pl.col("bundle_id") == bundle)
            outside = int(mine.filter(~pl.col("_in_panel"))["n_episodes"].sum())
            remaining -= outside
            out.append(
                (
                    bundle,
                    len(own) + 1,
                    "patient's gemeente-year is no row of the panel (not in Vektis, or the gemeente left out)",
                    outside,
                    remaining,
                )
            )
            n_kept = int(mine.filter(pl.col("_in_panel"))["n_episodes"].sum())
            last = "kept: counted in n_episodes"
        if n_kept != remaining:
            raise AssertionError(f"{bundle}: {remaining} {noun} should remain, the panel has {n_kept}")
        out.append((bundle, out[-1][1] + 1, last, n_kept, n_kept))
    return pl.DataFrame(
        out,
        schema={
            "bundle_id": pl.String,
            "step": pl.Int32,
            "reason": pl.String,
            "episodes": pl.Int64,
            "remaining": pl.Int64,
        },
        orient="row",
    )


__all__ = [
    "COST_CATEGORIES",
    "COVARIATES",
    "OUTCOMES",
    "PART_SCHEMA",
    "UNIT",
    "VEKTIS_PART",
    "attrition",
    "describe",
    "final_years",
    "gemeente_cohorts",
    "panel_bundle",
    "read_vektis",
    "resident_episodes",
    "unit_rows",
    "vektis_cells",
    "vektis_part",
]

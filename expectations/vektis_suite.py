"""Great Expectations (1.x) validation of the harmonised Vektis table.

Two suites, because they look at two different things:

``vektis_long``
    The harmonised long table itself: exact columns, no nulls where a value is required, sex /
    age class / gemeente null *only* on the unknown-gemeente row, canonical codes, every requested
    (year, release) present, one row per cell and measure, counts never negative.

``vektis_reconciliation``
    Nothing lost, nothing invented: for every original column of every requested file, the number
    of harmonised rows equals the number of cells in the raw file and the harmonised total in cents
    equals the raw column total. The raw totals are computed here independently of the harmoniser:
    from the untouched bundled parquet, with polars' Decimal(38, 2) parsing instead of the
    harmoniser's own integer-cents parser, and joined on the original column name, so a mapping
    error, a dropped cell or a parsing error all show up as a failed expectation.

Costs are *not* required to be non-negative: the real files contain a few negative cost cells
every year (credit lines larger than the cell's declarations, e.g. -68,040.91 abroad in 2021).
Those are data, not errors; the suite only requires that at least 99.9% of cost cells are >= 0, so
a sign flip of a whole column still fails.

``validate_vektis`` runs both and returns a JSON-serialisable summary; given an output folder it
uses a file-based GX context there and builds Data Docs (``data_docs/index.html``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
import polars as pl
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.expectations.row_conditions import Column

from expectations.data_docs import localise_static_links
from transforms.vektis.columns import CATEGORIES, MEASURE_NAMES, POPULATION, is_key_column
from transforms.vektis.harmonise import (
    AGE_CLASSES,
    AGE_MIN,
    LONG_SCHEMA,
    RELEASES,
    SEXES,
    VektisRelease,
    read_raw,
    select_releases,
)

LONG_SUITE_NAME = "vektis_long"
RECONCILIATION_SUITE_NAME = "vektis_reconciliation"
DATA_DOCS_SITE = "vektis_data_docs"
# Share of cost cells that must be >= 0; the real files have at most ~20 negative cells a year.
MIN_SHARE_NON_NEGATIVE_COSTS = 0.999

CELL_KEY = ["year", "release", "gemeente_vektis", "sex", "age_class", "measure"]


def dataset_label(year: int, release: str) -> str:
    """``2015/first_release``: how a file is named in the reconciliation table."""
    return f"{year}/{release}"


# --- independent reconciliation against the raw files -------------------------------------------


def raw_column_totals(releases: Iterable[VektisRelease]) -> pl.DataFrame:
    """Per original measure column of each raw file: number of cells and exact total in cents.

    Deliberately shares no parsing code with the harmoniser: polars' Decimal(38, 2) cast of the
    text, summed as Decimal and converted to cents in Python.
    """
    rows: list[dict[str, Any]] = []
    for r in releases:
        raw = read_raw(r)
        measure_columns = [c for c in raw.columns if not is_key_column(c)]
        sums = raw.select([pl.col(c).cast(pl.Decimal(38, 2)).sum().alias(c) for c in measure_columns]).row(0)
        for column, total in zip(measure_columns, sums, strict=True):
            rows.append(
                {
                    "dataset": dataset_label(r.year, r.release),
                    "year": r.year,
                    "release": r.release,
                    "source_column": column,
                    "raw_cells": raw.height,
                    "raw_total_cents": int(Decimal(total) * 100),
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "dataset": pl.String,
            "year": pl.Int16,
            "release": pl.String,
            "source_column": pl.String,
            "raw_cells": pl.Int64,
            "raw_total_cents": pl.Int64,
        },
    )


def reconcile(long: pl.DataFrame, releases: Iterable[VektisRelease]) -> pl.DataFrame:
    """Raw versus harmonised, per (file, original column); a full join so a lost column shows."""
    harmonised = long.group_by("year", "release", "source_column").agg(
        pl.col("measure").first(),
        pl.len().cast(pl.Int64).alias("harmonised_rows"),
        pl.col("value_cents").sum().alias("harmonised_total_cents"),
    )
    raw = raw_column_totals(releases)
    return (
        raw.join(harmonised, on=["year", "release", "source_column"], how="full", coalesce=True)
        .with_columns(
            pl.coalesce("dataset", pl.format("{}/{}", "year", "release")).alias("dataset"),
            (pl.col("raw_total_cents") == pl.col("harmonised_total_cents")).fill_null(False).alias("totals_equal"),
            (pl.col("raw_cells") == pl.col("harmonised_rows")).fill_null(False).alias("cells_equal"),
        )
        .sort("year", "release", "source_column")
        .select(
            "dataset",
            "year",
            "release",
            "source_column",
            "measure",
            "raw_cells",
            "harmonised_rows",
            "raw_total_cents",
            "harmonised_total_cents",
            "totals_equal",
            "cells_equal",
        )
    )


# --- the suites -------------------------------------------------------------------------------


def build_long_suite(years: Iterable[int], releases: Iterable[str]) -> gx.ExpectationSuite:
    """Expectations on the harmonised long table for the given years and releases."""
    known_gemeente = Column("gemeente_vektis").is_not_null()
    unknown_gemeente = Column("gemeente_vektis").is_null()
    suite = gx.ExpectationSuite(name=LONG_SUITE_NAME)
    expectations: list[gxe.Expectation] = [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=list(LONG_SCHEMA)),
        *[
            gxe.ExpectColumnValuesToNotBeNull(column=c)
            for c in (
                "year",
                "release",
                "measure",
                "category",
                "value",
                "value_cents",
                "source_column",
            )
        ],
        gxe.ExpectColumnDistinctValuesToEqualSet(column="year", value_set=sorted(set(years))),
        gxe.ExpectColumnDistinctValuesToEqualSet(column="release", value_set=sorted(set(releases))),
        gxe.ExpectColumnValuesToBeInSet(column="release", value_set=list(RELEASES)),
        gxe.ExpectColumnValuesToBeInSet(column="sex", value_set=list(SEXES)),
        gxe.ExpectColumnValuesToBeInSet(column="age_class", value_set=list(AGE_CLASSES)),
        gxe.ExpectColumnValuesToBeInSet(column="age_min", value_set=sorted(set(AGE_MIN.values()))),
        gxe.ExpectColumnValuesToBeInSet(column="measure", value_set=list(MEASURE_NAMES)),
        gxe.ExpectColumnValuesToBeInSet(column="category", value_set=list(CATEGORIES)),
        gxe.ExpectColumnValuesToMatchRegex(column="gemeente_code", regex=r"^GM\d{4}$"),
        # sex, age class (and a code) are missing only on the unknown-gemeente row.
        *[
            gxe.ExpectColumnValuesToNotBeNull(column=c, row_condition=known_gemeente)
            for c in ("sex", "age_class", "age_min")
        ],
        *[
            gxe.ExpectColumnValuesToBeNull(column=c, row_condition=unknown_gemeente)
            for c in ("sex", "age_class", "age_min", "gemeente_code")
        ],
        gxe.ExpectCompoundColumnsToBeUnique(column_list=CELL_KEY, ignore_row_if="never"),
        # Counts of persons and insured-years can never be negative; costs can (credit lines).
        gxe.ExpectColumnValuesToBeBetween(column="value", min_value=0, row_condition=Column("category") == POPULATION),
        gxe.ExpectColumnValuesToBeBetween(
            column="value",
            min_value=0,
            mostly=MIN_SHARE_NON_NEGATIVE_COSTS,
            row_condition=Column("category") != POPULATION,
        ),
    ]
    for expectation in expectations:
        suite.add_expectation(expectation)
    return suite


def build_reconciliation_suite(datasets: Iterable[str], n_columns: int) -> gx.ExpectationSuite:
    """Expectations on the raw-versus-harmonised table: every cell and every cent accounted for."""
    suite = gx.ExpectationSuite(name=RECONCILIATION_SUITE_NAME)
    expectations: list[gxe.Expectation] = [
        gxe.ExpectColumnDistinctValuesToEqualSet(column="dataset", value_set=sorted(set(datasets))),
        gxe.ExpectTableRowCountToEqual(value=n_columns),
        *[
            gxe.ExpectColumnValuesToNotBeNull(column=c)
            for c in (
                "measure",
                "raw_cells",
                "harmonised_rows",
                "raw_total_cents",
                "harmonised_total_cents",
            )
        ],
        gxe.ExpectColumnPairValuesToBeEqual(column_A="raw_cells", column_B="harmonised_rows"),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="raw_total_cents", column_B="harmonised_total_cents"),
    ]
    for expectation in expectations:
        suite.add_expectation(expectation)
    return suite


# --- running ----------------------------------------------------------------------------------


@dataclass
class VektisValidation:
    """Outcome of :func:`validate_vektis`: overall success, a JSON summary, where the docs are."""

    success: bool
    summary: dict[str, Any]
    reconciliation: pl.DataFrame
    data_docs_index: Path | None = None
    results: dict[str, Any] = field(default_factory=dict, repr=False)


def _to_pandas(df: pl.DataFrame) -> pd.DataFrame:
    """Pandas for GX, with text columns as categoricals.

    Why: pandas 3 stores text in Arrow arrays, and every row-conditioned expectation takes a row
    subset of the whole frame; on 4.5 million rows Arrow ``take`` made validation ~5x slower than
    with categoricals (integer codes). Values and nulls are unchanged.
    """
    frame = df.to_pandas()
    for name, dtype in df.schema.items():
        if dtype == pl.String:
            frame[name] = frame[name].astype("category")
    return frame


def _summarise(result: Any) -> dict[str, Any]:
    failed = []
    for r in result.results:
        if not r.success:
            cfg = r.expectation_config
            observed = {
                k: r.result.get(k)
                for k in ("observed_value", "unexpected_count", "unexpected_percent")
                if k in r.result
            }
            partial = r.result.get("partial_unexpected_list")
            if partial:
                observed["partial_unexpected_list"] = [str(x) for x in partial[:5]]
            failed.append(
                {
                    "expectation": cfg.type,
                    "kwargs": _jsonable(cfg.kwargs),
                    "result": _jsonable(observed),
                }
            )
    stats = result.statistics
    return {
        "suite": result.suite_name,
        "success": bool(result.success),
        "evaluated_expectations": int(stats["evaluated_expectations"]),
        "successful_expectations": int(stats["successful_expectations"]),
        "unsuccessful_expectations": int(stats["unsuccessful_expectations"]),
        "failed": failed,
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def validate_vektis(
    long: pl.DataFrame,
    years: Iterable[int] | None = None,
    include_first_release: bool = True,
    out_dir: Path | str | None = None,
) -> VektisValidation:
    """Validate the harmonised table against both suites.

    ``years``/``include_first_release`` say which files the table *should* contain (all bundled
    files when None); the raw totals are computed for exactly those files. With ``out_dir`` the
    GX project lives in ``out_dir/gx`` and Data Docs are built in ``out_dir/data_docs``; without it
    an ephemeral context is used and no HTML is written.
    """
    releases = select_releases(years, include_first_release)
    expected_years = sorted({r.year for r in releases})
    expected_releases = sorted({r.release for r in releases})
    reconciliation = reconcile(long, releases)
    n_columns = int(sum(1 for r in releases for c in read_raw(r).columns if not is_key_column(c)))

    if out_dir is not None:
        out = Path(out_dir).resolve()
        gx_root = out / "gx"
        docs_dir = out / "data_docs"
        for stale in (
            gx_root,
            docs_dir,
        ):  # one run, one set of results: never mix with a previous run
            if stale.exists():
                shutil.rmtree(stale)
        out.mkdir(parents=True, exist_ok=True)
        context = gx.get_context(mode="file", project_root_dir=str(out))
        context.add_data_docs_site(
            site_name=DATA_DOCS_SITE,
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
            },
        )
    else:
        context = gx.get_context(mode="ephemeral")
        docs_dir = None

    # No telemetry from a health-data pipeline, and no progress bars in scheduled logs.
    context.enable_analytics(False)
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)

    source = context.data_sources.add_pandas("vektis")
    runs = [
        (build_long_suite(expected_years, expected_releases), "vektis_long", _to_pandas(long)),
        (
            build_reconciliation_suite([dataset_label(r.year, r.release) for r in releases], n_columns),
            "vektis_reconciliation",
            _to_pandas(reconciliation),
        ),
    ]
    summaries: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    for suite, asset_name, frame in runs:
        batch_definition = source.add_dataframe_asset(asset_name).add_batch_definition_whole_dataframe("whole table")
        suite = context.suites.add(suite)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{asset_name} validation", data=batch_definition, suite=suite)
        )
        result = definition.run(batch_parameters={"dataframe": frame})
        results[suite.name] = result
        summaries.append(_summarise(result))

    index: Path | None = None
    if docs_dir is not None:
        context.build_data_docs(site_names=[DATA_DOCS_SITE])
        localise_static_links(docs_dir)
        index = docs_dir / "index.html"

    mismatches = reconciliation.filter(~pl.col("totals_equal") | ~pl.col("cells_equal"))
    success = all(s["success"] for s in summaries)
    summary = {
        "success": success,
        "years": expected_years,
        "releases": [dataset_label(r.year, r.release) for r in releases],
        "rows": long.height,
        "suites": summaries,
        "reconciliation": {
            "columns_checked": reconciliation.height,
            "columns_expected": n_columns,
            "mismatches": _jsonable(mismatches.to_dicts()),
        },
        "data_docs_index": str(index) if index is not None else None,
    }
    return VektisValidation(success, summary, reconciliation, index, results)


def write_summary(validation: VektisValidation, path: Path | str) -> Path:
    """Write the machine-readable summary as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(validation.summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path

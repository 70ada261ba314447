"""Measure a delivery's marginal distributions against the Vektis open data it is calibrated to.

Used by the tests ("within a stated tolerance of the Vektis data") and by ``bench/``. Reads only the
delivery's parquet (not the generator's internals), so it checks what a user would see.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transforms.synth.calibration import AGE_CLASSES, CATEGORIES, CATEGORY_TABLE
from transforms.vektis import calibration_cells

SERVICE_DATE = {
    "dbc": "start_date",
    "gp": "service_date",
    "pharmacy": "service_date",
    "paramedical": "service_date",
    "maternity": "service_date",
}


def _age_class(age: pl.Expr) -> pl.Expr:
    idx = pl.min_horizontal(pl.max_horizontal(age // 5, pl.lit(0)), pl.lit(18)).cast(pl.Int64)
    return idx.replace_strict(list(range(19)), AGE_CLASSES, return_dtype=pl.String)


def insured_years(delivery: Path) -> pl.DataFrame:
    """Insured years per (year, sex, age_class), from the enrolment spells (death ends a spell)."""
    insured = pl.scan_parquet(Path(delivery) / "insured" / "**" / "*.parquet")
    meta = pl.read_json(Path(delivery) / "delivery.json")
    first, last = int(meta["first_year"][0]), int(meta["last_year"][0])
    years = pl.LazyFrame({"year": list(range(first, last + 1))})
    spells = insured.with_columns(
        pl.min_horizontal(
            pl.col("enrolled_to").fill_null(pl.date(9999, 12, 31)),
            pl.col("death_date").fill_null(pl.date(9999, 12, 31)),
        ).alias("until")
    )
    overlap = (
        spells.join(years, how="cross")
        .with_columns(
            (
                pl.min_horizontal(pl.col("until"), pl.date(pl.col("year"), 12, 31))
                - pl.max_horizontal(pl.col("enrolled_from"), pl.date(pl.col("year"), 1, 1))
            )
            .dt.total_days()
            .add(1)
            .clip(lower_bound=0)
            .alias("days")
        )
        .filter(pl.col("days") > 0)
        .with_columns(_age_class(pl.col("year") - pl.col("birth_year")).alias("age_class"))
        .group_by("year", "sex", "age_class")
        .agg((pl.col("days").sum() / 365.25).alias("insured_years"))
    )
    return overlap.collect()


def cost_by_cell(delivery: Path) -> pl.DataFrame:
    """Declared euros per (year, sex, age_class, category), all lines (credits included)."""
    persons = (
        pl.scan_parquet(Path(delivery) / "insured" / "**" / "*.parquet")
        .group_by("patient_id")
        .agg(pl.col("birth_year").first(), pl.col("sex").first())
    )
    frames = []
    for category in CATEGORIES:
        table = CATEGORY_TABLE[category]
        claims = pl.scan_parquet(Path(delivery) / table / "**" / "*.parquet")
        frames.append(
            claims.join(persons, on="patient_id", how="inner")
            .with_columns(pl.col(SERVICE_DATE[table]).dt.year().alias("year"))
            .with_columns(_age_class(pl.col("year") - pl.col("birth_year")).alias("age_class"))
            .group_by("year", "sex", "age_class")
            .agg(pl.col("amount").cast(pl.Float64).sum().alias("euros"))
            .with_columns(pl.lit(category).alias("category"))
        )
    return pl.concat(pl.collect_all(frames))


def compare_with_vektis(delivery: Path) -> pl.DataFrame:
    """Per (year, sex, age_class, category): generated and Vektis euros per insured-year, and their ratio."""
    exposure = insured_years(delivery)
    cost = cost_by_cell(delivery)
    generated = cost.join(exposure, on=["year", "sex", "age_class"], how="inner").with_columns(
        (pl.col("euros") / pl.col("insured_years")).alias("generated_per_capita")
    )
    targets = []
    for year in generated["year"].unique().to_list():
        cells = calibration_cells(min(max(year, 2011), 2023)).filter(pl.col("sex").is_not_null())
        for category in CATEGORIES:
            targets.append(
                cells.select(
                    pl.lit(year).cast(generated["year"].dtype).alias("year"),
                    "sex",
                    "age_class",
                    pl.lit(category).alias("category"),
                    pl.col(f"per_capita_{category}").alias("vektis_per_capita"),
                )
            )
    target = pl.concat(targets)
    return (
        generated.join(target, on=["year", "sex", "age_class", "category"], how="inner")
        .with_columns((pl.col("generated_per_capita") / pl.col("vektis_per_capita")).alias("ratio"))
        .sort("category", "year", "sex", "age_class")
    )


def age_sex_mix(delivery: Path) -> pl.DataFrame:
    """Share of insured-years per (year, sex, age_class) in the delivery and in Vektis."""
    exposure = insured_years(delivery)
    generated = exposure.with_columns(
        (pl.col("insured_years") / pl.col("insured_years").sum().over("year")).alias("generated_share")
    )
    targets = []
    for year in generated["year"].unique().to_list():
        cells = calibration_cells(min(max(year, 2011), 2023)).filter(pl.col("sex").is_not_null())
        targets.append(
            cells.select(
                pl.lit(year).cast(generated["year"].dtype).alias("year"),
                "sex",
                "age_class",
                (pl.col("insured_years") / pl.col("insured_years").sum()).alias("vektis_share"),
            )
        )
    return generated.join(pl.concat(targets), on=["year", "sex", "age_class"]).sort("year", "sex", "age_class")

"""The regional panel (docs/panels-spec.md section 5): Zvw cost per gemeente, year and category from the
harmonised Vektis table, against the cost expected from the national rates of that year (indirect
standardisation for sex and age class), with funnel limits and the gemeente's trend. Pure functions
over polars frames; no I/O, no Prefect.

The steps, one function each:

1. :func:`final_release` -- release ``final`` only (the 2015 first release is left out and counted);
2. :func:`cells` -- one row per year, gemeente, sex, age class and category (and ``total``):
   insured, insured-years (exact hundredths) and cost (exact cents);
3. :func:`national_rates` -- the standard: national cost per insured-year per year, category, sex
   and age class, over every cell with a sex and age class (all but the unknown-gemeente row);
4. :func:`gemeenten` -- per year, gemeente and category the observed cost, the expected cost
   ``sum(insured-years x rate)`` rounded by :func:`largest_remainder` so that per year and category
   the expected cents add up to the observed cents exactly, and O/E;
5. :func:`person_cv` -- the coefficient of variation ``s`` of one insured-year's cost, per category,
   from the year-to-year changes of O/E (statsmodels OLS; see below);
6. :func:`add_funnel` -- the funnel limits, overdispersion and outlier flag of
   ``transforms.panels.funnel`` per year and category;
7. :func:`add_trend` -- per gemeente and category the slope of O/E on the year (scipy
   ``linregress``) with its standard error.

**The gemeente unit.** ``gemeente`` is the CBS code (``GMxxxx``) when the Vektis name maps to one,
``vektis:<NAME>`` when it does not (mergers after 2020, which Vektis applies to earlier years too:
``vektis:EEMSDELTA``), and ``unknown`` for the unknown-gemeente row. The unknown row has no sex or
age class, so it has no expected cost, no O/E and no funnel; its cost and insured-years are in the
table and in every national total. The national rates are those of the insured with a known gemeente.

**Funnel limits from aggregate data.** A funnel needs the spread of a gemeente's O/E under the null
(every insured-year costs the national rate of its cell, plus noise). With costs of one insured-year
having mean ``m`` (the national rate of its sex x age cell) and standard deviation ``s m`` (one
coefficient of variation ``s`` per category), the observed total ``O = sum`` of the cell costs has
``Var(O) = s^2 sum(n m^2)`` over the gemeente's cells (``n`` insured-years), so

    se0 = s sqrt(sum(n m^2)) / E,   E = sum(n m)

(``s / sqrt(n)`` when all cells have the same rate). Vektis publishes no person-level spread, so
``s`` is estimated from the data themselves: a gemeente's persistent level cancels in the change of
its O/E from one year to the next, whose square has expectation ``s^2 (q_t + q_{t-1}) + c`` with
``q = sum(n m^2) / E^2`` and ``c`` the variance of real year-to-year change. The slope of an OLS fit of
``(oe_t - oe_{t-1})^2`` on ``q_t + q_{t-1}`` over all pairs of consecutive years of all gemeenten
(statsmodels, heteroscedasticity-robust HC1 standard errors) is ``s^2``. Small gemeenten carry the
estimate (their ``q`` is large). Without two consecutive years, or with a slope that is not positive,
``s`` is null and the category has no limits. ``transforms.panels.funnel.funnel`` then does the
rest exactly as for the provider benchmark (Spiegelhalter's overdispersion: ``phi`` from winsorised
z-scores, ``tau2`` by DerSimonian-Laird, random-effects limits and the outlier flag); it is called
with ``kind="binary"``, whose only use of the kind is ``se0 = sqrt(binomial_var_sum) / expected``,
given here the null variance ``s^2 sum(n m^2)`` of the cost total.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy import stats

from transforms.errors import UserFacingError
from transforms.panels import funnel as funnel_rules
from transforms.vektis.columns import CATEGORIES, POPULATION
from transforms.vektis.harmonise import AGE_MIN, FINAL

TOTAL = "total"
UNKNOWN = "unknown"
UNMAPPED_PREFIX = "vektis:"
#: Categories in the order of docs/vektis.md, then ``total``.
CATEGORY_ORDER: tuple[str, ...] = (*(c for c in CATEGORIES if c != POPULATION), TOTAL)
#: Fewest years with an O/E for a trend.
MIN_TREND_YEARS = 3
#: Fewest pairs of consecutive gemeente-years for an estimate of ``s``.
MIN_PAIRS = 20

UNIT = ["year", "gemeente", "gemeente_code", "gemeente_vektis"]
CELL = [*UNIT, "sex", "age_class"]
FUNNEL_COLUMNS = [
    "se0",
    "z",
    "phi",
    "tau2",
    "limit95_low",
    "limit95_high",
    "limit998_low",
    "limit998_high",
    "limit95_adj_low",
    "limit95_adj_high",
    "limit998_adj_low",
    "limit998_adj_high",
    "outlier",
    "oe_shrunk",
]


class RegionalInputError(UserFacingError):
    """A harmonised Vektis table the regional panel cannot be built from."""


@dataclass
class RegionalPanel:
    """What :func:`regional_panel` returns: the two tables and what the manifest reports."""

    regional: pl.DataFrame
    rates: pl.DataFrame
    dispersion: pl.DataFrame
    excluded: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------ 1-2: cells
def gemeente_label() -> pl.Expr:
    """The unit of the panel: CBS code, ``vektis:<NAME>`` for an unmapped name, ``unknown``."""
    return (
        pl.when(pl.col("gemeente_vektis").is_null())
        .then(pl.lit(UNKNOWN))
        .when(pl.col("gemeente_code").is_null())
        .then(pl.lit(UNMAPPED_PREFIX) + pl.col("gemeente_vektis"))
        .otherwise(pl.col("gemeente_code"))
        .alias("gemeente")
    )


def final_release(long: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """The rows of release ``final``, and the rows left out per ``year/release``."""
    left_out = long.filter(pl.col("release") != FINAL).group_by("year", "release").len().sort("year", "release")
    excluded = {f"{y}/{r}": n for y, r, n in left_out.iter_rows()}
    final = long.filter(pl.col("release") == FINAL)
    if final.height == 0:
        raise RegionalInputError("the Vektis table has no rows of release 'final'")
    return final, excluded


def cells(final: pl.DataFrame) -> pl.DataFrame:
    """One row per year, gemeente, sex, age class and category (every category of the year's file,
    and ``total``): ``insured``, ``iy_hundredths`` (insured-years x 100, exact) and ``cost_cents``."""
    keys = ["year", "gemeente_vektis", "sex", "age_class"]
    grouped = final.group_by([*keys, "category"]).agg(
        pl.col("gemeente_code").first(),
        pl.col("value_cents").sum().alias("cost_cents"),
        (pl.col("value_cents").filter(pl.col("measure") == "insured").sum() // 100).alias("insured"),
        pl.col("value_cents").filter(pl.col("measure") == "insured_years").sum().alias("iy_hundredths"),
        (pl.col("measure") == "insured_years").any().alias("_has_iy"),
    )
    population = grouped.filter(pl.col("category") == POPULATION).select(*keys, "insured", "iy_hundredths", "_has_iy")
    cost = grouped.filter(pl.col("category") != POPULATION).select(*keys, "gemeente_code", "category", "cost_cents")
    total = (
        cost.group_by(*keys, "gemeente_code")
        .agg(pl.col("cost_cents").sum())
        .with_columns(pl.lit(TOTAL).alias("category"))
    )
    cost = pl.concat([cost, total.select(cost.columns)])
    joined = cost.join(population, on=keys, how="left", nulls_equal=True, validate="m:1").with_columns(
        gemeente_label(), pl.col("year").cast(pl.Int32)
    )
    missing = joined.filter(~pl.col("_has_iy").fill_null(False))
    if missing.height:
        first = missing.row(0, named=True)
        raise RegionalInputError(
            f"the Vektis table has costs without insured-years ({missing.height} cells, e.g. "
            f"{first['year']} {first['gemeente']} {first['sex']} {first['age_class']})"
        )
    # sorted: the float sums of the later steps then add the same numbers in the same order every run
    return joined.select(*CELL, "category", "insured", "iy_hundredths", "cost_cents").sort(
        "year", "gemeente", "category", "sex", "age_class", nulls_last=True
    )


# ------------------------------------------------------------------------------ 3: the standard
def national_rates(cells: pl.DataFrame) -> pl.DataFrame:
    """National cost per insured-year per year, category, sex and age class (cents, unrounded),
    over the cells with a sex and age class."""
    rates = (
        cells.filter(pl.col("sex").is_not_null())
        .group_by("year", "category", "sex", "age_class")
        .agg(pl.col("iy_hundredths").sum(), pl.col("cost_cents").sum())
    )
    return rates.with_columns(
        pl.col("age_class").replace_strict(AGE_MIN, return_dtype=pl.Int32).alias("age_min"),
        exact_hundredths("iy_hundredths").alias("insured_years"),
        pl.when(pl.col("iy_hundredths") > 0)
        .then(pl.col("cost_cents").cast(pl.Float64) * 100 / pl.col("iy_hundredths"))
        .alias("rate_cents"),
    ).sort("year", "category", "sex", "age_min")


# ------------------------------------------------------------------------------ 4: observed and expected
def exact_hundredths(column: str) -> pl.Expr:
    """Integer hundredths as the nearest Float64 (``17053086 -> 170530.86``): numpy's division is
    correctly rounded, where a polars division by a constant may multiply by its inverse."""
    return pl.col(column).map_batches(lambda s: pl.Series(s.to_numpy() / 100), return_dtype=pl.Float64)


def per_insured_year(cents: str, hundredths: str = "iy_hundredths") -> pl.Expr:
    """``cents / (hundredths / 100)`` rounded half away from zero, in exact integer arithmetic."""
    a = pl.col(cents) * 100
    b = pl.col(hundredths)
    rounded = (2 * a.abs() + b) // (2 * b)
    return pl.when(b > 0).then(pl.when(a < 0).then(-rounded).otherwise(rounded))


def largest_remainder(frame: pl.DataFrame, value: str, total: str, by: list[str], tie: str) -> pl.Series:
    """Integers, one per row of ``frame``, that differ from the float ``value`` by less than 1 and
    add up, per ``by`` group, to the integer ``total`` of the group (the same on each of its rows):
    every row gets ``floor(value)``, and the rows with the largest fractional parts (ties by ``tie``)
    one more, as many as the group lacks. Rows with a null ``value`` get null."""
    work = frame.select(*by, tie, value, total).with_row_index("_row").filter(pl.col(value).is_not_null())
    work = work.with_columns(pl.col(value).floor().alias("_floor")).with_columns(
        (pl.col(value) - pl.col("_floor")).alias("_rest"), pl.col("_floor").cast(pl.Int64).alias("_base")
    )
    work = work.with_columns(
        (pl.col(total) - pl.col("_base").sum().over(by)).alias("_short"), pl.len().over(by).alias("_n")
    )
    bad = work.filter((pl.col("_short") < 0) | (pl.col("_short") > pl.col("_n")))
    if bad.height:
        raise ValueError(
            f"largest_remainder: {value} does not add up to {total} within rounding (group {bad.select(by).row(0)})"
        )
    work = work.sort([*by, "_rest", tie], descending=[*([False] * len(by)), True, False])
    work = work.with_columns(pl.int_range(pl.len()).over(by).alias("_rank"))
    work = work.with_columns((pl.col("_base") + (pl.col("_rank") < pl.col("_short")).cast(pl.Int64)).alias("_int"))
    out = frame.with_row_index("_row").select("_row").join(work.select("_row", "_int"), on="_row", how="left")
    return out.sort("_row")["_int"].rename(value)


def gemeenten(cells: pl.DataFrame, rates: pl.DataFrame) -> pl.DataFrame:
    """Per year, gemeente and category: insured, insured-years, observed and expected cost, O/E and
    ``q = sum(n m^2) / E^2`` (for :func:`person_cv` and the funnel's ``se0``)."""
    joined = cells.join(
        rates.select("year", "category", "sex", "age_class", "rate_cents"),
        on=["year", "category", "sex", "age_class"],
        how="left",
        maintain_order="left",
    )
    n = pl.col("iy_hundredths") / 100
    out = joined.group_by([*UNIT, "category"]).agg(
        pl.col("insured").sum(),
        pl.col("iy_hundredths").sum(),
        pl.col("cost_cents").sum(),
        (n * pl.col("rate_cents")).sum().alias("expected"),
        (n * pl.col("rate_cents") ** 2).sum().alias("null_variance_unit"),
        pl.col("sex").is_not_null().all().alias("standardised"),
        pl.col("sex").is_not_null().any().alias("_some_known"),
    )
    mixed = out.filter(pl.col("_some_known") & ~pl.col("standardised"))
    if mixed.height:
        raise RegionalInputError(
            f"gemeente {mixed['gemeente'][0]} ({mixed['year'][0]}) has cells with and without a sex and age class"
        )
    out = out.drop("_some_known").with_columns(
        pl.when(pl.col("standardised")).then(pl.col("expected")),
        pl.when(pl.col("standardised")).then(pl.col("null_variance_unit")),
    )
    target = pl.col("cost_cents").filter(pl.col("standardised")).sum().over("year", "category")
    out = out.with_columns(target.alias("_target")).sort("year", "category", "gemeente")
    out = out.with_columns(
        largest_remainder(out, "expected", "_target", ["year", "category"], "gemeente").alias("expected_cents")
    ).drop("_target")
    positive = pl.col("expected_cents") > 0
    return out.with_columns(
        exact_hundredths("iy_hundredths").alias("insured_years"),
        per_insured_year("cost_cents").alias("cost_per_insured_year_cents"),
        per_insured_year("expected_cents").alias("expected_per_insured_year_cents"),
        pl.when(positive).then(pl.col("cost_cents") / pl.col("expected_cents")).alias("oe"),
        pl.when(positive & (pl.col("expected") > 0))
        .then(pl.col("null_variance_unit") / pl.col("expected") ** 2)
        .alias("q"),
    )


# ------------------------------------------------------------------------------ 5: s per category
def person_cv(panel: pl.DataFrame) -> pl.DataFrame:
    """Per category the coefficient of variation ``s`` of one insured-year's cost around its
    expected value, from the year-to-year changes of O/E (module docstring): ``cv_person`` (null
    when not estimable, with ``reason``), its standard error, the intercept ``c`` and the pairs used."""
    usable = panel.filter(pl.col("oe").is_not_null() & pl.col("q").is_not_null() & (pl.col("gemeente") != UNKNOWN))
    usable = usable.sort("category", "gemeente", "year").with_columns(
        pl.col("year").shift(1).over("category", "gemeente").alias("_prev_year"),
        pl.col("oe").shift(1).over("category", "gemeente").alias("_prev_oe"),
        pl.col("q").shift(1).over("category", "gemeente").alias("_prev_q"),
    )
    pairs = usable.filter(pl.col("_prev_year") == pl.col("year") - 1).select(
        "category", ((pl.col("oe") - pl.col("_prev_oe")) ** 2).alias("d2"), (pl.col("q") + pl.col("_prev_q")).alias("x")
    )
    rows = []
    present = set(panel["category"].unique().to_list())
    for category in [c for c in CATEGORY_ORDER if c in present]:
        data = pairs.filter(pl.col("category") == category)
        row = {
            "category": category,
            "pairs": data.height,
            "cv_person": None,
            "cv_person_se": None,
            "slope": None,
            "intercept": None,
            "reason": None,
        }
        if data.height < MIN_PAIRS:
            row["reason"] = f"{data.height} pairs of consecutive years (at least {MIN_PAIRS} needed)"
        else:
            x = data["x"].to_numpy()
            fit = sm.OLS(data["d2"].to_numpy(), sm.add_constant(x, has_constant="add")).fit(cov_type="HC1")
            intercept, slope = (float(v) for v in fit.params)
            row.update(slope=slope, intercept=intercept)
            if slope > 0:
                row["cv_person"] = float(np.sqrt(slope))
                row["cv_person_se"] = float(fit.bse[1]) / (2 * row["cv_person"])
            else:
                row["reason"] = f"the change of O/E does not grow with 1 / size (slope {slope:.3g})"
        rows.append(row)
    schema = {
        "category": pl.String,
        "pairs": pl.Int64,
        "cv_person": pl.Float64,
        "cv_person_se": pl.Float64,
        "slope": pl.Float64,
        "intercept": pl.Float64,
        "reason": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


# ------------------------------------------------------------------------------ 6: funnel
def add_funnel(panel: pl.DataFrame, dispersion: pl.DataFrame) -> pl.DataFrame:
    """The funnel columns (``FUNNEL_COLUMNS``) per year and category, from
    ``transforms.panels.funnel.funnel``; null on rows without O/E or without ``s``."""
    frame = panel.join(
        dispersion.select("category", "cv_person"), on="category", how="left", maintain_order="left"
    ).sort("year", "category", "gemeente")
    eligible = frame.filter(
        pl.col("oe").is_not_null() & pl.col("cv_person").is_not_null() & (pl.col("null_variance_unit") > 0)
    )
    variance = pl.col("cv_person") ** 2 * pl.col("null_variance_unit")
    cells_in = eligible.select(
        "year",
        "category",
        "gemeente",
        pl.col("insured_years").alias("n"),
        "oe",
        pl.col("expected_cents").cast(pl.Float64).alias("expected"),
        variance.alias("binomial_var_sum"),
        (variance.sqrt() / pl.col("expected_cents")).alias("se_oe"),
    )
    limits = funnel_rules.funnel(cells_in, ["year", "category"], "binary") if cells_in.height else None
    if limits is None:
        return frame.with_columns(
            [pl.lit(None, dtype=pl.String if c == "outlier" else pl.Float64).alias(c) for c in FUNNEL_COLUMNS]
        )
    return frame.join(
        limits.select("year", "category", "gemeente", *FUNNEL_COLUMNS),
        on=["year", "category", "gemeente"],
        how="left",
        maintain_order="left",
    )


# ------------------------------------------------------------------------------ 7: trend
def add_trend(panel: pl.DataFrame) -> pl.DataFrame:
    """Per gemeente and category: ``trend_slope`` (change of O/E per year, least squares over its
    years with an O/E, ``scipy.stats.linregress``), ``trend_slope_se`` and ``trend_years``."""
    series = (
        panel.filter(pl.col("oe").is_not_null())
        .group_by("gemeente", "category")
        .agg(pl.col("year").sort_by("year"), pl.col("oe").sort_by("year"))
        .sort("gemeente", "category")
    )
    rows = []
    for gemeente, category, years, oe in series.iter_rows():
        row = {
            "gemeente": gemeente,
            "category": category,
            "trend_years": len(years),
            "trend_slope": None,
            "trend_slope_se": None,
        }
        if len(years) >= MIN_TREND_YEARS:
            fit = stats.linregress(np.asarray(years, dtype=float), np.asarray(oe, dtype=float))
            row.update(trend_slope=float(fit.slope), trend_slope_se=float(fit.stderr))
        rows.append(row)
    trend = pl.DataFrame(
        rows,
        schema={
            "gemeente": pl.String,
            "category": pl.String,
            "trend_years": pl.Int32,
            "trend_slope": pl.Float64,
            "trend_slope_se": pl.Float64,
        },
    )
    return panel.join(trend, on=["gemeente", "category"], how="left", maintain_order="left")


# ------------------------------------------------------------------------------ all of it
def regional_panel(long: pl.DataFrame) -> RegionalPanel:
    """The regional panel of a harmonised Vektis table (``transforms.vektis.harmonise_vektis`` or
    the ``vektis_long`` folder of ``zorgpad ingest-vektis``): the ``regional`` and
    ``regional_rates`` tables (columns as declared in ``transforms/regional/tables/``), the
    estimates of ``s`` per category, and the rows left out per ``year/release``."""
    final, excluded = final_release(long)
    cell_rows = cells(final)
    rates = national_rates(cell_rows)
    panel = gemeenten(cell_rows, rates)
    dispersion = person_cv(panel)
    panel = add_trend(add_funnel(panel, dispersion))
    return RegionalPanel(regional=panel, rates=rates, dispersion=dispersion, excluded=excluded)


__all__ = [
    "CATEGORY_ORDER",
    "TOTAL",
    "UNKNOWN",
    "UNMAPPED_PREFIX",
    "RegionalInputError",
    "RegionalPanel",
    "add_funnel",
    "add_trend",
    "cells",
    "final_release",
    "gemeenten",
    "largest_remainder",
    "national_rates",
    "person_cv",
    "regional_panel",
]

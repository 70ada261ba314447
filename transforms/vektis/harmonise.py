"""Harmonise the Vektis open data 2011-2023 into one long table (pure polars).

The Vektis "Open Databestand Zorgverzekeringswet per gemeente" gives, per year, one row per
cell (sex x age class x gemeente) with the number of insured, the insured-years and the paid Zvw
costs per cost category, in euros for the whole cell. The files drift between years (see
``columns.py``); this module turns all of them into one long table with one row per
(release, year, cell, measure), so that a question like "MSZ cost per insured-year of women 70-74,
2011 versus 2023" is one filter, not fourteen parsers.

Money is exact: every cell is parsed from its text into integer cents (``value_cents``) and only
then divided into the Float64 ``value``. Totals are always summed in cents, so they equal the sums
of the original files to the cent.

Nothing is dropped: the first row of every file (empty sex, age class and gemeente: insured whose
municipality is unknown) is kept with nulls in those columns, gemeente names that do not map to a
CBS code keep a null code, and an unknown column or an unparsable number raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import polars as pl

import reference
from transforms.vektis.columns import (
    AGE_CLASS_COLUMN,
    CATEGORIES,
    GEMEENTE_COLUMN,
    MEASURE_COLUMNS,
    MEASURE_NAMES,
    POPULATION,
    SEX_COLUMN,
    canonical_source_name,
    check_header,
    is_key_column,
)
from transforms.vektis.gemeenten import map_gemeente_names

FINAL = "final"
FIRST_RELEASE = "first_release"
RELEASES: tuple[str, ...] = (FINAL, FIRST_RELEASE)

# Canonical age classes, youngest first, and the lower bound of each.
AGE_CLASSES: tuple[str, ...] = (*(f"{lo}-{lo + 4}" for lo in range(0, 90, 5)), "90+")
AGE_MIN: dict[str, int] = {label: int(label.rstrip("+").split("-")[0]) for label in AGE_CLASSES}
SEXES: tuple[str, ...] = ("M", "V")

# The harmonised long table, column by column.
LONG_SCHEMA: dict[str, pl.DataType] = {
    "year": pl.Int16(),
    "release": pl.String(),
    "gemeente_vektis": pl.String(),
    "gemeente_code": pl.String(),
    "sex": pl.String(),
    "age_class": pl.String(),
    "age_min": pl.Int16(),
    "measure": pl.String(),
    "category": pl.String(),
    "value": pl.Float64(),
    "value_cents": pl.Int64(),
    "source_column": pl.String(),
}

# Categories for which calibration_cells gives a cost per insured-year.
PER_CAPITA_CATEGORIES: tuple[str, ...] = ("msz", "pharmacy", "gp", "paramedical", "maternity")
COST_CATEGORIES: tuple[str, ...] = tuple(c for c in CATEGORIES if c != POPULATION)
MEASURE_RANK: dict[str, int] = {m: i for i, m in enumerate(MEASURE_NAMES)}

_FILE_PATTERN = re.compile(r"^vektis_(\d{4})_gemeente(_first_release)?\.parquet$")
_AMOUNT_PATTERN = r"^(-?)(\d+)(?:\.(\d{1,2}))?$"


@dataclass(frozen=True)
class VektisRelease:
    """One bundled Vektis file: a year in its final release or (2015 only) its first release."""

    year: int
    release: str
    relative_path: str  # for reference.table / reference.path

    @property
    def label(self) -> str:
        return f"{self.relative_path} (year {self.year}, release {self.release})"


def available_releases() -> list[VektisRelease]:
    """Every Vektis file in the reference bundle, found by name so a new year is picked up."""
    found: list[VektisRelease] = []
    for path in sorted((reference.ROOT / "vektis").glob("vektis_*.parquet")):
        match = _FILE_PATTERN.match(path.name)
        if match is None:
            raise ValueError(f"unexpected file {path.name} in the bundled Vektis folder")
        release = FIRST_RELEASE if match.group(2) else FINAL
        found.append(VektisRelease(int(match.group(1)), release, f"vektis/{path.name}"))
    return sorted(found, key=lambda r: (r.year, RELEASES.index(r.release)))


def select_releases(years: Iterable[int] | None = None, include_first_release: bool = True) -> list[VektisRelease]:
    """The bundled files for ``years`` (all when None); an unavailable year is an error."""
    releases = available_releases()
    if years is not None:
        wanted = sorted(set(int(y) for y in years))
        missing = sorted(set(wanted) - {r.year for r in releases})
        if missing:
            available = sorted({r.year for r in releases})
            raise ValueError(f"no Vektis file for year(s) {missing}; available: {available[0]}-{available[-1]}")
        releases = [r for r in releases if r.year in wanted]
    if not include_first_release:
        releases = [r for r in releases if r.release == FINAL]
    return releases


def read_raw(release: VektisRelease) -> pl.DataFrame:
    """The untouched file: every cell as text, original column names."""
    return reference.table(release.relative_path)


def amount_cents(text: pl.Expr) -> pl.Expr:
    """Decimal-point amount text (``-1644.04``, ``45049552.9``, ``552``) -> exact integer cents.

    Digits are moved, never rounded; text that is not such an amount (more than two decimals, a
    decimal comma, words) gives null, which :func:`harmonise_file` turns into an error.
    """
    parts = text.str.strip_chars().str.extract_groups(_AMOUNT_PATTERN)
    magnitude = parts.struct.field("2").cast(pl.Int64) * 100 + (
        parts.struct.field("3").fill_null("").str.pad_end(2, "0").cast(pl.Int64)
    )
    return pl.when(parts.struct.field("1") == "-").then(-magnitude).otherwise(magnitude)


def cents_to_euros(cents: pl.Expr) -> pl.Expr:
    """Integer cents -> the nearest Float64 euro amount, correctly rounded.

    Done per value in Python (``c / 100`` is correctly rounded) because polars' vectorised
    division by a scalar may multiply by the reciprocal and land one unit in the last place off
    (``83036658 / 100`` -> ``830366.5800000001``). Only used on small aggregated tables.
    """
    return cents.map_batches(
        lambda s: pl.Series(s.name, [None if c is None else c / 100 for c in s.to_list()], dtype=pl.Float64),
        return_dtype=pl.Float64,
    )


def amount_float(text: pl.Expr) -> pl.Expr:
    """The same text as the nearest Float64 (parsed directly, so ``830366.58`` stays ``830366.58``)."""
    return text.str.strip_chars().cast(pl.Float64, strict=False)


def canonical_age_class(label: str) -> str:
    """``' 0 t/m  4 jaar'`` -> ``'0-4'``, ``'90+'`` / ``'90+ jaar'`` -> ``'90+'``; unknown raises."""
    text = " ".join(label.split())
    if (m := re.fullmatch(r"(\d+) t/m (\d+)(?: jaar)?", text)) is not None:
        canonical = f"{int(m.group(1))}-{int(m.group(2))}"
    elif (m := re.fullmatch(r"(\d+) ?\+(?: jaar)?", text)) is not None:
        canonical = f"{int(m.group(1))}+"
    else:
        canonical = text
    if canonical not in AGE_MIN:
        raise ValueError(f"unknown Vektis age class {label!r}; known: {AGE_CLASSES}")
    return canonical


def harmonise_file(raw: pl.DataFrame, year: int, release: str, *, file_label: str | None = None) -> pl.DataFrame:
    """One raw Vektis file (text cells, original header) -> the long table for that file.

    Raises on an unknown column, an unknown sex or age label, a partly empty key and any value
    that is not a decimal-point amount. An *empty* value cell (none in the 2011-2023 files) stays
    null rather than becoming 0, and fails validation (``value`` must not be null).
    """
    label = file_label or f"Vektis {year} ({release})"
    mapped = check_header(raw.columns, file_label=label)
    keys = {canonical_source_name(c): c for c in raw.columns if is_key_column(c)}
    sex, age, gemeente = keys[SEX_COLUMN], keys[AGE_CLASS_COLUMN], keys[GEMEENTE_COLUMN]

    # The unknown-gemeente row has all three keys empty; any other pattern of empties is unexpected.
    n_empty = raw.select(pl.sum_horizontal(pl.col(sex, age, gemeente).is_null().cast(pl.Int8))).to_series()
    if n_empty.is_in([1, 2]).any():
        raise ValueError(f"{label}: rows with only some of sex/age class/gemeente empty")
    bad_sex = sorted(set(raw[sex].drop_nulls().unique()) - set(SEXES))
    if bad_sex:
        raise ValueError(f"{label}: unknown sex value(s) {bad_sex}")
    age_map = {a: canonical_age_class(a) for a in raw[age].drop_nulls().unique()}

    measure_columns = [c for c, _ in mapped]
    cells = raw.select(
        pl.col(gemeente).alias("gemeente_vektis"),
        pl.col(sex).alias("sex"),
        pl.col(age).replace_strict(age_map, default=None, return_dtype=pl.String).alias("age_class"),
        *measure_columns,
    ).with_columns(pl.col("age_class").replace_strict(AGE_MIN, default=None, return_dtype=pl.Int16).alias("age_min"))
    column_specs = pl.DataFrame(
        {
            "source_column": measure_columns,
            "measure": [spec.measure for _, spec in mapped],
            "category": [spec.category for _, spec in mapped],
            "_rank": [MEASURE_RANK[spec.measure] for _, spec in mapped],
        }
    )
    codes = map_gemeente_names(cells["gemeente_vektis"]).select("gemeente_vektis", "gemeente_code")
    long = (
        cells.sort("gemeente_vektis", "sex", "age_min", nulls_last=False, maintain_order=True)
        .unpivot(
            on=measure_columns,
            index=["gemeente_vektis", "sex", "age_class", "age_min"],
            variable_name="source_column",
            value_name="text",
        )
        .join(column_specs, on="source_column", how="left", maintain_order="left")
        .join(codes, on="gemeente_vektis", how="left", nulls_equal=False, maintain_order="left")
        .with_columns(
            pl.lit(year, dtype=pl.Int16).alias("year"),
            pl.lit(release, dtype=pl.String).alias("release"),
            amount_cents(pl.col("text")).alias("value_cents"),
            amount_float(pl.col("text")).alias("value"),
        )
        # Deterministic order: measure as mapped, then unknown gemeente first, gemeente, sex, age.
        .sort("_rank", maintain_order=True)
    )
    unparsed = long.filter(pl.col("text").is_not_null() & (pl.col("value_cents").is_null() | pl.col("value").is_null()))
    if unparsed.height:
        examples = unparsed.group_by("source_column").agg(pl.col("text").head(3)).rows()
        raise ValueError(
            f"{label}: {unparsed.height} value(s) are not decimal-point amounts with at most two "
            f"decimals (column, examples): {examples}"
        )
    if long.height != raw.height * len(measure_columns):
        raise AssertionError(f"{label}: {long.height} long rows for {raw.height} x {len(measure_columns)} cells")
    return long.select([pl.col(name).cast(dtype) for name, dtype in LONG_SCHEMA.items()])


def harmonise_vektis(years: Iterable[int] | None = None, include_first_release: bool = True) -> pl.DataFrame:
    """The long table for the requested years (all bundled years when None).

    One row per (release, year, gemeente cell, sex, age class, measure), columns as in
    :data:`LONG_SCHEMA`. ``include_first_release`` adds the 2015 first release (older municipal
    division, 388 gemeenten) next to the final 2015 file; analyses normally use ``release == "final"``.
    """
    releases = select_releases(years, include_first_release)
    frames = [harmonise_file(read_raw(r), r.year, r.release, file_label=r.label) for r in releases]
    if not frames:
        return pl.DataFrame(schema=LONG_SCHEMA)
    return pl.concat(frames, how="vertical")


def national_totals(df: pl.DataFrame) -> pl.DataFrame:
    """National total per (year, release, measure), summed in cents so it is exact.

    Includes the unknown-gemeente row and unmapped gemeenten: this is the whole file.
    Columns: year, release, measure, category, total (euros or persons), total_cents.
    """
    return (
        df.group_by("year", "release", "measure", "category")
        .agg(pl.col("value_cents").sum().alias("total_cents"))
        .with_columns(cents_to_euros(pl.col("total_cents")).alias("total"))
        .with_columns(pl.col("measure").replace_strict(MEASURE_RANK, return_dtype=pl.Int16).alias("_rank"))
        .sort("year", "release", "_rank")
        .select("year", "release", "measure", "category", "total", "total_cents")
    )


def unmapped_gemeenten(df: pl.DataFrame) -> pl.DataFrame:
    """Gemeente names without a CBS code, per (year, release), with their number of insured.

    The unknown-gemeente row (no name at all) is not a name and is not listed here; its insured
    are in ``national_totals`` like everyone else's. Columns: year, release, gemeente_vektis, insured.
    """
    return (
        df.filter(
            pl.col("gemeente_vektis").is_not_null()
            & pl.col("gemeente_code").is_null()
            & (pl.col("measure") == "insured")
        )
        .group_by("year", "release", "gemeente_vektis")
        .agg((pl.col("value_cents").sum() // 100).alias("insured"))
        .sort("year", "release", "gemeente_vektis")
    )


@lru_cache(maxsize=16)
def _final_year(year: int) -> pl.DataFrame:
    return harmonise_vektis([year], include_first_release=False)


def calibration_cells(year: int) -> pl.DataFrame:
    """National cost profile by sex and age class, to calibrate synthetic claims.

    Sums every gemeente of the final release, one row per (sex, age class) plus one row with sex,
    age_class and age_min null for the insured whose municipality is unknown (so that the column
    totals equal the national totals). Columns: year, sex, age_class, age_min, insured,
    insured_years, ``cost_<category>`` for every cost category (null when the year's file has no
    column in that category) and ``per_capita_<category>`` = cost / insured_years for
    msz, pharmacy, gp, paramedical and maternity.
    """
    long = _final_year(year)
    present = set(long["category"].unique())
    cents = long.group_by("sex", "age_class", "age_min").agg(
        pl.col("value_cents").filter(pl.col("measure") == "insured").sum().alias("insured"),
        pl.col("value_cents").filter(pl.col("measure") == "insured_years").sum().alias("insured_years"),
        *[
            (
                pl.col("value_cents").filter(pl.col("category") == cat).sum()
                if cat in present
                else pl.lit(None, dtype=pl.Int64)
            ).alias(f"cost_{cat}")
            for cat in COST_CATEGORIES
        ],
    )
    cells = (
        cents.with_columns(
            (pl.col("insured") // 100).alias("insured"),
            *[
                cents_to_euros(pl.col(c)).alias(c)
                for c in ["insured_years", *(f"cost_{cat}" for cat in COST_CATEGORIES)]
            ],
        )
        .with_columns(
            *[
                (pl.col(f"cost_{cat}") / pl.col("insured_years")).alias(f"per_capita_{cat}")
                for cat in PER_CAPITA_CATEGORIES
            ]
        )
        .with_columns(pl.lit(year, dtype=pl.Int16).alias("year"))
        .sort(pl.col("sex"), pl.col("age_min"), nulls_last=True)
    )
    return cells.select("year", "sex", "age_class", "age_min", pl.exclude("year", "sex", "age_class", "age_min"))


def gemeente_population(year: int) -> pl.DataFrame:
    """Insured per gemeente, sex and age class (final release), to place synthetic patients.

    Columns: gemeente_code, gemeente_vektis, sex, age_class, age_min, insured (Int64). Rows of
    unmapped names keep a null code and their Vektis name; the unknown-gemeente row is included
    with everything but ``insured`` null, so the column total is the national total.
    """
    return (
        _final_year(year)
        .filter(pl.col("measure") == "insured")
        .select(
            "gemeente_code",
            "gemeente_vektis",
            "sex",
            "age_class",
            "age_min",
            (pl.col("value_cents") // 100).alias("insured"),
        )
        .sort("gemeente_code", "gemeente_vektis", "sex", "age_min", nulls_last=True)
    )


def column_mapping(releases: Iterable[VektisRelease] | None = None) -> pl.DataFrame:
    """Every original column of every bundled file with its measure and category.

    Columns: year, release, source_column (as in the file), position (1-based), role
    (``key``/``measure``), measure, category, description. Raises on an unknown column, so a
    successful call is proof that every column of every file is mapped.
    """
    rows: list[dict[str, object]] = []
    specs = {c.source_name: c for c in MEASURE_COLUMNS}
    for r in releases if releases is not None else available_releases():
        columns = read_raw(r).columns
        check_header(columns, file_label=r.label)
        for position, column in enumerate(columns, start=1):
            spec = specs.get(canonical_source_name(column))
            rows.append(
                {
                    "year": r.year,
                    "release": r.release,
                    "source_column": column,
                    "position": position,
                    "role": "measure" if spec else "key",
                    "measure": spec.measure if spec else None,
                    "category": spec.category if spec else None,
                    "description": spec.description if spec else None,
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "year": pl.Int16,
            "release": pl.String,
            "source_column": pl.String,
            "position": pl.Int16,
            "role": pl.String,
            "measure": pl.String,
            "category": pl.String,
            "description": pl.String,
        },
    )

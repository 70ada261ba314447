"""Generate ``docs/vektis.md`` from the code, so the documented mapping and totals cannot drift.

The column mapping tables come from ``columns.py`` and the bundled file headers; the national
totals and the unmapped gemeenten are computed from the harmonised data. ``tests/test_vektis.py``
checks that the committed ``docs/vektis.md`` equals :func:`vektis_docs_markdown`. Regenerate with::

    python -m transforms.vektis.docs
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transforms.vektis.columns import (
    CATEGORIES,
    CATEGORY_DESCRIPTIONS,
    MEASURE_COLUMNS,
    POPULATION,
    TRUNCATED_NAMES,
)
from transforms.vektis.harmonise import (
    AGE_CLASSES,
    FINAL,
    LONG_SCHEMA,
    available_releases,
    column_mapping,
    harmonise_vektis,
    national_totals,
    unmapped_gemeenten,
)

DOCS_PATH = Path(__file__).resolve().parents[2] / "docs" / "vektis.md"

_COLUMN_DOCS: dict[str, str] = {
    "year": "reporting year of the Vektis file",
    "release": "`final`, or `first_release` for the first 2015 release (older municipal division)",
    "gemeente_vektis": "gemeente name exactly as in the file; null on the unknown-gemeente row",
    "gemeente_code": "CBS code GMxxxx (2020 division); null when the name does not map or is unknown",
    "sex": "`M` or `V`; null on the unknown-gemeente row",
    "age_class": "`0-4`, `5-9`, ..., `85-89`, `90+`; null on the unknown-gemeente row",
    "age_min": "lower bound of the age class (0, 5, ..., 90)",
    "measure": "canonical measure, one per original column (see the mapping below)",
    "category": "coarse category, stable over all years (see below)",
    "value": "the cell value: persons, insured-years or euros for the whole cell (not per capita)",
    "value_cents": "the same value in exact integer cents (sum this column for money totals)",
    "source_column": "the original column name, exactly as in that year's file",
}


def _release_label(year: int, release: str) -> str:
    return str(year) if release == FINAL else f"{year} first release"


def _years_text(pairs: list[tuple[int, str]]) -> str:
    """``[(2011, final), (2012, final), (2015, first_release)]`` -> ``2011-2012, 2015 first release``."""
    finals = sorted(y for y, r in pairs if r == FINAL)
    parts: list[str] = []
    start = prev = None
    for y in finals:
        if prev is not None and y == prev + 1:
            prev = y
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = y
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    parts += [_release_label(y, r) for y, r in sorted(pairs) if r != FINAL]
    return ", ".join(parts)


def _euros(cents: int) -> str:
    """Exact euro amount with thousands separators, from integer cents."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole:,}.{frac:02d}"


def _millions(cents: int | None) -> str:
    return "" if cents is None else f"{cents / 100 / 1e6:,.1f}"


def vektis_mapping_markdown(mapping: pl.DataFrame | None = None) -> str:
    """The column mapping as Markdown: every original column of every file, by measure.

    Two tables: per measure the exact original spellings with the years they occur in, and a
    measure x year matrix that shows at a glance which categories exist when.
    """
    mapping = column_mapping() if mapping is None else mapping
    releases = mapping.select("year", "release").unique().sort("year", "release").rows()
    measures_seen = mapping.filter(pl.col("role") == "measure")
    lines = [
        "| measure | category | description | original column (exact spelling: years) |",
        "|---|---|---|---|",
    ]
    key_rows = mapping.filter(pl.col("role") == "key")
    for spec in MEASURE_COLUMNS:
        rows = measures_seen.filter(pl.col("measure") == spec.measure)
        spellings = []
        for spelling in rows["source_column"].unique(maintain_order=True).to_list():
            pairs = rows.filter(pl.col("source_column") == spelling).select("year", "release").rows()
            spellings.append(f"`{spelling}`: {_years_text(pairs)}")
        seen = "; ".join(spellings) if spellings else "(not in any bundled file)"
        lines.append(f"| `{spec.measure}` | `{spec.category}` | {spec.description} | {seen} |")
    keys = []
    for spelling in key_rows["source_column"].unique(maintain_order=True).to_list():
        pairs = key_rows.filter(pl.col("source_column") == spelling).select("year", "release").rows()
        keys.append(f"`{spelling}` ({_years_text(pairs)})")
    lines += ["", "Key columns (not measures): " + ", ".join(keys) + "."]
    lines += [
        "",
        "Truncated names (2023) are mapped explicitly, never by prefix guessing: "
        + ", ".join(f"`{short.lower()}` = `{full.lower()}`" for short, full in TRUNCATED_NAMES.items())
        + ".",
        "",
        "Presence of each measure per file (x = present):",
        "",
        "| measure | "
        + " | ".join(_release_label(y, r).replace(" first release", " (1st)") for y, r in releases)
        + " |",
        "|---|" + "---|" * len(releases),
    ]
    present = set(measures_seen.select("measure", "year", "release").iter_rows())
    for spec in MEASURE_COLUMNS:
        marks = ["x" if (spec.measure, y, r) in present else "" for y, r in releases]
        lines.append(f"| `{spec.measure}` | " + " | ".join(marks) + " |")
    return "\n".join(lines) + "\n"


def national_totals_markdown(totals: pl.DataFrame) -> str:
    """Per (year, release): insured, insured-years and cost per category in EUR million, plus the
    exact total Zvw cost in euros."""
    cost_categories = [c for c in CATEGORIES if c != POPULATION]
    by_category = (
        totals.group_by("year", "release", "category").agg(pl.col("total_cents").sum()).sort("year", "release")
    )
    lines = [
        "| year | insured | insured-years | " + " | ".join(cost_categories) + " | total cost (EUR, exact) |",
        "|---|" + "---:|" * (3 + len(cost_categories)),
    ]
    for year, release in by_category.select("year", "release").unique().sort("year", "release").rows():
        cells = {
            row["category"]: row["total_cents"]
            for row in by_category.filter((pl.col("year") == year) & (pl.col("release") == release)).iter_rows(
                named=True
            )
        }
        persons = totals.filter((pl.col("year") == year) & (pl.col("release") == release))
        insured = persons.filter(pl.col("measure") == "insured")["total_cents"].item() // 100
        insured_years = persons.filter(pl.col("measure") == "insured_years")["total_cents"].item()
        total_cost = sum(v for k, v in cells.items() if k != POPULATION)
        lines.append(
            f"| {_release_label(year, release)} | {insured:,} | {_euros(insured_years)} | "
            + " | ".join(_millions(cells.get(c)) for c in cost_categories)
            + f" | {_euros(total_cost)} |"
        )
    return "\n".join(lines) + "\n"


def unmapped_markdown(unmapped: pl.DataFrame) -> str:
    """Per (year, release): how many names do not map, their insured, and the names."""
    lines = ["| file | names | insured | names without a 2020 CBS code |", "|---|---:|---:|---|"]
    grouped = (
        unmapped.group_by("year", "release")
        .agg(pl.len().alias("n"), pl.col("insured").sum(), pl.col("gemeente_vektis").sort())
        .sort("year", "release")
    )
    for year, release, n, insured, names in grouped.iter_rows():
        lines.append(f"| {_release_label(year, release)} | {n} | {insured:,} | {', '.join(names)} |")
    return "\n".join(lines) + "\n"


def vektis_docs_markdown(long: pl.DataFrame | None = None) -> str:
    """The complete ``docs/vektis.md``: what the table is, how to run it, mapping, totals."""
    long = harmonise_vektis() if long is None else long
    releases = available_releases()
    schema_rows = "\n".join(f"| `{name}` | {dtype} | {_COLUMN_DOCS[name]} |" for name, dtype in LONG_SCHEMA.items())
    categories = "\n".join(f"| `{c}` | {CATEGORY_DESCRIPTIONS[c]} |" for c in CATEGORIES)
    return f"""# Vektis open data, harmonised (`zorgpad ingest-vektis`)

<!-- Generated by transforms/vektis/docs.py (python -m transforms.vektis.docs); do not edit by hand:
     tests/test_vektis.py fails when this file differs from the generated text. -->

Vektis publishes the *Open Databestand Zorgverzekeringswet per gemeente* every year: for each
cell of sex x age class x gemeente, the number of insured, the insured-years and the Zvw costs
paid per cost category (euros for the whole cell, not per capita). zorgpad bundles the
{len(releases)} files of {releases[0].year}-{releases[-1].year} verbatim (every cell as text) in
`reference/vektis/` and harmonises them into **one long table** with one row per
(release, year, gemeente cell, sex, age class, measure).

Why: the files drift. 23 columns in 2011, 31 in 2023; UPPER CASE until 2018, lower case from
2019, some names cut to 32 characters in 2023; categories are split and renamed (GGZ four times),
new ones appear (GP multidisciplinary care, district nursing, first-line stay, GZSP, integrated
birth care, GGZ innovation funds); municipalities merge. The harmonised table resolves this once,
in code that is tested against the untouched files.

## The table

| column | type | meaning |
|---|---|---|
{schema_rows}

- **Nothing is dropped.** The unknown-gemeente row of each file (sex, age class and gemeente all
  empty: insured whose municipality is unknown) is kept with nulls in those columns. Gemeente names
  that do not map to a CBS code keep `gemeente_code` null and are listed in
  `unmapped_gemeenten.csv`. An unknown column or an unparsable number stops the run with its name.
- **Exact money.** Every value is parsed from its text twice: exactly into integer cents
  (`value_cents`) and into the nearest Float64 (`value`). Totals are summed in cents and equal the
  sums of the original columns to the cent; validation checks this against an independent
  Decimal sum of the raw files.
- **Negative costs are real.** A handful of cost cells per year are negative (credit lines:
  corrections larger than the declarations of that cell). They are kept; counts
  (`insured`, `insured_years`) are never negative.
- **Small cells are missing, not zero.** Vektis publishes only cells with at least 10 insured, so
  a small gemeente can lack e.g. its 90+ men; the number of rows per file varies for that reason.
- **Age classes** `{AGE_CLASSES[0]}` ... `{AGE_CLASSES[-1]}` come from labels such as
  `' 0 t/m  4 jaar'` and `'90+'`; an unknown label stops the run.
- **Releases.** 2015 exists twice: the final file (2020 division, 355 gemeenten) and the first
  release (`release = "first_release"`, 388 gemeenten in the 2015 division). Use
  `release == "final"` unless you study the revision.
- **Gemeenten.** Names map to CBS GM codes of the 2020 division via the bundled Vektis-name table,
  then via a spelling-insensitive match on that table and the CBS names (`NOORD BEVELAND` =
  Noord-Beveland). Older names (merged before 2020) and newer names (merged after 2020, applied
  retroactively by Vektis) do not map. The CBS residence table is not used to guess successors:
  residence names are ambiguous (`HAREN`, `WINSUM`).

### Categories

`category` groups the measures so that a 2011 and a 2023 number are comparable. Scope changes
are real changes, not drift: district nursing (`cost_nursing_care`) entered the Zvw in 2015,
first-line stay in 2018 and GZSP in 2020, so `rehabilitation_nursing` grows by scope.

| category | contents |
|---|---|
{categories}

## Running it

```
zorgpad ingest-vektis --out DIR               # all years
zorgpad ingest-vektis --out DIR --years 2015-2022
```

The Prefect flow `flows/vektis_flow.py::ingest_vektis_flow` writes, under `DIR`:

- `vektis_long/year=YYYY/*.parquet`: the long table, Hive-partitioned by year (zstd); a run
  replaces the whole folder, so it never mixes years from different runs;
- `national_totals.parquet`: (year, release, measure, category, total, total_cents);
- `unmapped_gemeenten.csv`: (year, release, gemeente_vektis, insured);
- `validation_summary.json` and `data_docs/index.html`: the Great Expectations validation
  (`expectations/vektis_suite.py`), including the cent-exact reconciliation of every original
  column against an independent sum of the raw file.

In Python: `transforms.vektis.harmonise_vektis(years=None, include_first_release=True)`,
`national_totals(df)`, `unmapped_gemeenten(df)`, `calibration_cells(year)` (national cost profile by
sex and age class, with cost per insured-year for msz, pharmacy, gp, paramedical and maternity) and
`gemeente_population(year)` (insured per gemeente, sex and age class).

## Column mapping, every original column of every file

{vektis_mapping_markdown()}
## National totals

Computed from the harmonised table (all gemeenten including the unknown-gemeente row). Costs in
EUR million per category, insured-years and the total cost exact.

{national_totals_markdown(national_totals(long))}
## Gemeente names without a CBS code

{unmapped_markdown(unmapped_gemeenten(long))}"""


def write_vektis_docs(path: Path = DOCS_PATH, long: pl.DataFrame | None = None) -> Path:
    """Write the generated documentation (``docs/vektis.md`` by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(vektis_docs_markdown(long), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_vektis_docs())

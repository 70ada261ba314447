"""Tests for ``zorgpad ingest-vektis`` on the real bundled Vektis files (no mocks).

The raw files are the oracle: totals are recomputed from their text with Python's Decimal, the
GX suite must pass on the real harmonised table and fail on a damaged copy, and the Prefect flow
runs end to end against a real ephemeral Prefect API (see conftest.py).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from data_docs_check import assert_data_docs_browsable
from expectations.vektis_suite import validate_vektis
from transforms.vektis import (
    AGE_CLASSES,
    LONG_SCHEMA,
    UnknownVektisColumnError,
    available_releases,
    calibration_cells,
    column_mapping,
    gemeente_population,
    harmonise_file,
    harmonise_vektis,
    map_gemeente_names,
    national_totals,
    unmapped_gemeenten,
)
from transforms.vektis.columns import MEASURE_COLUMNS, is_key_column, measure_for_column
from transforms.vektis.docs import DOCS_PATH, vektis_docs_markdown
from transforms.vektis.harmonise import FINAL, FIRST_RELEASE, read_raw


@pytest.fixture(scope="module")
def long_all() -> pl.DataFrame:
    """The harmonised table for every bundled file (about 4.5 million rows, a few seconds)."""
    return harmonise_vektis()


@pytest.fixture(scope="module")
def totals(long_all: pl.DataFrame) -> pl.DataFrame:
    return national_totals(long_all)


def _file(year: int, release: str = FINAL):
    return next(r for r in available_releases() if r.year == year and r.release == release)


# --- the column mapping ----------------------------------------------------------------------


def test_every_original_column_of_every_file_is_mapped() -> None:
    mapping = column_mapping()  # raises on any unknown column
    files = mapping.select("year", "release").unique()
    assert files.height == 14
    assert sorted(files.filter(pl.col("release") == FIRST_RELEASE)["year"].to_list()) == [2015]
    per_file = mapping.group_by("year", "release").agg(pl.len().alias("n")).sort("year", "release")
    n = {(y, r): k for y, r, k in per_file.iter_rows()}
    assert n[(2011, FINAL)] == 23 and n[(2023, FINAL)] == 31
    for r in available_releases():
        header = read_raw(r).columns
        listed = mapping.filter((pl.col("year") == r.year) & (pl.col("release") == r.release))
        assert listed["source_column"].to_list() == header
        assert listed.filter(pl.col("role") == "measure")["measure"].null_count() == 0
    # Every mapping entry is used by at least one real file: the table documents reality.
    assert set(mapping["measure"].drop_nulls()) == {c.measure for c in MEASURE_COLUMNS}


def test_lower_case_and_truncated_names_map_to_the_same_measures_as_upper_case() -> None:
    mapping = column_mapping()
    measures = {
        (year, source): measure
        for year, source, measure in mapping.filter(pl.col("release") == FINAL)
        .select("year", "source_column", "measure")
        .iter_rows()
    }
    assert measures[(2018, "KOSTEN_MEDISCH_SPECIALISTISCHE_ZORG")] == "cost_msz"
    assert measures[(2021, "kosten_medisch_specialistische_zorg")] == "cost_msz"
    assert measures[(2023, "kosten_medisch_specialistische_z")] == "cost_msz"
    assert (
        measures[(2023, "kosten_paramedische_zorg_fysioth")]
        == measures[(2018, "KOSTEN_PARAMEDISCHE_ZORG_FYSIOTHERAPIE")]
    )
    assert (
        measures[(2023, "kosten_geriatrische_revalidatiez")] == measures[(2018, "KOSTEN_GERIATRISCHE_REVALIDATIEZORG")]
    )
    assert measures[(2021, "kosten_specialistische_ggz")] == measures[(2014, "KOSTEN_SPECIALISTISCHE_GGZ")]
    # The categories that make years comparable: every year has msz, gp, ggz, maternity costs.
    categories = (
        mapping.filter(pl.col("role") == "measure").group_by("year", "release").agg(pl.col("category").unique())
    )
    for _, _, cats in categories.iter_rows():
        assert {
            "population",
            "msz",
            "pharmacy",
            "gp",
            "ggz",
            "paramedical",
            "maternity",
            "other",
        } <= set(cats)


def test_unknown_new_column_raises_and_names_it() -> None:
    raw = read_raw(_file(2023)).with_columns(pl.lit("12.50").alias("kosten_digitale_zorg"))
    with pytest.raises(UnknownVektisColumnError, match="kosten_digitale_zorg"):
        harmonise_file(raw, 2024, FINAL)
    with pytest.raises(UnknownVektisColumnError, match="KOSTEN_MEDISCH_SPECIALISTISCHE"):
        measure_for_column("KOSTEN_MEDISCH_SPECIALISTISCHE")  # a prefix is not a guess we make


def test_amounts_are_parsed_exactly_and_bad_text_raises() -> None:
    raw = read_raw(_file(2011)).head(3)
    cost = "KOSTEN_OVERIG"
    tricky = raw.with_columns(pl.Series(cost, ["-0.5", "1234567.89", "7"]))
    long = harmonise_file(tricky, 2011, FINAL).filter(pl.col("source_column") == cost)
    assert long["value_cents"].to_list() == [-50, 123456789, 700]
    assert long["value"].to_list() == [-0.5, 1234567.89, 7.0]
    for bad in ("1,5", "1.234", "twelve"):
        with pytest.raises(ValueError, match=cost):
            harmonise_file(raw.with_columns(pl.Series(cost, [bad, "1", "2"])), 2011, FINAL)


# --- nothing lost, exact money ---------------------------------------------------------------


def test_national_totals_equal_the_raw_column_sums_to_the_cent(long_all: pl.DataFrame, totals: pl.DataFrame) -> None:
    by_source = long_all.group_by("year", "release", "source_column").agg(
        pl.col("measure").first(), pl.col("value_cents").sum(), pl.len()
    )
    harmonised = {(y, r, s): (m, c, n) for y, r, s, m, c, n in by_source.iter_rows()}
    national = {(y, r, m): c for y, r, m, c in totals.select("year", "release", "measure", "total_cents").iter_rows()}
    checked = 0
    for f in available_releases():
        raw = read_raw(f)
        for column in (c for c in raw.columns if not is_key_column(c)):
            raw_cents = sum(Decimal(v) for v in raw[column].to_list()) * 100
            measure, cents, rows = harmonised[(f.year, f.release, column)]
            assert rows == raw.height, (f.label, column)
            assert cents == raw_cents, (f.label, column)
            assert national[(f.year, f.release, measure)] == raw_cents, (f.label, column)
            checked += 1
    assert checked == len(harmonised) == 338
    # The Float64 value is the nearest double of the same text: scaling it back gives the cents.
    assert long_all.filter((pl.col("value") * 100).round().cast(pl.Int64) != pl.col("value_cents")).height == 0


def test_unknown_gemeente_row_is_kept(long_all: pl.DataFrame) -> None:
    unknown = long_all.filter(pl.col("gemeente_vektis").is_null())
    per_file = unknown.group_by("year", "release").agg(pl.col("measure").n_unique().alias("measures"), pl.len())
    assert per_file.height == 14
    assert (per_file["measures"] == per_file["len"]).all()  # one cell per file, every measure
    assert unknown.select("sex", "age_class", "age_min", "gemeente_code").null_count().row(0) == (unknown.height,) * 4
    insured_2011 = unknown.filter((pl.col("year") == 2011) & (pl.col("measure") == "insured"))["value"].item()
    assert insured_2011 == 271_167  # the first data row of the 2011 file
    # In 2023 the unknown row is not the first row of the file; it is still found and kept.
    assert read_raw(_file(2023)).row(0)[0] is not None
    assert unknown.filter((pl.col("year") == 2023) & (pl.col("measure") == "insured"))["value"].item() == 428_642


def test_sex_age_and_schema(long_all: pl.DataFrame) -> None:
    assert dict(long_all.schema) == LONG_SCHEMA
    known = long_all.filter(pl.col("gemeente_vektis").is_not_null())
    assert set(known["sex"].unique()) == {"M", "V"}
    assert set(known["age_class"].unique()) == set(AGE_CLASSES)
    assert known.select(pl.col("sex", "age_class", "age_min").null_count()).row(0) == (0, 0, 0)
    ages = known.select("age_class", "age_min").unique().sort("age_min")
    assert ages["age_class"].to_list() == list(AGE_CLASSES)
    assert ages["age_min"].to_list() == list(range(0, 95, 5))


def test_unmapped_gemeenten_are_reported_and_not_dropped(long_all: pl.DataFrame, totals: pl.DataFrame) -> None:
    report = unmapped_gemeenten(long_all)
    names = {(y, r): set(g["gemeente_vektis"]) for (y, r), g in report.group_by("year", "release")}
    # The 2011-2018 final files use the 2020 division: everything maps.
    assert all((y, FINAL) not in names for y in range(2011, 2019))
    # The first 2015 release uses the 2015 division: merged municipalities are reported.
    first = names[(2015, FIRST_RELEASE)]
    assert {"AALBURG", "LEEK", "HAREN", "HAARLEMMERLIEDE CA", "VIANEN", "ZUIDHORN"} <= first
    assert len(first) == 45
    final_2015 = set(
        long_all.filter((pl.col("year") == 2015) & (pl.col("release") == FINAL))["gemeente_vektis"].drop_nulls()
    )
    assert not first & final_2015  # names that exist in the older division only
    # Later mergers applied retroactively by Vektis have no 2020 code either.
    assert names[(2023, FINAL)] == {
        "DIJK EN WAARD",
        "EEMSDELTA",
        "LAND VAN CUIJK",
        "MAASHORST",
        "VOORNE AAN ZEE",
    }
    # Spelling variants of 2020 municipalities do map.
    mapped = map_gemeente_names(["NOORD BEVELAND", "S GRAVENHAGE", "SUDWEST-FRYSLAN", "AALBURG"])
    codes = dict(zip(mapped["gemeente_vektis"], mapped["gemeente_code"], strict=True))
    assert codes == {
        "AALBURG": None,
        "NOORD BEVELAND": "GM1695",
        "S GRAVENHAGE": "GM0518",
        "SUDWEST-FRYSLAN": "GM1900",
    }
    # Nothing dropped: mapped + unmapped + unknown insured add up to the national total.
    insured = (
        long_all.filter(pl.col("measure") == "insured")
        .group_by("year", "release")
        .agg(
            pl.col("value_cents").filter(pl.col("gemeente_code").is_not_null()).sum().alias("mapped"),
            pl.col("value_cents").filter(pl.col("gemeente_code").is_null()).sum().alias("rest"),
        )
    )
    national = totals.filter(pl.col("measure") == "insured").select("year", "release", "total_cents")
    check = insured.join(national, on=["year", "release"])
    assert (check["mapped"] + check["rest"] == check["total_cents"]).all()
    unmapped_insured = report.filter(pl.col("year") == 2023)["insured"].sum()
    unknown_insured = 428_642
    assert check.filter(pl.col("year") == 2023)["rest"].item() == (unmapped_insured + unknown_insured) * 100


# --- calibration outputs and sanity numbers --------------------------------------------------


def test_national_totals_2023_match_the_published_order_of_magnitude(totals: pl.DataFrame) -> None:
    t2023 = {
        m: v
        for m, v in totals.filter((pl.col("year") == 2023) & (pl.col("release") == FINAL))
        .select("measure", "total")
        .iter_rows()
    }
    assert t2023["insured"] == pytest.approx(18.3e6, rel=0.005)  # 18,295,155
    assert t2023["cost_msz"] == pytest.approx(29.0e9, rel=0.01)  # EUR 28.97 bn
    # The two 2015 releases differ per gemeente but not nationally.
    t2015 = totals.filter(pl.col("year") == 2015).pivot(on="release", index="measure", values="total_cents")
    assert (t2015[FINAL] == t2015[FIRST_RELEASE]).all()


def test_calibration_cells_2017_cost_rises_with_age() -> None:
    cells = calibration_cells(2017)
    assert cells.height == 2 * len(AGE_CLASSES) + 1  # plus the unknown-gemeente row
    for column in (
        "insured",
        "insured_years",
        "cost_msz",
        "per_capita_msz",
        "per_capita_maternity",
    ):
        assert column in cells.columns
    national = national_totals(harmonise_vektis([2017], include_first_release=False))
    total = {m: c for m, c in national.select("measure", "total_cents").iter_rows()}
    assert cells["insured"].sum() * 100 == total["insured"]
    assert cells["cost_msz"].sum() == pytest.approx(total["cost_msz"] / 100, rel=1e-12)
    for sex in ("M", "V"):
        msz = dict(cells.filter(pl.col("sex") == sex).select("age_class", "per_capita_msz").iter_rows())
        assert msz["20-24"] < msz["45-49"] < msz["65-69"] < msz["75-79"]
    men = cells.filter((pl.col("sex") == "M") & pl.col("age_min").is_between(20, 80))["per_capita_msz"]
    assert men.is_sorted()
    # Maternity care is a women-of-childbearing-age category.
    women = dict(cells.filter(pl.col("sex") == "V").select("age_class", "per_capita_maternity").iter_rows())
    men_maternity = dict(cells.filter(pl.col("sex") == "M").select("age_class", "per_capita_maternity").iter_rows())
    assert women["30-34"] > 100 * max(men_maternity.values())


def test_gemeente_population_covers_everyone() -> None:
    population = gemeente_population(2023)
    assert list(population.columns)[:1] == ["gemeente_code"]
    assert population["insured"].sum() == 18_295_155
    assert population.filter(pl.col("gemeente_code").is_not_null())["gemeente_code"].n_unique() == 337
    assert population.filter(pl.col("gemeente_code").is_null())["gemeente_vektis"].drop_nulls().n_unique() == 5
    assert population.filter(pl.col("gemeente_vektis").is_null())["insured"].to_list() == [428_642]


# --- Great Expectations ------------------------------------------------------------------------


def test_gx_suite_passes_on_the_real_data(long_all: pl.DataFrame) -> None:
    validation = validate_vektis(long_all)
    assert validation.success, json.dumps(validation.summary["suites"], indent=1)[:3000]
    assert validation.summary["reconciliation"]["columns_checked"] == 338
    assert validation.summary["reconciliation"]["mismatches"] == []


def test_gx_suite_fails_on_a_corrupted_copy(long_all: pl.DataFrame) -> None:
    good = long_all.filter(pl.col("year") == 2023)
    lost_cell = (
        pl.col("gemeente_vektis").eq_missing("AMERSFOORT")
        & pl.col("sex").eq_missing("V")
        & pl.col("age_class").eq_missing("5-9")
        & (pl.col("measure") == "cost_msz")
    )
    dropped = good.filter(~lost_cell)
    assert dropped.height == good.height - 1
    validation = validate_vektis(dropped, years=[2023])
    assert not validation.success
    failed = {f["expectation"] for s in validation.summary["suites"] for f in s["failed"]}
    assert failed == {"expect_column_pair_values_to_be_equal"}
    mismatches = validation.summary["reconciliation"]["mismatches"]
    assert [m["source_column"] for m in mismatches] == ["kosten_medisch_specialistische_z"]
    assert mismatches[0]["raw_total_cents"] - mismatches[0]["harmonised_total_cents"] == 199307792

    # A sex on the unknown-gemeente row and a missing year are caught by the long-table suite.
    damaged = good.with_columns(
        pl.when(pl.col("gemeente_vektis").is_null()).then(pl.lit("M")).otherwise(pl.col("sex")).alias("sex")
    )
    validation = validate_vektis(damaged, years=[2022, 2023])
    failed = {f["expectation"] for s in validation.summary["suites"] for f in s["failed"]}
    assert {
        "expect_column_values_to_be_null",
        "expect_column_distinct_values_to_equal_set",
    } <= failed


# --- documentation -----------------------------------------------------------------------------


def test_docs_equal_the_generated_text(long_all: pl.DataFrame) -> None:
    generated = vektis_docs_markdown(long_all)
    assert DOCS_PATH.read_text(encoding="utf-8") == generated, (
        "docs/vektis.md is stale: regenerate with `python -m transforms.vektis.docs`"
    )
    for spec in MEASURE_COLUMNS:
        assert f"`{spec.measure}`" in generated


# --- CLI and Prefect flow ------------------------------------------------------------------------


def test_cli_rejects_bad_years(tmp_path: Path) -> None:
    import flows.vektis_command  # noqa: F401  (registers ingest-vektis)
    from flows.cli import UserError, app

    for years in ("2009-2011", "2015-", "2020-2016"):
        result = CliRunner().invoke(app, ["ingest-vektis", "--out", str(tmp_path), "--years", years])
        assert isinstance(result.exception, UserError), (years, result.output)
    assert not any(tmp_path.iterdir())


def _prefect_server_importable() -> str | None:
    """Why the ephemeral Prefect server cannot start in this environment, or None."""
    try:
        import prefect.server.api.server  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - whatever stops the import is the reason to skip
        return f"{type(exc).__name__}: {exc}"
    return None


def test_flow_end_to_end_through_the_cli(tmp_path: Path) -> None:
    problem = _prefect_server_importable()
    if problem is not None:  # fail fast instead of waiting for the server start-up timeout
        pytest.fail(f"the ephemeral Prefect server cannot start in this environment: {problem}")
    import flows.vektis_command  # noqa: F401
    from flows.cli import app

    out = tmp_path / "vektis"
    result = CliRunner().invoke(app, ["ingest-vektis", "--out", str(out), "--years", "2022-2023"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Data Docs:" in result.output and str(out / "data_docs" / "index.html") in result.output

    assert (out / "data_docs" / "index.html").is_file()
    assert_data_docs_browsable(out / "data_docs" / "index.html", min_pages=3)
    assert sorted(p.name for p in (out / "vektis_long").iterdir()) == ["year=2022", "year=2023"]
    summary = json.loads((out / "validation_summary.json").read_text())
    assert summary["success"] and summary["releases"] == ["2022/final", "2023/final"]

    from transforms.vektis.storage import read_long

    long = read_long(out / "vektis_long")
    assert long.equals(harmonise_vektis([2022, 2023]))
    assert pl.read_parquet(out / "national_totals.parquet").equals(national_totals(long))
    unmapped = pl.read_csv(out / "unmapped_gemeenten.csv")
    assert unmapped.columns == ["year", "release", "gemeente_vektis", "insured"]
    assert set(unmapped.filter(pl.col("year") == 2023)["gemeente_vektis"]) >= {
        "EEMSDELTA",
        "VOORNE AAN ZEE",
    }

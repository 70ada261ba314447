"""Tests for ``zorgpad regional`` on the real Vektis data (no mocks).

The harmonised table of the bundled files is the oracle (``harmonise_vektis()``, as in
tests/test_vektis.py): the panel of every year 2011-2023 is built from it, written as parquet and
read back, and its totals, expected values and one O/E are recomputed from the harmonised rows by
hand. The command runs end to end on a real ``zorgpad ingest-vektis`` folder (2022-2023, so the
Great Expectations validation stays short), through the CLI and the Prefect flow; a rebuild gives
the same bytes; wrong folders are refused with one ``error:`` line.
"""

from __future__ import annotations

import json
from fractions import Fraction
from math import floor
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from folder_content import folder_content
from test_cli_safety import assert_one_error_line, zorgpad
from transforms.panels.funnel import Z95, Z998
from transforms.regional.panel import TOTAL, UNKNOWN, UNMAPPED_PREFIX, cells, largest_remainder, regional_panel
from transforms.regional.run import build_regional
from transforms.regional.tables import table
from transforms.vektis import harmonise_vektis
from transforms.vektis.columns import POPULATION
from transforms.vektis.harmonise import FINAL

# integration: the Vektis data harmonised and the regional panel built through the CLI
pytestmark = pytest.mark.integration

YEARS = list(range(2011, 2024))


@pytest.fixture(scope="module")
def long_all() -> pl.DataFrame:
    """The harmonised table of every bundled file (about 4.5 million rows)."""
    return harmonise_vektis()


@pytest.fixture(scope="module")
def panel(long_all: pl.DataFrame):
    return regional_panel(long_all)


@pytest.fixture(scope="module")
def written(panel, tmp_path_factory) -> pl.DataFrame:
    """The ``regional`` table of 2011-2023 written as declared and read back from the parquet."""
    root = tmp_path_factory.mktemp("regional_all")
    spec = table("regional")
    spec.write(panel.regional.select(spec.column_names), root)
    return spec.read(root)


@pytest.fixture(scope="module")
def final(long_all: pl.DataFrame) -> pl.DataFrame:
    return long_all.filter(pl.col("release") == FINAL)


# --- reconciliation with the harmonised input ----------------------------------------------------


def test_national_totals_equal_the_harmonised_input_to_the_cent_every_year(written, final) -> None:
    assert sorted(written["year"].unique().to_list()) == YEARS
    cost_in = (
        final.filter(pl.col("category") != POPULATION).group_by("year", "category").agg(pl.col("value_cents").sum())
    )
    iy_in = final.filter(pl.col("measure") == "insured_years").group_by("year").agg(pl.col("value_cents").sum())
    insured_in = final.filter(pl.col("measure") == "insured").group_by("year").agg(pl.col("value_cents").sum())
    expected_cost = {(int(y), c): v for y, c, v in cost_in.iter_rows()}
    out = written.group_by("year", "category").agg(
        pl.col("cost_cents").sum(),
        (pl.col("insured_years") * 100).round().cast(pl.Int64).sum().alias("iy"),
        pl.col("insured").sum(),
        pl.len(),
    )
    got = {(y, c): (cost, iy, ins, n) for y, c, cost, iy, ins, n in out.iter_rows()}
    for year in YEARS:
        categories = {c for (y, c) in expected_cost if y == year}
        assert {c for (y, c) in got if y == year} == categories | {TOTAL}, year
        for category in categories:
            assert got[(year, category)][0] == expected_cost[(year, category)], (year, category)
        assert got[(year, TOTAL)][0] == sum(expected_cost[(year, c)] for c in categories), year
        iy = iy_in.filter(pl.col("year") == year)["value_cents"].item()
        insured = insured_in.filter(pl.col("year") == year)["value_cents"].item() // 100
        for category in categories | {TOTAL}:  # every category row carries the whole population
            assert got[(year, category)][1] == iy, (year, category)
            assert got[(year, category)][2] == insured, (year, category)
    # the published 2023 total of docs/vektis.md
    assert got[(2023, TOTAL)][0] == 5_515_368_514_685


def test_expected_equals_observed_per_year_and_category(written) -> None:
    standardised = written.filter(pl.col("gemeente") != UNKNOWN)
    assert standardised["expected_cents"].null_count() == 0
    sums = standardised.group_by("year", "category").agg(
        (pl.col("expected_cents").sum() - pl.col("cost_cents").sum()).alias("gap")
    )
    assert sums.height == written.select("year", "category").n_unique()
    assert (sums["gap"] == 0).all(), sums.filter(pl.col("gap") != 0)
    # the national O/E is 1: weighted by expected, the gemeenten's O/E average to 1
    total = standardised.filter((pl.col("category") == TOTAL) & (pl.col("year") == 2023))
    assert (total["oe"] * total["expected_cents"]).sum() / total["expected_cents"].sum() == pytest.approx(1, abs=1e-12)


def test_release_final_only(panel, long_all) -> None:
    first = long_all.filter(pl.col("release") != FINAL)
    assert panel.excluded == {"2015/first_release": first.height} and first.height > 0
    assert panel.regional.filter(pl.col("year") == 2015)["gemeente"].n_unique() == 356  # 355 + unknown


def test_o_e_by_hand_from_the_harmonised_rows(final, written) -> None:
    """Schiermonnikoog (the smallest gemeente) 2017: national rate per sex x age cell from the raw
    rows, exact fractions, expected = sum(insured-years x rate), O/E = observed / expected."""
    rows = final.filter(pl.col("year") == 2017).select(
        "gemeente_code", "sex", "age_class", "measure", "category", "value_cents"
    )
    for category in ("msz", TOTAL):
        cost: dict[tuple, int] = {}
        years: dict[tuple, int] = {}
        observed = 0
        cells_here: dict[tuple, int] = {}
        for code, sex, age, measure, cat, cents in rows.iter_rows():
            in_category = cat != POPULATION and (category == TOTAL or cat == category)
            if sex is not None:
                if in_category:
                    cost[(sex, age)] = cost.get((sex, age), 0) + cents
                if measure == "insured_years":
                    years[(sex, age)] = years.get((sex, age), 0) + cents
            if code == "GM0088":
                if in_category:
                    observed += cents
                if measure == "insured_years":
                    cells_here[(sex, age)] = cents
        expected = sum(Fraction(n) * Fraction(cost[cell], years[cell]) for cell, n in cells_here.items())
        row = written.filter(
            (pl.col("year") == 2017) & (pl.col("gemeente") == "GM0088") & (pl.col("category") == category)
        ).row(0, named=True)
        assert len(cells_here) < 38  # Vektis suppressed some of its cells: the hand computation skips them too
        assert row["cost_cents"] == observed
        assert abs(row["expected_cents"] - expected) < 1
        assert row["oe"] == observed / row["expected_cents"]
        assert row["oe"] == pytest.approx(float(Fraction(observed) / expected), abs=float(observed / expected**2))
        assert row["insured_years"] == sum(cells_here.values()) / 100
        per_year = Fraction(observed * 100, sum(cells_here.values()))
        assert row["cost_per_insured_year_cents"] == floor(per_year + Fraction(1, 2))  # half away from zero (> 0)


def test_unknown_gemeente_and_unmapped_names_are_kept(written, final) -> None:
    unknown = written.filter(pl.col("gemeente") == UNKNOWN)
    assert sorted(unknown["year"].unique().to_list()) == YEARS
    assert (
        unknown.select("gemeente_code", "gemeente_vektis", "expected_cents", "oe", "se0", "outlier", "trend_slope")
        .null_count()
        .row(0)
        == (unknown.height,) * 7
    )
    raw = final.filter(
        pl.col("gemeente_vektis").is_null() & (pl.col("measure") == "insured_years") & (pl.col("year") == 2011)
    )["value"].item()
    assert unknown.filter((pl.col("year") == 2011) & (pl.col("category") == TOTAL))["insured_years"].item() == raw
    assert (unknown["cost_cents"] != 0).any()
    unmapped = written.filter(pl.col("gemeente").str.starts_with(UNMAPPED_PREFIX) & (pl.col("category") == TOTAL))
    names = dict(unmapped.group_by("year").agg(pl.col("gemeente_vektis").sort()).iter_rows())
    assert names[2019] == ["EEMSDELTA"]
    assert names[2023] == ["DIJK EN WAARD", "EEMSDELTA", "LAND VAN CUIJK", "MAASHORST", "VOORNE AAN ZEE"]
    assert unmapped["gemeente_code"].null_count() == unmapped.height
    assert unmapped["oe"].null_count() == 0  # they have sex and age cells: standardised like any other
    eemsdelta = unmapped.filter(pl.col("gemeente") == "vektis:EEMSDELTA")
    assert eemsdelta["trend_years"].to_list() == [5] * 5  # 2019-2023


# --- funnel and trend ------------------------------------------------------------------------------


def test_funnel_limits_follow_the_panels_rules(written, panel, final) -> None:
    rows = written.filter((pl.col("year") == 2023) & (pl.col("category") == TOTAL) & pl.col("oe").is_not_null())
    s = panel.dispersion.filter(pl.col("category") == TOTAL)["cv_person"].item()
    assert 1 < s < 4  # one insured-year's cost: sd a few times its mean
    assert rows["phi"].n_unique() == 1 and rows["phi"][0] > 1 and rows["tau2"][0] > 0  # gemeenten differ
    tau2 = rows["tau2"][0]
    half95 = Z95 * np.sqrt(rows["se0"].to_numpy() ** 2 + tau2)
    assert np.allclose(rows["limit95_adj_high"].to_numpy(), 1 + half95)
    assert np.allclose(rows["limit998_adj_low"].to_numpy(), 1 - Z998 * np.sqrt(rows["se0"].to_numpy() ** 2 + tau2))
    assert np.allclose(rows["limit95_low"].to_numpy(), 1 - Z95 * rows["se0"].to_numpy())
    high = rows.filter(pl.col("oe") > pl.col("limit998_adj_high"))["gemeente"].to_list()
    low = rows.filter(pl.col("oe") < pl.col("limit998_adj_low"))["gemeente"].to_list()
    assert sorted(rows.filter(pl.col("outlier") == "high")["gemeente"].to_list()) == sorted(high)
    assert sorted(rows.filter(pl.col("outlier") == "low")["gemeente"].to_list()) == sorted(low)
    assert "GM0917" in high  # Heerlen: South Limburg costs more than its age and sex predict
    # se0 = s sqrt(sum(n m^2)) / E, by hand for Schiermonnikoog from the rates table
    rates = panel.rates.filter((pl.col("year") == 2023) & (pl.col("category") == TOTAL))
    rate = {(r["sex"], r["age_class"]): r["rate_cents"] for r in rates.iter_rows(named=True)}
    cell_rows = cells(final.filter(pl.col("year") == 2023)).filter(
        (pl.col("gemeente") == "GM0088") & (pl.col("category") == TOTAL)
    )
    n = cell_rows["iy_hundredths"].to_numpy() / 100
    m = np.array([rate[(a, b)] for a, b in cell_rows.select("sex", "age_class").iter_rows()])
    row = rows.filter(pl.col("gemeente") == "GM0088").row(0, named=True)
    assert row["se0"] == pytest.approx(s * np.sqrt((n * m**2).sum()) / row["expected_cents"], rel=1e-9)


def test_trend_is_the_least_squares_slope_of_o_e(written) -> None:
    amsterdam = written.filter((pl.col("gemeente") == "GM0363") & (pl.col("category") == TOTAL)).sort("year")
    slope, _ = np.polyfit(amsterdam["year"].to_numpy(), amsterdam["oe"].to_numpy(), 1)
    assert amsterdam["trend_years"].to_list() == [13] * 13
    assert amsterdam["trend_slope"].n_unique() == 1
    assert amsterdam["trend_slope"][0] == pytest.approx(slope, rel=1e-9)
    assert 0 < amsterdam["trend_slope_se"][0] < abs(slope)


def test_largest_remainder_adds_up_exactly() -> None:
    frame = pl.DataFrame(
        {
            "g": ["a", "a", "a", "b", "b"],
            "unit": ["x", "y", "z", "x", "y"],
            "value": [0.5, 0.5, 1.0, -1.25, 3.25],
            "total": [2, 2, 2, 2, 2],
        }
    )
    out = largest_remainder(frame, "value", "total", ["g"], "unit").to_list()
    assert out == [1, 0, 1, -1, 3]  # the tie at .5 goes to the first unit
    with pytest.raises(ValueError, match="does not add up"):
        largest_remainder(frame.with_columns(pl.lit(9).alias("total")), "value", "total", ["g"], "unit")


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vektis_folder(tmp_path_factory) -> Path:
    """A real ``zorgpad ingest-vektis`` output, 2022-2023 (the validation of every year takes a minute)."""
    import flows.commands  # noqa: F401  (registers every command)
    from flows.cli import app

    out = tmp_path_factory.mktemp("vektis") / "vektis"
    result = CliRunner().invoke(app, ["ingest-vektis", "--out", str(out), "--years", "2022-2023"])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


def test_the_flow_through_the_cli_and_a_rebuild_give_the_same_files(vektis_folder, tmp_path, long_all) -> None:
    from flows.cli import app

    out = tmp_path / "regional"
    result = CliRunner().invoke(app, ["regional", "--vektis", str(vektis_folder), "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "release final only" in result.output and str(out / "manifest.json") in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["zorgpad"]["kind"] == "regional" and manifest["release"] == FINAL
    assert manifest["years"] == [2022, 2023] and manifest["excluded_rows"] == {}
    vektis_manifest = vektis_folder / "manifest.json"
    from transforms.hashing import file_sha256

    assert manifest["inputs"]["vektis"]["manifest_sha256"] == file_sha256(vektis_manifest)
    assert sorted(manifest["inputs"]["vektis"]["files"]) == [
        "vektis_long/year=2022/part-0.parquet",
        "vektis_long/year=2023/part-0.parquet",
    ]
    assert manifest["plots"] == [
        "plots/funnel_total_2022.png",
        "plots/funnel_total_2023.png",
        "plots/trend_total_largest12.png",
    ]
    for plot in manifest["plots"]:
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert manifest["cv_person"][TOTAL]["pairs"] > 300  # one pair of years per gemeente
    files = sorted(p.relative_to(out).as_posix() for p in (out / "regional").rglob("*.parquet"))
    assert files == ["regional/year=2022/part-0.parquet", "regional/year=2023/part-0.parquet"]

    # what the folder holds reconciles with the harmonised input of those years
    regional = table("regional").read(out)
    assert regional.height == manifest["rows"]["regional"]
    cost = regional.filter(pl.col("category") == TOTAL).group_by("year").agg(pl.col("cost_cents").sum())
    source = (
        long_all.filter(
            (pl.col("release") == FINAL) & pl.col("year").is_in([2022, 2023]) & (pl.col("category") != POPULATION)
        )
        .group_by("year")
        .agg(pl.col("value_cents").sum())
    )
    assert dict(cost.iter_rows()) == {int(y): v for y, v in source.iter_rows()}
    # the hive layout reads back in another engine too
    import duckdb

    n = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{out}/regional/**/*.parquet', hive_partitioning = true) "
        "WHERE year = 2023 AND category = 'total'"
    ).fetchall()[0][0]
    assert n == regional.filter((pl.col("year") == 2023) & (pl.col("category") == TOTAL)).height

    before = folder_content(out)
    build_regional(vektis_folder, out)  # without Prefect, over the earlier output
    assert folder_content(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regional"]  # no lock or work folder left


def test_refused_inputs_give_one_error_line(vektis_folder, tmp_path) -> None:
    """In its own process, as a user runs it: one ``error:`` line, exit status 2, nothing written."""
    done = zorgpad(tmp_path, "regional", "--vektis", str(tmp_path / "missing"), "--out", str(tmp_path / "r"))
    assert_one_error_line(done, "--vektis", "does not exist", "zorgpad ingest-vektis")

    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "manifest.json").write_text(
        json.dumps({"zorgpad": {"kind": "vektis", "format": 1}, "validation_success": False})
    )
    done = zorgpad(tmp_path, "regional", "--vektis", str(failed), "--out", str(tmp_path / "r"))
    assert_one_error_line(done, "--vektis", "validation did not pass")

    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("keep me")
    done = zorgpad(tmp_path, "regional", "--vektis", str(vektis_folder), "--out", str(thesis))
    assert_one_error_line(done, "--out", "not a zorgpad regional folder")
    assert [p.name for p in thesis.iterdir()] == ["chapter1.tex"]
    assert not (tmp_path / "r").exists()


def test_other_refusals_before_any_work(vektis_folder, tmp_path) -> None:
    """The same checks the command makes first (``preflight``), for the remaining cases."""
    from transforms.output_folder import OutputError
    from transforms.regional.run import preflight

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OutputError, match="is not a zorgpad Vektis folder"):
        preflight(empty, tmp_path / "r")
    with pytest.raises(OutputError, match="lies inside the Vektis folder"):
        preflight(vektis_folder, vektis_folder / "regional")
    with pytest.raises(OutputError, match="is the Vektis folder"):
        preflight(vektis_folder, vektis_folder)
    hollow = tmp_path / "hollow"
    hollow.mkdir()
    (hollow / "manifest.json").write_text(
        json.dumps({"zorgpad": {"kind": "vektis", "format": 1}, "validation_success": True})
    )
    with pytest.raises(OutputError, match="has no harmonised table"):
        preflight(hollow, tmp_path / "r")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "hollow"]

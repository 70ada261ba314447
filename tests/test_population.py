"""``zorgpad population``: the five benchmarks and the placebo against values computed here by hand,
and the command end to end (Prefect flow, Dask, a real Vektis folder) on a generated store, whose
population spending is recomputed from the store's claim lines; refused inputs give one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from test_cli_safety import assert_one_error_line, zorgpad
from transforms.population import benchmark as bench
from transforms.population.attribution import registration_fee_codes
from transforms.population.inputs import SPENDING_TABLES

# integration: a generated delivery through every stage and the population command
pytestmark = pytest.mark.integration


def cells_frame(rows: list[tuple]) -> pl.DataFrame:
    """(year, quarter, cents, in_population, in_region, expected, age_min, sex) rows."""
    return pl.DataFrame(
        rows,
        schema={
            "year": pl.Int32,
            "quarter": pl.Int32,
            "cents": pl.Float64,
            "in_population": pl.Boolean,
            "in_region": pl.Boolean,
            "expected_cents": pl.Float64,
            "age_min": pl.Int16,
            "sex": pl.String,
        },
        orient="row",
    )


@pytest.fixture
def hand() -> pl.DataFrame:
    """One quarter: a population of 3, a region of 5 (one with a costly tail), 2 elsewhere."""
    rows = [
        (2018, 1, 100.0, True, True, 50.0, 60, "V"),
        (2018, 1, 300.0, True, True, 150.0, 80, "M"),
        (2018, 1, 200.0, True, True, 50.0, 60, "V"),
    ]
    rows += [
        (2018, 1, c, False, True, e, a, s)
        for c, e, a, s in (
            (80.0, 50.0, 60, "V"),
            (120.0, 50.0, 60, "V"),
            (400.0, 150.0, 80, "M"),
            (100.0, 150.0, 80, "M"),
            (5000.0, 50.0, 60, "V"),
        )
    ]
    rows += [(2018, 1, 60.0, False, False, 50.0, 60, "V"), (2018, 1, 140.0, False, False, 50.0, 60, "V")]
    return cells_frame(rows)


def test_every_benchmark_by_hand(hand):
    got = {r["benchmark"]: r for r in bench.quarter_benchmarks(hand).iter_rows(named=True)}
    pop = np.array([100.0, 300.0, 200.0])
    region = np.array([80.0, 120.0, 400.0, 100.0, 5000.0])
    others = np.concatenate([region, [60.0, 140.0]])
    assert got["national"]["population_cents"] == pytest.approx(pop.mean())
    assert got["national"]["benchmark_cents"] == pytest.approx(others.mean())
    assert got["national"]["gap_cents"] == pytest.approx(pop.mean() - others.mean())
    assert got["national"]["se_cents"] == pytest.approx(np.sqrt(pop.var(ddof=1) / 3 + others.var(ddof=1) / 7))
    assert got["regional"]["benchmark_cents"] == pytest.approx(region.mean())
    cap = np.percentile(region, 95)  # linear interpolation, over the region's comparison insured
    assert got["regional_capped_p95"]["benchmark_cents"] == pytest.approx(np.minimum(region, cap).mean())
    assert got["regional_capped_p95"]["population_cents"] == pytest.approx(np.minimum(pop, cap).mean())
    # case mix: k = the comparison's observed / expected, applied to the population's expected
    k = others.sum() / np.array([50, 50, 150, 150, 50, 50, 50.0]).sum()
    assert got["casemix"]["benchmark_cents"] == pytest.approx(k * np.array([50, 150, 50.0]).mean())
    # regional case mix capped: the region's capped mean per age x sex, weighted by the population's make-up
    capped = np.minimum(region, cap)
    young_women, old_men = capped[[0, 1, 4]].mean(), capped[[2, 3]].mean()
    assert got["regional_casemix_capped"]["benchmark_cents"] == pytest.approx((2 * young_women + old_men) / 3)
    assert got["regional_casemix_capped"]["population_cents"] == pytest.approx(np.minimum(pop, cap).mean())
    for row in got.values():
        assert row["band_low_cents"] == pytest.approx(row["gap_cents"] - bench.Z95 * row["se_cents"])
        assert row["threshold_euros_per_year"] == pytest.approx(bench.Z95 * row["se_cents"] * 3 * 4 / 100)


def test_the_placebo_uses_the_pre_period_only():
    quarters = pl.DataFrame(
        {
            "benchmark": ["national"] * 6,
            "year": [2018, 2018, 2019, 2020, 2021, 2022],
            "quarter": [1, 2, 1, 1, 1, 1],
            "gap_cents": [10.0, 30.0, 20.0, 999.0, 999.0, -500.0],
            "band_low_cents": [5.0, 25.0, 15.0, 0, 0, 0],
            "band_high_cents": [15.0, 35.0, 25.0, 0, 0, 0],
            "population_insured": [100, 100, 100, 100, 100, 100],
            "threshold_euros_per_year": [1.0] * 6,
            "period": ["pre", "pre", "pre", "excluded", "excluded", "contract"],
        }
    )
    (row,) = bench.placebo(quarters, 2022).iter_rows(named=True)
    gaps = np.array([10.0, 30.0, 20.0])
    assert row["quarters"] == 3 and row["mean_gap_cents"] == pytest.approx(20.0)
    assert row["se_mean_gap_cents"] == pytest.approx(gaps.std(ddof=1) / np.sqrt(3))
    assert row["quarters_outside_band"] == 3
    assert row["spurious_euros_per_year"] == pytest.approx(20.0 * 100 * 4 / 100)
    assert row["spurious"] is True and row["systematic"] is True
    fewer = quarters.with_columns(pl.Series("band_low_cents", [5.0, -1.0, -1.0, 0, 0, 0]))
    (row,) = bench.placebo(fewer, 2022).iter_rows(named=True)
    assert row["quarters_outside_band"] == 1 and row["spurious"] is False  # 1 in 3 can be chance


@given(st.integers(min_value=-5, max_value=130))
def test_age_classes_are_vektis(age):
    got = pl.select(bench.age_class_min(pl.lit(age))).item()
    assert got == min(max(age, 0) // 5, 18) * 5


# ------------------------------------------------------------------------------ the command
@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    import flows.commands  # noqa: F401  (registers every command)
    from flows.cli import app
    from transforms.ingest.run import ingest
    from transforms.synth import SynthConfig, generate_delivery

    root = tmp_path_factory.mktemp("population")
    generate_delivery(
        SynthConfig(patients=3_000, first_year=2015, last_year=2017, seed=5, clean=True, block_size=3_000),
        root / "delivery",
    )
    ingest(root / "delivery", root / "store", n_buckets=2, data_docs=False)
    done = CliRunner().invoke(app, ["ingest-vektis", "--out", str(root / "vektis"), "--years", "2022-2023"])
    assert done.exit_code == 0, done.output
    fees = pl.read_parquet(sorted((root / "store" / "gp").rglob("*.parquet")))
    fees = fees.filter(pl.col("service_cd").is_in(list(registration_fee_codes())))
    biggest = fees.group_by("provider_agb").len().sort(["len", "provider_agb"], descending=[True, False])
    population = root / "population.yaml"
    population.write_text(
        yaml.safe_dump(
            {
                "name": "two_practices",
                "practices": biggest["provider_agb"].head(2).to_list(),
                "start_date": "2017-01-01",
            }
        )
    )
    return {"root": root, "store": root / "store", "vektis": root / "vektis", "population": population}


def test_the_command_end_to_end(built, tmp_path):
    done = zorgpad(
        tmp_path,
        "population",
        "--store",
        str(built["store"]),
        "--vektis",
        str(built["vektis"]),
        "--population",
        str(built["population"]),
        "--out",
        str(tmp_path / "out"),
        "--workers",
        "2",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    quarters = pl.read_parquet(sorted((out / "population_benchmark").rglob("*.parquet")), hive_partitioning=True)
    assert set(quarters["benchmark"]) == set(bench.BENCHMARKS)
    assert quarters.group_by("benchmark").len()["len"].to_list() == [12] * 5  # 2015-2017
    assert set(quarters.filter(pl.col("year") < 2017)["period"]) == {"pre"}
    placebo = pl.read_parquet(out / "population_placebo" / "part-0.parquet")
    assert placebo.height == 5 and set(placebo["quarters"]) == {8}
    assert "placebo over the pre-period" in done.stdout
    # the population's spending in one quarter, recomputed from the store's claim lines
    practices = manifest["population"]["practices"]
    fees = pl.read_parquet(sorted((built["store"] / "gp").rglob("*.parquet"))).filter(
        pl.col("service_cd").is_in(list(registration_fee_codes()))
        & pl.col("provider_agb").is_in(practices)
        & (pl.col("service_date").dt.year() == 2016)
        & (pl.col("service_date").dt.quarter() == 2)
        & ~pl.col("fully_credited")
    )
    patients = fees["patient_id"].unique()
    total = 0
    for table in SPENDING_TABLES:
        day = "end_date" if table == "dbc" else "service_date"
        lines = pl.read_parquet(sorted((built["store"] / table).rglob("*.parquet")))
        lines = lines.filter(
            pl.col("patient_id").is_in(patients.to_list())
            & (pl.col(day).dt.year() == 2016)
            & (pl.col(day).dt.quarter() == 2)
        )
        total += int((lines["amount"].cast(pl.Decimal(14, 2)) * 100).cast(pl.Int64).sum())
    row = quarters.filter((pl.col("benchmark") == "national") & (pl.col("year") == 2016) & (pl.col("quarter") == 2))
    assert row["population_insured"].item() == patients.len()
    assert row["population_cents"].item() == pytest.approx(total / patients.len())


def test_refused_inputs(built, tmp_path):
    def run(population: Path, *extra: str):
        return zorgpad(
            tmp_path,
            "population",
            "--store",
            str(built["store"]),
            "--vektis",
            str(built["vektis"]),
            "--population",
            str(population),
            "--out",
            str(tmp_path / "out"),
            *extra,
        )

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump({"name": "x", "practices": ["01999999"], "start_date": "2017-01-01"}))
    assert_one_error_line(run(unknown), "practice 01999999 is not in the store's providers")
    early = tmp_path / "early.yaml"
    early.write_text(yaml.safe_dump({**yaml.safe_load(built["population"].read_text()), "start_date": "2015-01-01"}))
    assert_one_error_line(run(early), "start_date 2015-01-01", "pre-period")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [x\n")
    assert_one_error_line(run(broken), "--population", "not valid YAML")
    assert_one_error_line(run(built["population"], "--cap-pct", "100"), "--cap-pct")
    not_vektis = zorgpad(
        tmp_path,
        "population",
        "--store",
        str(built["store"]),
        "--vektis",
        str(built["store"]),
        "--population",
        str(built["population"]),
        "--out",
        str(tmp_path / "out"),
    )
    assert_one_error_line(not_vektis, "--vektis")
    assert not (tmp_path / "out").exists()


def test_a_planted_population_saving_is_inside_the_pre_adjusted_band(built, tmp_path):
    """The generator takes 10% off the spending of a province's largest practices' patients from
    2019 (``truth.json`` ``population_effect``: the known counterfactual); the national benchmark's
    contract-period gap less its pre-period gap holds the planted saving per insured per quarter."""
    from transforms.ingest.run import ingest
    from transforms.population.run import build_population
    from transforms.synth import SynthConfig, generate_delivery, truth_dir
    from transforms.synth.config import PopulationEffect

    config = SynthConfig(
        patients=6_000,
        first_year=2017,
        last_year=2020,
        seed=9,
        clean=True,
        block_size=6_000,
        population=PopulationEffect(province="PV28", practices=1, start_year=2019, spending_pct=-10.0),
    )
    generate_delivery(config, tmp_path / "delivery")
    truth = json.loads((truth_dir(tmp_path / "delivery") / "truth.json").read_text())["population_effect"]
    ingest(tmp_path / "delivery", tmp_path / "store", n_buckets=2, data_docs=False)
    population = tmp_path / "population.yaml"
    population.write_text(
        yaml.safe_dump({"name": "planted", "practices": truth["practices"], "start_date": "2019-01-01"})
    )
    manifest = build_population(tmp_path / "store", built["vektis"], population, tmp_path / "out", excluded_years=())
    quarters = pl.read_parquet(
        sorted((tmp_path / "out" / "population_benchmark").rglob("*.parquet")), hive_partitioning=True
    ).filter(pl.col("benchmark") == "national")
    planted = pl.DataFrame(truth["planted_savings_cents"]).select(
        pl.col("year").cast(pl.Int32), pl.col("quarter").cast(pl.Int32), "cents"
    )
    contract = quarters.filter(pl.col("period") == "contract").join(planted, on=["year", "quarter"], how="left")
    per_insured = float((-contract["cents"].fill_null(0) / contract["population_insured"]).mean())
    assert per_insured < 0  # savings: the gap goes down
    (row,) = [r for r in manifest["savings"] if r["benchmark"] == "national"]
    assert row["pre_adjusted_band_low_cents"] <= per_insured <= row["pre_adjusted_band_high_cents"], (row, per_insured)

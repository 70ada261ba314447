"""Claims maturity (``transforms.maturity``, ``zorgpad maturity``): a hand-computed triangle and
chain-ladder; on a generated delivery the completion factors agree with the declaration-lag
distribution the generator used (``truth.json`` ``declaration_lag``) within 2 percentage points
for every month of run-out up to 12, and the recent immature months are flagged; a rerun gives the
same files; wrong inputs are refused with one error line."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from folder_content import folder_content
from test_cli_safety import assert_one_error_line, zorgpad
from transforms.ingest.run import ingest
from transforms.maturity import docs
from transforms.maturity.chainladder import completion, completion_by_period, development_factors
from transforms.maturity.run import build_maturity, maturity_of
from transforms.maturity.tables import table
from transforms.maturity.triangle import (
    build_triangle,
    declaration_cells,
    last_complete_month,
    month_index,
    original_declarations,
)
from transforms.synth import SynthConfig, generate_delivery, truth_dir
from transforms.synth.claims import DECLARATION_LAG, declaration_lag
from transforms.synth.config import FaultRates
from transforms.synth.lag_truth import lag_days_cdf

# integration: a generated delivery's declaration triangle
pytestmark = pytest.mark.integration

CLAIM_TABLES = ("dbc", "gp", "pharmacy", "paramedical", "maternity")


# ------------------------------------------------------------------------------ by hand
def _month(year: int, month: int, k: int, day: int) -> date:
    index = year * 12 + month - 1 + k
    return date(index // 12, index % 12 + 1, day)


#: (service year, month) -> lines declared k months later, as (number of lines, cents each) per k
HAND = {
    (2019, 12): [(2, 100), (4, 100), (2, 100), (0, 100)],
    (2020, 1): [(3, 100), (6, 200), (3, 100)],
    (2020, 2): [(1, 100), (3, 100)],
    (2020, 3): [(4, 100)],
}


def hand_lines() -> pl.DataFrame:
    rows = []
    for (year, month), by_age in HAND.items():
        for k, (n, cents) in enumerate(by_age):
            rows += [
                {"service_date": date(year, month, 15), "declared_on": _month(year, month, k, 10), "cents": cents}
            ] * n
    return pl.DataFrame(rows, schema={"service_date": pl.Date, "declared_on": pl.Date, "cents": pl.Int64})


def test_the_triangle_and_the_chain_ladder_by_hand():
    """Cumulative lines, by hand (service month: ages 0, 1, 2, 3):
        2019-12: 2 6 8 8      2020-01: 3 9 12      2020-02: 1 4      2020-03: 4
    f0 = (6 + 9 + 4) / (2 + 3 + 1) = 19/6; f1 = (8 + 12) / (6 + 9) = 4/3; f2 = 8/8 = 1 (one service
    month: estimated with min_service_months 1, not with 2); f3: no service month, 1.
    F3 = F2 = 1, F1 = 4/3, F0 = 19/6 x 4/3 = 38/9: completion of 2020-02 (run-out 1) 3/4, of 2020-03
    (run-out 0) 9/38, the older months 1. Ultimate 2020-02: 4 x 4/3 = 16/3, 2020-03: 4 x 38/9 = 152/9.
    Cents (every line 100 cents, the six of 2020-01 at age 1 200 cents):
        2019-12: 200 600 800 800   2020-01: 300 1500 1800   2020-02: 100 400   2020-03: 400
    f0 = 2500/600 = 25/6, f1 = 2600/2100 = 26/21, F0 = 325/63: completion 21/26 and 63/325.
    2020-Q1: lines 20 of 12 + 16/3 + 152/9 = 308/9, completion 45/77; cents 2600 of
    1800 + 400 x 26/21 + 400 x 325/63 = 1800 + 10400/21 + 130000/63 = 274600/63, completion 163800/274600.
    """
    cells = declaration_cells(hand_lines())
    tri = build_triangle(cells, month_index(date(2020, 3, 1)))
    january = tri.filter(pl.col("service_month") == month_index(date(2020, 1, 1)))
    assert january["cumulative_lines"].to_list() == [3, 9, 12]
    assert tri.filter(pl.col("service_month") == month_index(date(2019, 12, 1)))["cumulative_cents"].to_list() == [
        200,
        600,
        800,
        800,
    ]
    assert tri.height == 4 + 3 + 2 + 1

    factors = development_factors(tri, min_service_months=1)
    lines = factors.filter(pl.col("measure") == "lines")
    cents = factors.filter(pl.col("measure") == "cents")
    assert lines["factor"].to_list() == pytest.approx([19 / 6, 4 / 3, 1.0, 1.0], abs=1e-15)
    assert lines["n_service_months"].to_list() == [3, 2, 1, 0]
    assert lines["estimated"].to_list() == [True, True, True, False]
    assert lines["cumulative_factor"].to_list() == pytest.approx([38 / 9, 4 / 3, 1.0, 1.0], abs=1e-15)
    assert cents["factor"].to_list() == pytest.approx([25 / 6, 26 / 21, 1.0, 1.0], abs=1e-15)
    assert cents["completion"].to_list() == pytest.approx([63 / 325, 21 / 26, 1.0, 1.0], abs=1e-15)
    stricter = development_factors(tri, min_service_months=2).filter(pl.col("measure") == "lines")
    assert stricter["estimated"].to_list() == [True, True, False, False]
    assert stricter["factor"].to_list() == pytest.approx([19 / 6, 4 / 3, 1.0, 1.0], abs=1e-15)

    months = completion(tri, factors, mature_at=0.95)
    assert months["runout_months"].to_list() == [3, 2, 1, 0]
    assert months["completion_lines"].to_list() == pytest.approx([1, 1, 3 / 4, 9 / 38], abs=1e-15)
    assert months["completion_cents"].to_list() == pytest.approx([1, 1, 21 / 26, 63 / 325], abs=1e-15)
    assert months["ultimate_lines"].to_list() == pytest.approx([8, 12, 16 / 3, 152 / 9], abs=1e-12)
    assert months["mature"].to_list() == [True, True, False, False]
    assert completion(tri, factors, mature_at=0.7)["mature"].to_list() == [True, True, True, False]

    periods = {(r["period_kind"], r["period"]): r for r in completion_by_period(months).iter_rows(named=True)}
    assert set(periods) == {("year", "2019"), ("year", "2020"), ("quarter", "2019-Q4"), ("quarter", "2020-Q1")}
    q1 = periods[("quarter", "2020-Q1")]
    assert (q1["lines"], q1["n_service_months"], q1["runout_months"]) == (20, 3, 0)
    assert q1["completion_lines"] == pytest.approx(float(Fraction(45, 77)), abs=1e-15)
    assert q1["completion_cents"] == pytest.approx(float(Fraction(163800, 274600)), abs=1e-15)
    assert q1["mature"] is False and periods[("year", "2019")]["completion_lines"] == 1.0
    assert periods[("year", "2020")]["completion_lines"] == q1["completion_lines"]


def test_truncation_at_a_data_as_of_inside_a_month():
    """data_as_of 2020-03-15: March is not complete, so the lines declared on 2020-03-10 and the
    service month 2020-03 are left out, and February is the last development month observed."""
    assert last_complete_month(date(2020, 3, 31)) == month_index(date(2020, 3, 1))
    assert last_complete_month(date(2020, 3, 15)) == month_index(date(2020, 2, 1))
    assert last_complete_month(date(2020, 2, 29)) == month_index(date(2020, 2, 1))
    built = maturity_of(hand_lines(), date(2020, 3, 15))
    tri = built["triangle"]
    assert tri["declaration_month"].max() == month_index(date(2020, 2, 1))
    assert tri["service_month"].max() == month_index(date(2020, 2, 1))
    # declared in March, left out: 2019-12 age 3 (0 lines), 2020-01 age 2 (3), 2020-02 age 1 (3), 2020-03 age 0 (4)
    assert int(built["left_out"]["lines"].sum()) == 3 + 3 + 4
    assert built["completion"]["runout_months"].to_list() == [2, 1, 0]


def test_corrections_count_at_the_original_declaration_and_credited_lines_nowhere():
    stored = pl.DataFrame(
        [
            # an uncorrected line
            ("A", date(2020, 1, 5), date(2020, 1, 20), 1000, 0, False),
            # re-declared: stored with the re-declaration's date (the group's latest), original in the audit
            ("B", date(2020, 1, 5), date(2020, 6, 3), 1100, 2, False),
            # credited to zero: no service
            ("C", date(2020, 1, 5), date(2020, 5, 1), 0, 1, True),
            # partly credited, the original is the stored line: the earliest date known (the credit's)
            ("D", date(2020, 1, 5), date(2020, 7, 1), 400, 2, False),
        ],
        schema=list(
            {"claim_id": 0, "service_date": 0, "declared_on": 0, "cents": 0, "n_corrections": 0, "fully_credited": 0}
        ),
        orient="row",
    ).with_columns(pl.col("n_corrections").cast(pl.Int16))
    corrections = pl.DataFrame(
        [
            ("B", "original", date(2020, 2, 10)),
            ("B", "credit", date(2020, 6, 1)),
            ("C", "credit", date(2020, 5, 1)),
            ("D", "credit", date(2020, 4, 2)),
            ("D", "credit", date(2020, 7, 1)),
        ],
        schema=["root_claim_id", "kind", "declared_on"],
        orient="row",
    )
    out = original_declarations(stored, corrections).collect().sort("cents")
    assert out.rows() == [
        (date(2020, 1, 5), date(2020, 4, 2), 400),
        (date(2020, 1, 5), date(2020, 1, 20), 1000),
        (date(2020, 1, 5), date(2020, 2, 10), 1100),
    ]
    cells = declaration_cells(out)
    assert cells.rows() == [
        (month_index(date(2020, 1, 1)), month_index(date(2020, 1, 1)), 1, 1000),
        (month_index(date(2020, 1, 1)), month_index(date(2020, 2, 1)), 1, 1100),
        (month_index(date(2020, 1, 1)), month_index(date(2020, 4, 1)), 1, 400),
    ]
    assert original_declarations(stored.filter(pl.col("n_corrections") == 0)).collect().height == 1


def test_the_truth_lag_distribution_is_the_generators():
    """``lag_days_cdf`` (the truth) against 400,000 lags drawn by the generator's own function."""
    rng = np.random.default_rng(1)
    for hospital, kind in ((True, "hospital"), (False, "first_line")):
        cdf = lag_days_cdf(DECLARATION_LAG[kind])
        drawn = declaration_lag(rng, 400_000, hospital)
        empirical = np.searchsorted(np.sort(drawn), np.arange(cdf.size), side="right") / drawn.size
        assert np.abs(empirical - cdf).max() < 0.004, kind
        assert cdf[-1] == 1.0 and drawn.max() <= cdf.size - 1


def test_maturity_dictionary_is_up_to_date():
    assert docs.DOCS_PATH.read_text(encoding="utf-8") == docs.render(), (
        "docs/maturity.md is stale: run python -m transforms.maturity.docs"
    )


# ------------------------------------------------------------------------------ on a generated delivery
@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """No errors and no corrections, but lines declared after data_as_of withheld (run-out), as in
    a real delivery: a ``--clean`` delivery dates them data_as_of instead. data_as_of on the last
    day of the last year, so every table has recent immature months."""
    root = tmp_path_factory.mktemp("maturity")
    faults = FaultRates.none().model_copy(update={"late_declarations": True})
    config = SynthConfig(
        patients=20_000,
        first_year=2017,
        last_year=2019,
        seed=3,
        data_as_of=date(2019, 12, 31),
        faults=faults,
        block_size=10_000,
    )
    generate_delivery(config, root / "delivery")
    ingest(root / "delivery", root / "store", n_buckets=4, data_docs=False)
    manifest = build_maturity(root / "store", root / "maturity")
    truth = json.loads((truth_dir(root / "delivery") / "truth.json").read_text())["declaration_lag"]
    return {"root": root, "store": root / "store", "out": root / "maturity", "manifest": manifest, "truth": truth}


def test_completion_agrees_with_the_generators_lag_distribution(built):
    factors = table("development_factors").read(built["out"])
    worst = {}
    for claim_table in CLAIM_TABLES:
        truth = built["truth"][claim_table]
        assert truth["late_lines"] == "withheld" and truth["lines"] > 0
        for measure, key in (("lines", "within_months"), ("cents", "within_months_cents")):
            estimated = (
                factors.filter((pl.col("claim_table") == claim_table) & (pl.col("measure") == measure))
                .sort("development_age")["completion"]
                .to_list()
            )
            diffs = [estimated[r] - truth[key][r] for r in range(13)]
            worst[(claim_table, measure)] = max(abs(d) for d in diffs)
            assert worst[(claim_table, measure)] < 0.02, (claim_table, measure, [round(100 * d, 2) for d in diffs])
    print({k: round(100 * v, 2) for k, v in worst.items()})


def test_recent_immature_months_are_flagged_and_older_ones_mature(built):
    months = table("completion").read(built["out"])
    for claim_table in CLAIM_TABLES:
        truth = built["truth"][claim_table]
        rows = months.filter(pl.col("claim_table") == claim_table).sort("service_month")
        assert rows["service_month"].max() == date(2019, 12, 1)
        flags = rows["mature"].to_list()
        assert not flags[-1] and flags[0], claim_table
        first_immature = flags.index(False)
        assert not any(flags[first_immature:]), f"{claim_table}: a mature month after an immature one"
        for runout, mature in zip(rows["runout_months"].to_list(), flags):
            expected = min(
                truth["within_months"][min(runout, len(truth["within_months"]) - 1)],
                truth["within_months_cents"][min(runout, len(truth["within_months_cents"]) - 1)],
            )
            if abs(expected - 0.95) > 0.01:
                assert mature == (expected >= 0.95), (claim_table, runout, expected)
    periods = table("completion_period").read(built["out"])
    years = periods.filter(pl.col("period_kind") == "year").sort("claim_table", "period")
    assert years.filter(pl.col("period") == "2017")["mature"].all()
    assert not years.filter((pl.col("period") == "2019") & (pl.col("claim_table") == "dbc"))["mature"].any()
    assert not periods.filter(pl.col("period") == "2019-Q4")["mature"].any()


def content(folder: Path) -> dict[str, str]:
    return folder_content(folder)


def test_the_command_rebuilds_the_same_files_and_manifest(built, tmp_path):
    """``zorgpad maturity`` on its earlier output replaces it with the same files."""
    again = tmp_path / "again"
    before = content(built["out"])
    done = zorgpad(tmp_path, "maturity", "--store", str(built["store"]), "--out", str(again))
    assert done.returncode == 0, done.stdout + done.stderr
    done = zorgpad(tmp_path, "maturity", "--store", str(built["store"]), "--out", str(again))
    assert done.returncode == 0, done.stdout + done.stderr
    assert content(again) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("again")) == ["again"]
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["zorgpad"]["kind"] == "maturity" and manifest["data_as_of"] == "2019-12-31"
    store_manifest = (built["store"] / "manifest.json").read_bytes()
    assert manifest["store"]["manifest_sha256"] == hashlib.sha256(store_manifest).hexdigest()
    assert manifest["rows"]["completion"] == 5 * 36
    assert (again / "triangle" / "claim_table=dbc" / "part-0.parquet").is_file()


def test_wrong_inputs_give_one_error_line(built, tmp_path):
    store = str(built["store"])
    done = zorgpad(tmp_path, "maturity", "--store", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m"))
    assert_one_error_line(done, "--store", "does not exist")
    done = zorgpad(tmp_path, "maturity", "--store", str(built["root"] / "delivery"), "--out", str(tmp_path / "m"))
    assert_one_error_line(done, "--store", "is not a zorgpad store")
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("keep me")
    done = zorgpad(tmp_path, "maturity", "--store", store, "--out", str(thesis))
    assert_one_error_line(done, "--out", "chapter1.tex", "choose another folder")
    assert (thesis / "chapter1.tex").read_text() == "keep me" and len(list(thesis.iterdir())) == 1
    done = zorgpad(tmp_path, "maturity", "--store", store, "--out", str(built["store"] / "maturity"))
    assert_one_error_line(done, "--out", "lies inside the store")
    done = zorgpad(tmp_path, "maturity", "--store", store, "--out", str(tmp_path / "m"), "--mature-at", "1.5")
    assert_one_error_line(done, "--mature-at")
    assert not (tmp_path / "m").exists()

"""Contract reconciliation (docs/panels-spec.md section 3): every expected number is computed by hand in the
test, in plain Decimal arithmetic written out step by step, on a dozen hand-built episodes."""

from __future__ import annotations

import itertools
import json
from datetime import date
from decimal import ROUND_HALF_UP
from decimal import Decimal as D
from fractions import Fraction

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.errors import UserFacingError
from transforms.panels.contract_terms import ContractTermsError, check_contracts, parse_terms
from transforms.panels.reconciliation import (
    ReconciliationError,
    compare,
    distribute_cents,
    percentile,
    reconcile,
    round_cents,
)

H1, H2, R1, X1, X2 = "06000001", "06000002", "23000001", "06000003", "06000004"
PROVIDERS = pl.DataFrame(
    {
        "provider_agb": [H1, H2, R1, X1, X2],
        "provider_type": ["hospital", "hospital", "rehabilitation", "hospital", "hospital"],
        "region": ["PV20", "PV20", "PV20", "PV20", "PV21"],  # X1 shares H1's province, X2 lies elsewhere
    }
)
AS_OF = date(2023, 3, 31)
OUTCOMES = {"complication", "length_of_stay", "outpatient_visits"}
_ids = itertools.count(1)


def ep(
    provider: str,
    year: int,
    cents: int,
    *,
    status: str = "complete",
    std: int | None = None,
    patient: str | None = None,
    expected: float | None = None,
    complication: bool = False,
    day: date | None = None,
) -> dict:
    i = next(_ids)
    return {
        "episode_id": f"E{i:05d}",
        "patient_id": patient or f"P{i:05d}",
        "anchor_provider_agb": provider,
        "anchor_year": year,
        "anchor_date": day or date(year, 6, 1),
        "status": status,
        "in_bundle_cents": cents,
        "in_bundle_standardised_cents": cents if std is None else std,
        "expected_cents": expected,
        "complication": complication,
    }


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "episode_id": pl.String,
            "patient_id": pl.String,
            "anchor_provider_agb": pl.String,
            "anchor_year": pl.Int64,
            "anchor_date": pl.Date,
            "status": pl.String,
            "in_bundle_cents": pl.Int64,
            "in_bundle_standardised_cents": pl.Int64,
            "expected_cents": pl.Float64,
            "complication": pl.Boolean,
        },
    )


def contracts(
    params: dict,
    *,
    model: str = "shared_savings_losses",
    providers=(H1,),
    start=date(2018, 1, 1),
    end=None,
    cid: str = "C1",
    bundle: str = "hip_oa",
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "contract_id": [cid] * len(providers),
            "bundle_id": [bundle] * len(providers),
            "provider_agb": list(providers),
            "insurer_uzovi": [None] * len(providers),
            "start_date": [start] * len(providers),
            "end_date": [end] * len(providers),
            "model": [model] * len(providers),
            "parameters": [json.dumps(params)] * len(providers),
        },
        schema={
            "contract_id": pl.String,
            "bundle_id": pl.String,
            "provider_agb": pl.String,
            "insurer_uzovi": pl.String,
            "start_date": pl.Date,
            "end_date": pl.Date,
            "model": pl.String,
            "parameters": pl.String,
        },
    )


def run(rows: list[dict], con: pl.DataFrame, as_of: date = AS_OF, **kw):
    return reconcile("hip_oa", frame(rows), PROVIDERS, con, as_of, outcomes=OUTCOMES, **kw)


def year_row(result, year: int, cid: str = "C1") -> dict:
    rows = result.reconciliation.filter((pl.col("contract_id") == cid) & (pl.col("performance_year") == year))
    assert rows.height == 1
    return rows.row(0, named=True)


def provider_cents(result, year: int, cid: str = "C1") -> dict[str, int]:
    s = result.settlement.filter((pl.col("contract_id") == cid) & (pl.col("performance_year") == year))
    return dict(zip(s["provider_agb"], s["settlement_cents"], strict=True))


def half_up(x: D) -> int:
    """Round to whole cents, half away from zero: the expected values' one rounding step."""
    return int(x.quantize(D(1), rounding=ROUND_HALF_UP))


BASE = {"baseline_years": [2016, 2017], "shared_savings_rate": 0.5, "shared_losses_rate": 0.5}


def trend_data() -> list[dict]:
    return [
        ep(H1, 2016, 100000),
        ep(H1, 2016, 120000),
        ep(H1, 2017, 110000),
        ep(H1, 2017, 130000),
        ep(H1, 2018, 100000),
        ep(H1, 2018, 110000),
        ep(H1, 2018, 120000),
    ]


# --- steps 3-5, 8: trend and discount -------------------------------------------------------------


def test_trend_and_discount():
    result = run(trend_data(), contracts({**BASE, "trend": 1.1, "discount": 0.05}))
    row = year_row(result, 2018)
    # B = mean(c * trend^(L - year)), L = 2017: 2016 episodes times 1.1, 2017 episodes as they are
    b = (D(100000) * D("1.1") + D(120000) * D("1.1") + D(110000) + D(130000)) / 4
    assert b == D(120500)
    t = b * D("1.1") ** (2018 - 2017) * (1 - D("0.05"))
    assert t == D("125922.5")  # half a cent: published as 125923
    a = (D(100000) + D(110000) + D(120000)) / 3
    s = (t - a) * 3
    assert s == D("47767.5")
    assert row["baseline_cents"] == 120500
    assert row["target_cents"] == 125923
    assert row["actual_cents"] == 110000
    assert row["gross_savings_cents"] == half_up(s) == 47768
    assert row["settlement_cents"] == half_up(s * D("0.5")) == 23884  # 23883.75, rounded once
    assert row["contract_year"] == 1 and row["n_episodes"] == 3 and row["corridor_met"] is True
    assert row["provisional"] is False and row["data_as_of"] == AS_OF
    assert provider_cents(result, 2018) == {H1: 23884}


# --- step 6: corridors ---------------------------------------------------------------------------


@pytest.mark.parametrize(("pct", "met"), [(12, True), (13, False)])
def test_corridor_percent(pct, met):
    result = run(trend_data(), contracts({**BASE, "trend": 1.1, "discount": 0.05, "minimum_savings_pct": pct}))
    row = year_row(result, 2018)
    t, a = D("125922.5"), D(110000)  # from test_trend_and_discount
    gap_pct = abs(t - a) / t * 100  # 12.64...%
    assert (gap_pct >= pct) is met
    assert row["corridor_met"] is met
    assert row["corridor_cents"] == half_up(D(pct) / 100 * t)
    assert row["settlement_cents"] == (half_up((t - a) * 3 * D("0.5")) if met else 0)


@pytest.mark.parametrize(
    ("actual", "met"),
    [
        ((90000, 95000, 100000), True),  # sd 5000: half-width 5658 < gap 20000
        ((78000, 95000, 112000), True),  # sd 17000: 19237 < 20000, just met
        ((75000, 95000, 115000), False),  # sd 20000: 22632 > 20000, just not met
        ((65000, 95000, 125000), False),  # sd 30000: 33948
    ],
)
def test_corridor_ci95(actual, met):
    rows = [
        ep(H1, 2016, 100000),
        ep(H1, 2016, 120000),
        ep(H1, 2017, 110000),
        ep(H1, 2017, 130000),
        *(ep(H1, 2018, c) for c in actual),
    ]
    result = run(rows, contracts({**BASE, "corridor": "ci95"}))
    row = year_row(result, 2018)
    t = (D(100000) + D(120000) + D(110000) + D(130000)) / 4  # no trend, no discount: T = B = 115000
    mean = sum(map(D, actual)) / 3  # 95000 in both cases: a gap of 20000
    sd = (sum((D(c) - mean) ** 2 for c in actual) / (3 - 1)).sqrt()  # sample sd: 5000 / 30000
    half_width = D("1.96") * sd / D(3).sqrt()  # 5658.0 / 33948.2
    assert (abs(t - mean) >= half_width) is met
    assert row["sd_cents"] == half_up(sd)
    assert row["corridor_cents"] == half_up(half_width)
    assert row["corridor_met"] is met
    assert row["settlement_cents"] == (half_up((t - mean) * 3 * D("0.5")) if met else 0)


# --- step 2: stop-loss and winsorising -------------------------------------------------------------


def test_stop_loss():
    rows = [ep(H1, 2017, 100000), ep(H1, 2017, 300000), ep(H1, 2018, 150000), ep(H1, 2018, 500000)]
    result = run(rows, contracts({**BASE, "baseline_years": [2017], "stop_loss_eur": 2000}))
    row = year_row(result, 2018)
    cap = D(2000) * 100
    b = (D(100000) + min(D(300000), cap)) / 2  # 150000
    a = (D(150000) + min(D(500000), cap)) / 2  # 175000
    s = (b - a) * 2  # -50000
    assert row["baseline_cents"] == 150000 and row["actual_cents"] == 175000
    assert row["settlement_cents"] == half_up(s * D("0.5")) == -25000


def test_winsorising_at_a_percentile_of_all_providers():
    rows = [
        ep(H1, 2017, 100000),
        ep(H1, 2017, 1000000),
        ep(X1, 2017, 200000),
        ep(X2, 2017, 300000),
        ep(H1, 2018, 150000),
        ep(H1, 2018, 3000000),
        ep(X1, 2018, 200000),
        ep(X2, 2018, 2000000),
    ]
    result = run(rows, contracts({**BASE, "baseline_years": [2017], "winsorise_pct": 75}))
    row = year_row(result, 2018)
    # P75 of 2017, all providers: sorted 100000, 200000, 300000, 1000000; h = (4 - 1) * 0.75 = 2.25
    p2017 = D(300000) + D("0.25") * (D(1000000) - D(300000))
    assert p2017 == 475000
    # P75 of 2018: sorted 150000, 200000, 2000000, 3000000; h = 2.25
    p2018 = D(2000000) + D("0.25") * (D(3000000) - D(2000000))
    assert p2018 == 2250000
    b = (D(100000) + min(D(1000000), p2017)) / 2  # own baseline: H1's episodes
    a = (D(150000) + min(D(3000000), p2018)) / 2
    s = (b - a) * 2
    assert row["baseline_cents"] == half_up(b) == 287500
    assert row["actual_cents"] == half_up(a) == 1200000
    assert row["settlement_cents"] == half_up(s * D("0.5")) == -912500
    assert row["provisional"] is False


def test_percentile_is_numpys_linear_method_exactly():
    values = sorted([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
    for p in (0, 10, 25, 50, 90, 95, 99, 100):
        assert float(percentile(values, p)) == pytest.approx(float(np.percentile(values, p)), abs=1e-9)
    # h = 9 * 0.95 = 8.55: 6 + 0.55 * (9 - 6), exact
    assert percentile(values, 95) == D("7.65")


# --- step 7: quality gate --------------------------------------------------------------------------


@pytest.mark.parametrize(("complications", "met"), [(1, True), (2, False)])
def test_quality_gate_on_savings(complications, met):
    rows = [
        ep(H1, 2017, 100000),
        ep(H1, 2017, 100000),
        *(ep(H1, 2018, 90000, complication=i < complications) for i in range(3)),
    ]
    result = run(
        rows,
        contracts({**BASE, "baseline_years": [2017], "quality_gate": {"outcome": "complication", "threshold": 0.4}}),
    )
    row = year_row(result, 2018)
    rate = D(complications) / 3  # 0.333 <= 0.4 met; 0.667 > 0.4 failed
    s = (D(100000) - D(90000)) * 3  # 30000 savings
    assert row["quality_rate"] == pytest.approx(float(rate))
    assert row["quality_met"] is met
    assert row["settlement_cents"] == (half_up(s * D("0.5")) if met else 0)


def test_quality_gate_failed_losses_still_count():
    rows = [
        ep(H1, 2017, 100000),
        ep(H1, 2017, 100000),
        ep(H1, 2018, 110000, complication=True),
        ep(H1, 2018, 110000, complication=True),
    ]
    result = run(
        rows,
        contracts({**BASE, "baseline_years": [2017], "quality_gate": {"outcome": "complication", "threshold": 0.4}}),
    )
    row = year_row(result, 2018)
    s = (D(100000) - D(110000)) * 2  # -20000
    assert row["quality_met"] is False
    assert row["settlement_cents"] == half_up(s * D("0.5")) == -10000


# --- step 8: losses phased in, upside only ---------------------------------------------------------


def test_losses_from_contract_year_two():
    rows = [ep(H1, 2017, 100000), ep(H1, 2018, 120000), ep(H1, 2019, 130000)]
    result = run(rows, contracts({**BASE, "baseline_years": [2017], "losses_from_contract_year": 2}))
    y1, y2 = year_row(result, 2018), year_row(result, 2019)
    assert (y1["contract_year"], y1["losses_apply"], y1["gross_savings_cents"]) == (1, False, -20000)
    assert y1["settlement_cents"] == 0
    assert (y2["contract_year"], y2["losses_apply"]) == (2, True)
    assert y2["settlement_cents"] == half_up((D(100000) - D(130000)) * 1 * D("0.5")) == -15000


def test_upside_only_without_shared_losses_rate():
    rows = [ep(H1, 2017, 100000), ep(H1, 2018, 120000), ep(H1, 2019, 80000)]
    params = {"baseline_years": [2017], "shared_savings_rate": 0.5}
    result = run(rows, contracts(params, model="shared_savings"))
    assert year_row(result, 2018)["settlement_cents"] == 0  # a loss of 20000: not shared
    assert year_row(result, 2018)["losses_apply"] is False
    assert year_row(result, 2019)["settlement_cents"] == half_up(D(20000) * D("0.5")) == 10000


# --- step 9: distribution --------------------------------------------------------------------------


def two_hospitals() -> list[dict]:
    return [ep(H1, 2017, 100000), ep(H2, 2017, 100000), ep(H1, 2018, 90000), ep(H1, 2018, 90000), ep(H2, 2018, 90003)]


def test_two_providers_pro_rata_to_episodes():
    result = run(two_hospitals(), contracts({**BASE, "baseline_years": [2017]}, providers=(H1, H2)))
    row = year_row(result, 2018)
    a = (D(90000) * 2 + D(90003)) / 3  # 90001
    total = half_up((D(100000) - a) * 3 * D("0.5"))  # 29997 * 0.5 = 14998.5 -> 14999
    assert row["settlement_cents"] == total == 14999
    # shares 2/3 and 1/3: 9999.33 and 4999.67 -> floors 9999 + 4999, the last cent to H2's .67
    assert provider_cents(result, 2018) == {H1: 9999, H2: 5000}
    assert sum(provider_cents(result, 2018).values()) == total


def test_distribution_key_by_agb():
    params = {**BASE, "baseline_years": [2017], "distribution_key": {H1: 0.7, H2: 0.3}}
    result = run(two_hospitals(), contracts(params, providers=(H1, H2)))
    total = 14999
    # 14999 * 0.7 = 10499.3, 14999 * 0.3 = 4499.7: floors 10499 + 4499, the last cent to H2 (.7 > .3)
    assert provider_cents(result, 2018) == {H1: 10499, H2: 4500}
    assert year_row(result, 2018)["settlement_cents"] == total


def test_distribution_key_by_provider_type():
    rows = [
        ep(H1, 2017, 100000),
        ep(H2, 2017, 100000),
        ep(R1, 2017, 100000),
        ep(H1, 2018, 90000),
        ep(H1, 2018, 90000),
        ep(H2, 2018, 90000),
        ep(R1, 2018, 70003),
    ]
    params = {**BASE, "baseline_years": [2017], "distribution_key": {"hospital": 0.4, "rehabilitation": 0.6}}
    result = run(rows, contracts(params, providers=(H1, H2, R1)))
    a = (D(90000) * 3 + D(70003)) / 4
    total = half_up((D(100000) - a) * 4 * D("0.5"))  # 59997 * 0.5 = 29998.5 -> 29999
    assert year_row(result, 2018)["settlement_cents"] == total == 29999
    # hospital 0.4 split by episodes H1 2 : H2 1 -> 4/15 and 2/15; rehabilitation 9/15
    quota = {
        H1: Fraction(total) * Fraction(4, 15),
        H2: Fraction(total) * Fraction(2, 15),
        R1: Fraction(total) * Fraction(9, 15),
    }  # 7999.73, 3999.87, 17999.4
    assert {p: int(q) for p, q in quota.items()} == {H1: 7999, H2: 3999, R1: 17999}  # 2 cents left
    assert provider_cents(result, 2018) == {H1: 8000, H2: 4000, R1: 17999}  # to .87 and .73


# --- step 10: fixed sum and bundled payment --------------------------------------------------------


def test_fixed_sum_per_distinct_patient():
    rows = [
        ep(H1, 2021, 50000, patient="P1"),
        ep(H2, 2021, 20000, patient="P1"),
        ep(H1, 2021, 150000, patient="P2"),
        ep(H1, 2021, 80000, patient="P3"),
        ep(H1, 2021, 999999, patient="P4", status="censored_enrolment"),
    ]
    con = contracts({"fixed_sum_eur_per_patient": 1000}, model="fixed_sum", providers=(H1, H2), start=date(2021, 1, 1))
    result = run(rows, con)
    row = year_row(result, 2021)
    patients = 3  # P1 (two episodes), P2, P3; P4 is not eligible
    result_cents = D(1000) * 100 * patients - (D(50000) + D(20000) + D(150000) + D(80000))
    assert row["n_patients"] == 3 and row["n_episodes"] == 4 and row["n_censored_enrolment"] == 1
    assert row["payment_cents"] == 300000
    assert row["settlement_cents"] == half_up(result_cents) == 0
    rows[0]["in_bundle_cents"] = 40000
    rows[0]["in_bundle_standardised_cents"] = 40000
    assert year_row(run(rows, con), 2021)["settlement_cents"] == 10000


def test_bundled_payment_per_episode():
    rows = [ep(H1, 2018, 200000), ep(H1, 2018, 260000), ep(H1, 2018, 240000)]
    result = run(rows, contracts({"payment_eur_per_episode": 2500.50}, model="bundled_payment"))
    row = year_row(result, 2018)
    expected = sum(D("2500.50") * 100 - D(c) for c in (200000, 260000, 240000))  # 50050 + -9950 + 10050
    assert row["settlement_cents"] == half_up(expected) == 50150
    assert row["target_cents"] == 250050 and row["baseline_cents"] is None


def test_bundled_payment_per_phase():
    e1, e2 = ep(H1, 2018, 300000), ep(H1, 2018, 250000)
    lines = pl.DataFrame(
        {
            "episode_id": [e1["episode_id"]] * 4 + [e2["episode_id"]] * 4,
            "component": [
                "in_bundle",
                "in_bundle",
                "in_bundle",
                "gp",
                "in_bundle",
                "in_bundle",
                "in_bundle",
                "in_bundle",
            ],
            "phase": [
                "prenatal",
                "natal",
                "maternity_care",
                "prenatal",
                "prenatal",
                "natal",
                "postnatal",
                "maternity_care",
            ],
            "allocated_cents": [40000, 180000, 80000, 5000, 60000, 100000, 40000, 50000],
        }
    ).with_columns(pl.col("allocated_cents").alias("allocated_standardised_cents"))
    params = {"payment_eur_per_phase": {"prenatal": 500, "natal": 1200, "postnatal": 300, "maternity_care": 800}}
    result = run([e1, e2], contracts(params, model="bundled_payment"), episode_lines=lines)
    pay = {"prenatal": D(50000), "natal": D(120000), "postnatal": D(30000), "maternity_care": D(80000)}
    cost = {
        "prenatal": D(40000 + 60000),
        "natal": D(180000 + 100000),
        "postnatal": D(40000),
        "maternity_care": D(80000 + 50000),
    }  # the gp line is not in the bundle
    by_phase = {p: pay[p] * 2 - cost[p] for p in pay}
    assert by_phase == {"prenatal": 0, "natal": -40000, "postnatal": 20000, "maternity_care": 30000}
    phases = dict(zip(result.phases["phase"], result.phases["result_cents"], strict=True))
    assert phases == {p: int(v) for p, v in by_phase.items()}
    assert year_row(result, 2018)["settlement_cents"] == int(sum(by_phase.values())) == 10000
    broken = lines.filter(pl.col("phase") != "postnatal")  # e2's phases no longer add up to its cost
    with pytest.raises(ReconciliationError, match="do not add up"):
        run([e1, e2], contracts(params, model="bundled_payment"), episode_lines=broken)


# --- risk adjustment, the four baselines -----------------------------------------------------------


def test_risk_adjust_scales_target_by_expected():
    rows = [
        ep(H1, 2017, 100000, expected=100000.0),
        ep(H1, 2017, 120000, expected=120000.0),
        ep(H1, 2018, 120000, expected=121000.0),
        ep(H1, 2018, 125000, expected=121000.0),
    ]
    result = run(rows, contracts({**BASE, "baseline_years": [2017], "risk_adjust": True}))
    row = year_row(result, 2018)
    b = (D(100000) + D(120000)) / 2  # 110000
    ratio = ((D(121000) + D(121000)) / 2) / ((D(100000) + D(120000)) / 2)  # 1.1
    t = b * ratio  # 121000
    a = (D(120000) + D(125000)) / 2  # 122500
    assert row["risk_ratio"] == pytest.approx(1.1)
    assert row["target_cents"] == 121000
    assert row["settlement_cents"] == half_up((t - a) * 2 * D("0.5")) == -1500


def baseline_data() -> list[dict]:
    return [
        ep(H1, 2017, 100000),
        ep(X1, 2017, 200000),
        ep(X2, 2017, 600000),
        ep(H1, 2018, 150000),
        ep(H1, 2018, 500000),
        ep(X1, 2018, 400000),
    ]


def _capped_expectation() -> tuple[D, D]:
    # regional_capped_p95: P95 per province and year. PV20 2017: 100000, 200000, h = 1 * 0.95
    p95_2017 = D(100000) + D("0.95") * (D(200000) - D(100000))  # 195000
    b = (D(100000) + min(D(200000), p95_2017)) / 2  # 147500
    # PV20 2018: 150000, 400000, 500000, h = 2 * 0.95 = 1.9: the cap applies to the actual costs too
    p95_2018 = D(400000) + D("0.9") * (D(500000) - D(400000))  # 490000
    a = (D(150000) + min(D(500000), p95_2018)) / 2  # 320000
    return b, a


@pytest.mark.parametrize("baseline", ["own", "regional", "national", "regional_capped_p95"])
def test_the_four_baselines(baseline):
    result = run(baseline_data(), contracts({**BASE, "baseline_years": [2017], "baseline": baseline}))
    row = year_row(result, 2018)
    a = (D(150000) + D(500000)) / 2  # 325000
    b = {
        "own": D(100000),  # H1 only
        "regional": (D(100000) + D(200000)) / 2,  # PV20: H1 and X1
        "national": (D(100000) + D(200000) + D(600000)) / 3,
    }.get(baseline)
    if baseline == "regional_capped_p95":
        b, a = _capped_expectation()
    s = (b - a) * 2
    assert row["baseline_cents"] == half_up(b)
    assert row["actual_cents"] == half_up(a)
    assert row["settlement_cents"] == half_up(s * D("0.5"))
    assert (
        row["settlement_cents"]
        == {"own": -225000, "regional": -175000, "national": -25000, "regional_capped_p95": -172500}[baseline]
    )


def test_cost_basis_standardised():
    rows = [ep(H1, 2017, 100000, std=80000), ep(H1, 2018, 100000, std=70000)]
    result = run(rows, contracts({**BASE, "baseline_years": [2017], "cost_basis": "standardised"}))
    assert year_row(result, 2018)["settlement_cents"] == half_up((D(80000) - D(70000)) * D("0.5")) == 5000


# --- rounding, provisional -------------------------------------------------------------------------


@pytest.mark.parametrize(("base", "actual", "expected"), [(100001, 100000, 1), (100000, 100001, -1)])
def test_rounding_half_a_cent_away_from_zero(base, actual, expected):
    rows = [ep(H1, 2017, base), ep(H1, 2018, actual)]
    result = run(rows, contracts({**BASE, "baseline_years": [2017]}))
    exact = (D(base) - D(actual)) * 1 * D("0.5")
    assert abs(exact) == D("0.5")  # half a cent exactly: banker's rounding would give 0
    assert year_row(result, 2018)["settlement_cents"] == expected
    assert round_cents(D("2.5")) == 3 and round_cents(D("-2.5")) == -3 and round_cents(D("-0.49")) == 0


@pytest.mark.parametrize(
    ("baseline", "placebo", "actual", "exact"),
    [
        # B = 300025 / 3, T = 0.9 B = 90007.5; placebo 2016 sum 270022: S = 0.5 -> 1; 2018 sum 200000: S = 70022.5
        ((100008, 100008, 100009), (90007, 90007, 90008), (66666, 66667, 66667), (D("0.5"), D("70022.5"))),
        # B = 300005 / 3, T = 90001.5; placebo sum 330004: S = -59999.5 -> -60000; 2018 sum 400000: -129995.5
        ((100001, 100002, 100002), (110001, 110001, 110002), (133333, 133333, 133334), (D("-59999.5"), D("-129995.5"))),
    ],
)
def test_gross_savings_of_exactly_half_a_cent_round_away_from_zero(baseline, placebo, actual, exact):
    """Means of three episodes are repeating decimals (B = 300025 / 3); the exact gross savings
    (T - A) n = 0.9 * sum(baseline) - sum(actual) ends in exactly half a cent and is rounded away
    from zero, in the placebo and in the settlement (a 60-digit decimal mean left ...4999)."""
    rows = [
        *(ep(H1, 2017, c) for c in baseline),
        *(ep(H1, 2016, c) for c in placebo),
        *(ep(H1, 2018, c) for c in actual),
    ]
    params = {"baseline_years": [2017], "discount": 0.1, "shared_savings_rate": 1, "shared_losses_rate": 1}
    result = run(rows, contracts(params))
    t = Fraction(sum(baseline), 3) * Fraction(9, 10)  # exact: the target is a multiple of half a cent / 3
    s_placebo, s_actual = t * 3 - sum(placebo), t * 3 - sum(actual)
    assert (s_placebo, s_actual) == (Fraction(exact[0]), Fraction(exact[1]))  # x.5 cents exactly
    own = result.placebo.filter((pl.col("baseline") == "own") & (pl.col("year") == 2016)).row(0, named=True)
    assert own["gross_savings_cents"] == half_up(exact[0])  # 1 / -60000
    assert own["target_cents"] == half_up(D(sum(baseline)) * D("0.3"))
    row = year_row(result, 2018)
    assert row["gross_savings_cents"] == half_up(exact[1])  # 70023 / -129996
    assert row["settlement_cents"] == half_up(exact[1])  # rate 1: the same half cent
    assert provider_cents(result, 2018) == {H1: half_up(exact[1])}
    assert round_cents(Fraction(-1, 2)) == -1 and round_cents(Fraction(1, 2)) == 1


def test_provisional_while_censored_data_exists():
    rows = [
        ep(H1, 2017, 100000),
        ep(H1, 2018, 90000),
        ep(H1, 2018, 400000, status="censored_data"),
        ep(H1, 2019, 90000),
    ]
    result = run(rows, contracts({**BASE, "baseline_years": [2017]}))
    y2018, y2019 = year_row(result, 2018), year_row(result, 2019)
    assert (y2018["provisional"], y2018["n_censored_data"], y2018["n_episodes"]) == (True, 1, 1)
    assert y2018["provisional_reason"] == "own"
    assert y2018["settlement_cents"] == half_up((D(100000) - D(90000)) * D("0.5"))  # not in the mean
    assert (y2019["provisional"], y2019["n_censored_data"]) == (False, 0)


def test_contract_period_per_provider_row():
    rows = [ep(H1, 2017, 100000), ep(H1, 2018, 90000, day=date(2018, 3, 31)), ep(H1, 2018, 50000, day=date(2018, 4, 1))]
    con = contracts({**BASE, "baseline_years": [2017]}, start=date(2018, 4, 1), end=date(2018, 12, 31))
    row = year_row(run(rows, con), 2018)
    assert row["n_episodes"] == 1 and row["actual_cents"] == 50000  # the March episode is before the start


def test_insurer_rows_count_only_that_insurers_episodes():
    rows = [ep(H1, 2017, 100000), ep(H1, 2017, 300000), ep(H1, 2018, 90000), ep(H1, 2018, 500000)]
    eps = frame(rows).with_columns(pl.Series("insurer_uzovi", ["3311", "7095", "3311", "7095"]))
    con = contracts({**BASE, "baseline_years": [2017]}).with_columns(pl.lit("3311").alias("insurer_uzovi"))
    row = year_row(reconcile("hip_oa", eps, PROVIDERS, con, AS_OF, outcomes=OUTCOMES), 2018)
    # own baseline and actual: insurer 3311's episodes only
    assert (row["baseline_cents"], row["actual_cents"], row["n_episodes"]) == (100000, 90000, 1)
    assert row["settlement_cents"] == half_up((D(100000) - D(90000)) * D("0.5"))
    with pytest.raises(ReconciliationError, match="insurer_uzovi"):
        reconcile("hip_oa", frame(rows), PROVIDERS, con, AS_OF, outcomes=OUTCOMES)


def test_regional_population_of_providers_in_two_provinces_is_the_union():
    con = contracts({**BASE, "baseline_years": [2017], "baseline": "regional"}, providers=(H1, X2))
    row = year_row(run(baseline_data(), con), 2018)
    b = (D(100000) + D(200000) + D(600000)) / 3  # PV20 (H1, X1) and PV21 (X2): every episode here
    a = (D(150000) + D(500000)) / 2  # X2 has no 2018 episode
    assert row["baseline_cents"] == 300000
    assert row["settlement_cents"] == half_up((b - a) * 2 * D("0.5")) == -25000


def test_a_provider_in_two_overlapping_contracts_is_refused():
    con = pl.concat(
        [
            contracts({**BASE, "baseline_years": [2017]}, cid="A"),
            contracts({**BASE, "baseline_years": [2017]}, cid="B", start=date(2019, 1, 1)),
        ]
    )
    with pytest.raises(ContractTermsError, match=f"contract A: provider {H1} is also in contract B"):
        run([ep(H1, 2017, 1), ep(H1, 2018, 1)], con)


# --- placebo ---------------------------------------------------------------------------------------


def test_placebo_flags_a_year_outside_the_band():
    rows = [
        ep(H1, 2014, 150000),
        ep(H1, 2014, 152000),
        ep(H1, 2015, 90000),
        ep(H1, 2015, 110000),
        ep(H1, 2016, 95000),
        ep(H1, 2016, 105000),
        ep(H1, 2017, 95000),
        ep(H1, 2017, 105000),
        ep(H1, 2018, 100000),
    ]
    result = run(rows, contracts(BASE))
    own = result.placebo.filter(pl.col("baseline") == "own").sort("year")
    assert own["year"].to_list() == [2014, 2015, 2016, 2017]
    assert result.placebo.height == 4 * 4  # every pre-contract year for each of the four baselines
    t = (D(95000) + D(105000) + D(95000) + D(105000)) / 4  # 100000
    # 2014: A = 151000, sd = sqrt((1000^2 + 1000^2) / 1), band = 1.96 * sd / sqrt(2) = 1960
    sd14 = ((D(1000) ** 2 + D(1000) ** 2) / 1).sqrt()
    band14 = D("1.96") * sd14 / D(2).sqrt()
    gap14 = t - D(151000)
    assert abs(gap14) >= band14
    r14 = own.row(0, named=True)
    assert (r14["gap_cents"], r14["band_cents"], r14["outside_band"]) == (-51000, half_up(band14), True)
    assert r14["gross_savings_cents"] == -102000 and r14["baseline_year"] is False
    # 2015: A = 100000, gap 0, band = 1.96 * 20000 / 2 = 19600: inside
    r15 = own.row(1, named=True)
    assert (r15["gap_cents"], r15["band_cents"], r15["outside_band"]) == (0, 19600, False)
    summary = result.placebo_summary.filter(pl.col("baseline") == "own").row(0, named=True)
    assert (summary["n_years"], summary["n_outside_band"], summary["share_outside_band"]) == (4, 1, 0.25)
    assert summary["mean_abs_gap_cents"] == half_up(D(51000) / 4) == 12750
    assert summary["mean_gap_cents"] == -12750 and summary["contract_baseline"] is True


def test_a_placebo_year_with_immature_episodes_is_provisional_and_left_out_of_the_summary():
    """A young pre-contract year holds only its early, complete anchors: its gap is biased, so it is
    marked provisional (why: the contract's own immature episodes) and the summary counts the other
    years only."""
    rows = [
        ep(H1, 2015, 100000),
        ep(H1, 2015, 100000),
        ep(H1, 2016, 95000),
        ep(H1, 2016, 105000),
        ep(H1, 2017, 150000),
        ep(H1, 2017, 152000),
        ep(H1, 2017, 1, status="censored_data"),
        ep(H1, 2018, 100000),
    ]
    params = {**BASE, "baseline_years": [2015, 2016]}
    own = run(rows, contracts(params)).placebo.filter(pl.col("baseline") == "own").sort("year")
    assert own["provisional"].to_list() == [False, False, True]
    assert own["provisional_reason"].to_list() == [None, None, "own"]
    assert own.filter(pl.col("year") == 2017)["outside_band"].item() is True  # it would have been flagged
    summary = run(rows, contracts(params)).placebo_summary.filter(pl.col("baseline") == "own").row(0, named=True)
    assert (summary["n_years"], summary["n_outside_band"], summary["n_provisional_years"]) == (2, 0, 1)


# --- initial and final -----------------------------------------------------------------------------


def test_initial_vs_final_reports_the_change():
    early = [
        ep(H1, 2017, 100000),
        ep(H1, 2018, 90000),
        ep(H1, 2019, 80000),
        ep(H1, 2019, 120000, status="censored_data"),
    ]
    late = [{**r, "status": "complete"} for r in early] + [ep(H1, 2020, 100000)]
    con = contracts({**BASE, "baseline_years": [2017]})
    first = run(early, con, as_of=date(2021, 3, 31)).reconciliation
    final = run(late, con, as_of=date(2022, 3, 31)).reconciliation
    diff = compare(first, final.filter(pl.col("performance_year") != 2018))
    by_year = {r["performance_year"]: r for r in diff.iter_rows(named=True)}
    assert by_year[2018]["change"] == "gone" and by_year[2018]["settlement_cents_later"] is None
    # 2019 initial: one mature episode of 80000, savings 20000 * 0.5; final: mean 100000, no savings
    assert by_year[2019]["change"] == "changed"
    assert (by_year[2019]["settlement_cents_earlier"], by_year[2019]["settlement_cents_later"]) == (10000, 0)
    assert by_year[2019]["settlement_change_cents"] == -10000
    assert (by_year[2019]["n_episodes_earlier"], by_year[2019]["n_episodes_later"]) == (1, 2)
    assert (by_year[2019]["provisional_earlier"], by_year[2019]["provisional_later"]) == (True, False)
    assert by_year[2020]["change"] == "new" and by_year[2020]["settlement_cents_earlier"] is None
    assert by_year[2020]["data_as_of_earlier"] == date(2021, 3, 31)
    assert by_year[2020]["data_as_of_later"] == date(2022, 3, 31)
    assert compare(first, first)["change"].unique().to_list() == ["unchanged"]
    with pytest.raises(ReconciliationError, match="swapped"):
        compare(final, first)


# --- contract terms: clear errors ------------------------------------------------------------------


def one_problem(model: str, params: dict | str, outcomes=OUTCOMES, bundle: str = "hip_oa") -> str:
    with pytest.raises(ContractTermsError) as info:
        parse_terms("C-x", bundle, model, params if isinstance(params, str) else json.dumps(params), outcomes)
    assert isinstance(info.value, UserFacingError)
    assert len(info.value.problems) == 1, info.value.problems
    message = str(info.value)
    assert "\n" not in message and message.startswith("contract C-x: ")
    return message


def test_unknown_parameter_suggests_the_name():
    message = one_problem("shared_savings", {"baseline_years": [2017], "shared_savings_rate": 0.5, "trnd": 1.02})
    assert message == "contract C-x: unknown parameter 'trnd' (did you mean 'trend'?)"


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("discount", 2, "fraction in [0, 1]"),
        ("trend", "2%", "a string, not a number"),
        ("trend", 0, "positive number"),
        ("winsorise_pct", 100, "strictly between 0 and 100"),
        ("risk_adjust", "yes", "true or false"),
        ("baseline_years", 2017, "list of anchor years"),
    ],
)
def test_wrong_unit_names_the_parameter(name, value, words):
    params = {"baseline_years": [2017], "shared_savings_rate": 0.5, name: value}
    message = one_problem("shared_savings", params)
    assert f"parameter {name} = " in message and words in message


def test_missing_required_parameter():
    message = one_problem("shared_savings_losses", {"baseline_years": [2017], "shared_savings_rate": 0.5})
    assert "parameter shared_losses_rate is missing" in message
    message = one_problem("fixed_sum", {})
    assert "parameter fixed_sum_eur_per_patient is missing" in message


def test_quality_gate_on_an_outcome_the_bundle_does_not_have():
    generator = (
        '{"baseline": "own", "baseline_years": [2017, 2018], "quality_gate": '
        '{"outcome": "das28_remission", "threshold": 0.4}, "shared_savings_rate": 0.5}'
    )
    with pytest.raises(ContractTermsError) as info:
        parse_terms(
            "C-ra_drugs-2019",
            "ra_drugs",
            "shared_savings",
            generator,
            {"distinct_drugs", "drug_volume", "outpatient_visits"},
        )
    assert str(info.value) == (
        "contract C-ra_drugs-2019: parameter quality_gate.outcome 'das28_remission' is not an outcome of bundle "
        "ra_drugs (outcomes: distinct_drugs, drug_volume, outpatient_visits)"
    )


def test_distribution_key_must_add_up_and_name_contract_providers():
    message = one_problem(
        "shared_savings", {"baseline_years": [2017], "shared_savings_rate": 0.5, "distribution_key": {H1: 0.6, H2: 0.3}}
    )
    assert "parameter distribution_key = " in message and "add up to 0.9, not 1" in message
    con = contracts({**BASE, "baseline_years": [2017], "distribution_key": {H1: 0.5, X2: 0.5}}, providers=(H1, H2))
    with pytest.raises(ContractTermsError, match=f"distribution_key names provider {X2}, which is not a provider"):
        run([ep(H1, 2017, 1), ep(H1, 2018, 1)], con)


def test_parameter_for_another_model_and_table_checks_report_everything():
    message = one_problem("fixed_sum", {"fixed_sum_eur_per_patient": 3200, "trend": 1.02})
    assert "parameter trend does not apply to model fixed_sum" in message
    bad = pl.concat(
        [
            contracts({**BASE, "trnd": 1.0}, cid="A"),
            contracts({**BASE, "discount": 2}, cid="B", providers=(H2,)),
            contracts({"phases": ["prenatal"], "prospective": True}, model="bundled_payment", cid="Z", providers=(X1,)),
        ]
    )
    with pytest.raises(ContractTermsError) as info:
        check_contracts(bad, {"hip_oa": OUTCOMES})
    problems = info.value.problems
    assert any(p.startswith("contract A: unknown parameter 'trnd'") for p in problems)
    assert any(p.startswith("contract B: parameter discount = 2") for p in problems)
    assert any(p.startswith("contract Z: unknown parameter 'phases'") for p in problems)
    with pytest.raises(ContractTermsError):  # reconcile refuses them too
        run([ep(H1, 2017, 1), ep(H1, 2018, 1)], bad)


# --- properties ------------------------------------------------------------------------------------


@given(total=st.integers(-(10**9), 10**9), weights=st.lists(st.integers(0, 50), min_size=1, max_size=6))
def test_distribute_cents_adds_up_exactly(total, weights):
    if sum(weights) == 0:
        weights = [*weights[:-1], 1]
    shares = {f"{i:08d}": Fraction(w, sum(weights)) for i, w in enumerate(weights)}
    parts = distribute_cents(total, shares)
    assert sum(parts.values()) == total
    for key, share in shares.items():
        assert abs(parts[key] - total * share) < 1  # never more than a cent from the exact quota
        if share == 0:
            assert parts[key] == 0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    costs=st.lists(
        st.tuples(st.sampled_from([H1, H2, R1]), st.sampled_from([2017, 2018, 2019]), st.integers(0, 500000)),
        min_size=1,
        max_size=14,
    ),
    key=st.sampled_from([None, {H1: 0.5, H2: 0.25, R1: 0.25}, {"hospital": 0.35, "rehabilitation": 0.65}]),
    rate=st.sampled_from([0.5, 0.3333, 1]),
)
def test_provider_settlements_add_up_to_the_contract(costs, key, rate):
    rows = [ep(p, y, c) for p, y, c in costs]
    params = {"baseline_years": [2017], "shared_savings_rate": rate, "shared_losses_rate": rate, "trend": 1.03}
    if key:
        params["distribution_key"] = key
    result = run(rows, contracts(params, providers=(H1, H2, R1)))
    per_year = result.settlement.group_by("performance_year").agg(pl.col("settlement_cents").sum())
    joined = result.reconciliation.join(per_year, on="performance_year", suffix="_providers")
    for total, parts in joined.select("settlement_cents", "settlement_cents_providers").iter_rows():
        assert total is None or total == parts


# --- the generator's independent implementation gives the same numbers -----------------------------


def generator(
    rows: list[dict], params: dict, *, model: str = "shared_savings_losses", providers=(H1,), start=date(2018, 1, 1)
) -> tuple[dict, dict, dict]:
    """The synthetic-data generator's settlements (``transforms.synth.settlements``) of the same
    episodes: settlement rows, placebo rows (its contract's baseline) and provider cents by year."""
    from transforms.synth.settlements import Contract, Reconciliation, TruthEpisode

    region = dict(zip(PROVIDERS["provider_agb"], PROVIDERS["region"], strict=True))
    kind = dict(zip(PROVIDERS["provider_agb"], PROVIDERS["provider_type"], strict=True))
    episodes = [
        TruthEpisode(
            bundle_id="hip_oa",
            episode_id=r["episode_id"],
            anchor_date=r["anchor_date"],
            provider=r["anchor_provider_agb"],
            province=region[r["anchor_provider_agb"]],
            status=r["status"],
            declared=r["in_bundle_cents"],
            standardised=r["in_bundle_standardised_cents"],
            patient_id=r["patient_id"],
        )
        for r in rows
    ]
    years = [r["anchor_year"] for r in rows]
    contract = Contract("C1", "hip_oa", model, tuple(sorted(providers)), start, None, params)
    out, shares = Reconciliation(episodes, region, kind, AS_OF, min(years), max(years)).rows(contract)
    settle = {r["performance_year"]: r for r in out if r["kind"] == "settlement" and r["phase"] is None}
    placebo = {r["performance_year"]: r for r in out if r["kind"] == "placebo"}
    cents: dict[int, dict[str, int]] = {}
    for x in shares:
        cents.setdefault(x["performance_year"], {})[x["provider_agb"]] = x["share_cents"]
    return settle, placebo, cents


SAME = [
    "n_episodes",
    "baseline_cents",
    "target_cents",
    "actual_cents",
    "gross_savings_cents",
    "settlement_cents",
    "corridor_met",
    "provisional",
]


def assert_same_as_generator(rows: list[dict], params: dict, **kw) -> None:
    result = run(rows, contracts(params, **kw))
    settle, placebo, cents = generator(rows, params, **kw)
    panels = {r["performance_year"]: r for r in result.reconciliation.iter_rows(named=True) if r["n_episodes"]}
    assert set(panels) == set(settle)  # the generator leaves out years without eligible episodes
    for year, row in settle.items():
        assert {c: panels[year][c] for c in SAME} == {c: row[c] for c in SAME}, year
        assert provider_cents(result, year) == cents[year], year
    baseline = params.get("baseline", "own")
    mine = result.placebo.filter((pl.col("baseline") == baseline) & (pl.col("n_episodes") > 0))
    assert set(mine["year"]) == set(placebo)
    for r in mine.iter_rows(named=True):
        g = placebo[r["year"]]
        assert (r["target_cents"], r["actual_cents"], r["gross_savings_cents"], r["outside_band"]) == (
            g["target_cents"],
            g["actual_cents"],
            g["gross_savings_cents"],
            g["outside_band"],
        ), r["year"]


@pytest.mark.parametrize("sign", [1, -1])
def test_generator_agrees_on_half_a_cent(sign):
    baseline, placebo, actual = (
        ((100008, 100008, 100009), (90007, 90007, 90008), (66666, 66667, 66667))
        if sign > 0
        else ((100001, 100002, 100002), (110001, 110001, 110002), (133333, 133333, 133334))
    )
    rows = [
        *(ep(H1, 2017, c) for c in baseline),
        *(ep(H1, 2016, c) for c in placebo),
        *(ep(H1, 2018, c) for c in actual),
    ]
    assert_same_as_generator(
        rows,
        {"baseline_years": [2017], "discount": 0.1, "shared_savings_rate": 1, "shared_losses_rate": 1, "trend": 1.02},
    )


def test_generator_agrees_on_a_type_key_and_on_patients():
    rows = [
        ep(H1, 2017, 100000),
        ep(H2, 2017, 100000),
        ep(R1, 2017, 100000),
        ep(H1, 2018, 90000),
        ep(H1, 2018, 90000),
        ep(H2, 2018, 90000),
        ep(R1, 2018, 70003),
    ]
    params = {**BASE, "baseline_years": [2017], "distribution_key": {"hospital": 0.4, "rehabilitation": 0.6}}
    assert_same_as_generator(rows, params, providers=(H1, H2, R1))
    assert generator(rows, params, providers=(H1, H2, R1))[2][2018] == {H1: 8000, H2: 4000, R1: 17999}  # 2 : 1
    rows = [
        ep(H1, 2021, 50000, patient="P1"),
        ep(H2, 2021, 20000, patient="P1"),
        ep(H1, 2021, 150000, patient="P2"),
        ep(H1, 2021, 80000, patient="P3"),
        ep(H1, 2021, 999999, patient="P4", status="censored_enrolment"),
        ep(H2, 2022, 90000, patient="P5"),
        ep(H2, 2022, 10000, patient="P5"),
    ]
    params = {"fixed_sum_eur_per_patient": 1000}
    assert_same_as_generator(rows, params, model="fixed_sum", providers=(H1, H2), start=date(2021, 1, 1))
    settle, _, cents = generator(rows, params, model="fixed_sum", providers=(H1, H2), start=date(2021, 1, 1))
    assert (settle[2021]["settlement_cents"], settle[2022]["settlement_cents"]) == (0, 0)  # 3 and 1 patients
    assert settle[2022]["target_cents"] == 50000 and cents[2022] == {H1: 0, H2: 0}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    costs=st.lists(
        st.tuples(
            st.sampled_from([H1, H2, R1, X1, X2]),
            st.integers(2015, 2019),
            st.integers(0, 500000),
            st.sampled_from(["complete", "complete", "death", "censored_data", "censored_enrolment"]),
        ),
        min_size=1,
        max_size=16,
    ),
    key=st.sampled_from([None, {H1: 0.5, H2: 0.25, R1: 0.25}, {"hospital": 0.35, "rehabilitation": 0.65}]),
    terms=st.fixed_dictionaries(
        {
            "trend": st.sampled_from([1, 1.02, 1.1]),
            "discount": st.sampled_from([0, 0.02, 0.1]),
            "shared_savings_rate": st.sampled_from([0.5, 0.3333, 1]),
            "shared_losses_rate": st.sampled_from([0.5, 1]),
            "baseline": st.sampled_from(["own", "regional", "national", "regional_capped_p95"]),
        }
    ),
    cap=st.sampled_from(
        [{}, {"winsorise_pct": 90}, {"stop_loss_eur": 2500}, {"corridor": "ci95"}, {"minimum_savings_pct": 2.5}]
    ),
)
def test_generator_agrees_with_the_panels(costs, key, terms, cap):
    """The generator's truth and the panels compute the same cents on random episodes."""
    rows = [ep(H1, 2016, 100000), *(ep(p, y, c, status=s) for p, y, c, s in costs)]
    params = {"baseline_years": [2016, 2017], **terms, **cap}
    if terms["baseline"] == "regional_capped_p95":
        params.pop("stop_loss_eur", None)  # the terms refuse a stop-loss with the regional P95 cap
    if key:
        params["distribution_key"] = key
    assert_same_as_generator(rows, params, providers=(H1, H2, R1))


def test_same_inputs_give_identical_frames():
    rows = baseline_data() + two_hospitals()
    con = contracts({**BASE, "baseline_years": [2017], "baseline": "regional"}, providers=(H1, H2))
    a = run(rows, con)
    b = run(list(reversed(rows)), con.reverse())
    for name in ("reconciliation", "settlement", "placebo", "placebo_summary", "phases"):
        assert getattr(a, name).equals(getattr(b, name)), name

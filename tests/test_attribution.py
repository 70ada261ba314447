"""Attribution of insured to GP practices per quarter (``transforms.population.attribution``):
a hand-computed case per rule, a property test against a plain-Python recomputation (every
insured-quarter attributed at most once, exactly once when it has a counting fee; the same result
under any row order), the enrolled population, and a generated store where every insured has one
usual GP that declares their registration fee each quarter."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from transforms.errors import UserFacingError
from transforms.population.attribution import (
    EnrolledPopulation,
    attribute,
    attribution_counts,
    classify_fees,
    insured_quarters,
    population_practices,
    population_quarters,
    registration_fee_codes,
    scan_store,
    store_period,
)

# integration: a generated store's GP attribution
pytestmark = pytest.mark.integration

A, B, C = "01000001", "01000002", "01000003"
FEE = 1443  # cents, the 11000 tariff of about 2020


def gp_lines(*rows) -> pl.DataFrame:
    """(patient, practice, service date, cents[, code[, fully_credited]]) -> gp lines as in the store."""
    full = [(*r, *(("11000", False)[len(r) - 4 :])) for r in rows]
    return pl.DataFrame(
        {
            "patient_id": [r[0] for r in full],
            "provider_agb": [r[1] for r in full],
            "service_date": [date.fromisoformat(r[2]) for r in full],
            "amount": [Decimal(r[3]) / 100 for r in full],
            "service_cd": [r[4] for r in full],
            "fully_credited": [r[5] for r in full],
        },
        schema={
            "patient_id": pl.String,
            "provider_agb": pl.String,
            "service_date": pl.Date,
            "amount": pl.Decimal(12, 2),
            "service_cd": pl.String,
            "fully_credited": pl.Boolean,
        },
    )


def spells(*rows) -> pl.DataFrame:
    """(patient, enrolled_from, enrolled_to or None[, death_date]) -> insured spells."""
    full = [(*r, None) if len(r) == 3 else r for r in rows]
    as_date = lambda v: None if v is None else date.fromisoformat(v)  # noqa: E731
    return pl.DataFrame(
        {
            "patient_id": [r[0] for r in full],
            "enrolled_from": [as_date(r[1]) for r in full],
            "enrolled_to": [as_date(r[2]) for r in full],
            "death_date": [as_date(r[3]) for r in full],
        },
        schema={"patient_id": pl.String, "enrolled_from": pl.Date, "enrolled_to": pl.Date, "death_date": pl.Date},
    )


YEAR_2020 = (date(2020, 1, 1), date(2020, 12, 31))


def rows(frame: pl.DataFrame, *cols: str) -> list[tuple]:
    return frame.select(cols).rows()


def counts(gp, insured, period=YEAR_2020) -> dict[tuple[str, str, int], int]:
    c = attribution_counts(gp, insured, period=period)
    return {(u, o, q): n for u, o, q, n in c.select("unit", "outcome", "quarter", "n").rows()}


# -- the code list ------------------------------------------------------------------------------


def test_registration_fees_are_the_contract_codes_11000_to_11104_and_cover_the_generator():
    from transforms.synth.background import REGISTRATION_CODES

    codes = registration_fee_codes()
    assert codes == ("11000", "11100", "11101", "11102", "11103", "11104")
    assert "11201" not in codes  # the POH-GGZ module is no registration
    assert {c for c, _, _ in REGISTRATION_CODES} <= set(codes)


# -- one hand-computed case per rule --------------------------------------------------------------


def test_one_practice_attributes_every_quarter_it_declared_and_other_gp_lines_do_not_count():
    gp = gp_lines(
        ("P1", A, "2020-01-01", FEE),
        ("P1", A, "2020-04-01", FEE),
        ("P1", A, "2020-04-20", FEE),
        ("P1", B, "2020-05-01", 900, "12000"),  # a consult at another practice: no registration
        ("P1", A, "2020-07-01", 1600, "11102"),
    )
    out = attribute(gp, spells(("P1", "2015-01-01", None)), period=YEAR_2020)
    assert rows(out, "patient_id", "year", "quarter", "quarter_start", "practice_agb", "n_practices", "rule") == [
        ("P1", 2020, 1, date(2020, 1, 1), A, 1, "single"),
        ("P1", 2020, 2, date(2020, 4, 1), A, 1, "single"),
        ("P1", 2020, 3, date(2020, 7, 1), A, 1, "single"),
    ]
    assert out.filter(pl.col("quarter") == 2)["registration_date"].item() == date(2020, 4, 20)
    assert out.filter(pl.col("quarter") == 3)["fee_cents"].item() == 1600
    n = counts(gp, spells(("P1", "2015-01-01", None)))
    assert n[("fee", "same_practice", 2)] == 1
    assert n[("insured_quarter", "unattributed_no_fee", 4)] == 1  # never carried forward from Q3


def test_two_practices_in_a_quarter_go_to_the_latest_then_the_higher_amount_then_the_lowest_agb():
    gp = gp_lines(
        # Q1: a switch from A to B in February: B (the later registration)
        ("P2", A, "2020-01-01", FEE),
        ("P2", B, "2020-02-15", FEE),
        # Q2: both on the same day, B's fee higher: B; A's earlier fee does not matter
        ("P2", A, "2020-04-01", FEE),
        ("P2", B, "2020-04-01", 1600),
        ("P2", A, "2020-05-01", 1000),
        # Q3: same day, same amount: the lowest AGB (A); C's fee is credited and does not count
        ("P2", C, "2020-07-01", FEE),
        ("P2", A, "2020-07-01", FEE),
        ("P2", B, "2020-09-30", 0, "11000", True),
    )
    insured = spells(("P2", "2019-01-01", None))
    out = attribute(gp, insured, period=YEAR_2020)
    assert rows(out, "quarter", "practice_agb", "n_practices", "rule") == [
        (1, B, 2, "latest_of_several"),
        (2, A, 2, "latest_of_several"),
        (3, A, 2, "latest_of_several"),
    ]
    # Q2: the latest is A on 1 May (1000 cents): the date decides before the amount
    n = counts(gp, insured)
    assert n[("fee", "other_practice", 1)] == 1 and n[("fee", "other_practice", 2)] == 1
    assert n[("fee", "same_practice", 2)] == 1
    assert n[("fee", "other_practice", 3)] == 1 and n[("fee", "credited", 3)] == 1
    assert n[("insured_quarter", "attributed_latest_of_several", 1)] == 1
    # row order does not matter
    assert attribute(gp.reverse(), insured.reverse(), period=YEAR_2020).equals(out)


def test_same_day_ties_on_amount_and_agb():
    gp = gp_lines(
        ("P2", A, "2020-04-01", FEE),
        ("P2", B, "2020-04-01", 1600),
        ("P2", C, "2020-07-01", FEE),
        ("P2", B, "2020-07-01", FEE),
    )
    out = attribute(gp, spells(("P2", "2019-01-01", None)), period=YEAR_2020)
    assert rows(out, "quarter", "practice_agb", "rule") == [(2, B, "latest_of_several"), (3, B, "latest_of_several")]


def test_no_practice_in_a_quarter_is_unattributed_and_counted():
    gp = gp_lines(("P3", A, "2020-01-01", FEE))
    insured = spells(("P3", "2020-01-01", None), ("P9", "2020-01-01", "2020-06-30"))
    out = attribute(gp, insured, period=YEAR_2020)
    assert rows(out, "patient_id", "quarter", "practice_agb") == [("P3", 1, A)]
    n = counts(gp, insured)
    assert n[("insured_quarter", "attributed_single", 1)] == 1
    assert n[("insured_quarter", "unattributed_no_fee", 1)] == 1  # P9
    assert n[("insured_quarter", "unattributed_no_fee", 2)] == 2  # P3 is not carried forward; P9
    assert n[("insured_quarter", "unattributed_no_fee", 4)] == 1  # P9 is no longer insured
    assert insured_quarters(insured, YEAR_2020).height == 4 + 2


def test_a_fee_outside_enrolment_is_counted_apart_not_attributed():
    gp = gp_lines(
        ("P4", A, "2020-01-01", FEE),
        ("P4", A, "2020-04-01", FEE),  # enrolled until 31 March
        ("P5", B, "2020-01-01", FEE),
        ("P5", B, "2020-04-01", FEE),  # died 10 February
        ("P6", C, "2020-01-01", FEE),  # enrolled from 15 February: the quarter counts
        ("P7", C, "2021-01-01", FEE),
    )  # outside the period
    insured = spells(
        ("P4", "2019-01-01", "2020-03-31"),
        ("P5", "2019-01-01", None, "2020-02-10"),
        ("P6", "2020-02-15", None),
        ("P7", "2019-01-01", None),
    )
    out = attribute(gp, insured, period=YEAR_2020)
    assert rows(out, "patient_id", "quarter", "practice_agb") == [("P4", 1, A), ("P5", 1, B), ("P6", 1, C)]
    fees = classify_fees(gp, insured, period=YEAR_2020)
    assert rows(fees.filter(pl.col("outcome") == "not_enrolled"), "patient_id", "quarter") == [("P4", 2), ("P5", 2)]
    assert rows(fees.filter(pl.col("outcome") == "outside_period"), "patient_id", "year") == [("P7", 2021)]
    n = counts(gp, insured)
    assert n[("fee", "not_enrolled", 2)] == 2


def test_a_credited_fee_does_not_count():
    gp = gp_lines(
        ("P8", A, "2020-01-01", 0, "11000", True),  # credited to zero (netted in the store)
        ("P8", A, "2020-04-01", FEE),
        ("P8", B, "2020-05-01", -200),  # B's net amount is negative
        ("P8", B, "2020-07-01", 500),  # partly credited: still a registration
    )
    insured = spells(("P8", "2019-01-01", None))
    out = attribute(gp, insured, period=YEAR_2020)
    assert rows(out, "quarter", "practice_agb", "n_practices", "rule", "fee_cents") == [
        (2, A, 1, "single", FEE),
        (3, B, 1, "single", 500),
    ]
    n = counts(gp, insured)
    assert n[("insured_quarter", "unattributed_credited_fee_only", 1)] == 1
    assert n[("fee", "credited", 1)] == 1 and n[("fee", "credited", 2)] == 1
    assert n[("insured_quarter", "unattributed_no_fee", 4)] == 1


def test_amount_cents_and_the_default_period():
    gp = pl.DataFrame(
        {
            "patient_id": ["P1", "P1"],
            "provider_agb": [A, B],
            "service_date": [date(2019, 5, 1), date(2019, 11, 3)],
            "service_cd": ["11000", "11101"],
            "amount_cents": [FEE, FEE],
        }
    )
    insured = spells(("P1", "2010-01-01", None))
    out = attribute(gp, insured)  # period: the fees' quarters, 2019 Q2 to Q4
    assert rows(out, "quarter", "practice_agb") == [(2, A), (4, B)]
    assert counts(gp, insured, None) == {
        ("fee", "attributed", 2): 1,
        ("fee", "attributed", 4): 1,
        ("insured_quarter", "attributed_single", 2): 1,
        ("insured_quarter", "attributed_single", 4): 1,
        ("insured_quarter", "unattributed_no_fee", 3): 1,
    }
    empty = gp.clear()
    assert attribute(empty, insured).is_empty() and attribution_counts(empty, insured).is_empty()


# -- property: at most once, exactly once with a counting fee, any row order ----------------------

PERIOD = (date(2019, 1, 1), date(2020, 12, 31))
BASE = date(2018, 10, 1)
DAYS = 3 * 366
#: fee days cluster on a few days per quarter (quarter 0 = 2018 Q4 .. 9 = 2021 Q1), so that
#: practices collide on a quarter and on a day
fee_day = st.builds(
    lambda q, d: (date(2018 + (q + 3) // 4, 3 * ((q + 3) % 4) + 1, 1) - BASE).days + d,
    st.integers(0, 9),
    st.sampled_from([0, 0, 0, 1, 45, 89]),
)
line_st = st.tuples(
    st.sampled_from([A, B, C]),
    st.sampled_from([FEE, FEE, FEE, 1600, 500, 0, -FEE]),
    st.sampled_from([False, False, False, True]),
    st.sampled_from(["11000", "11000", "11000", "11101", "12000"]),
)
#: a fee day with one to three lines on it (so that practices tie on the day, and on the amount)
fee_st = st.builds(
    lambda d, lines: [(agb, d, cents, credited, code) for agb, cents, credited, code in lines],
    fee_day,
    st.lists(line_st, min_size=1, max_size=3),
)
spell_st = st.tuples(
    st.one_of(st.just(0), st.integers(0, DAYS)),
    st.one_of(st.none(), st.integers(0, 800)),
    st.one_of(st.none(), st.none(), st.none(), st.integers(0, DAYS)),
)
#: one to three patients, each with one or two spells and up to eight fee days
patients_st = st.lists(
    st.tuples(st.lists(spell_st, min_size=1, max_size=2), st.lists(fee_st, max_size=8)), min_size=1, max_size=3
)


def _quarter(d: date) -> date:
    return date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)


def _quarters(lo: date, hi: date) -> list[date]:
    out, q = [], _quarter(lo)
    while q <= hi:
        out.append(q)
        q = date(q.year + (q.month == 10), (q.month + 2) % 12 + 1, 1)
    return out


def _expected(fees, spell_rows) -> tuple[set, dict]:
    """Plain Python: the insured-quarters, and per insured-quarter with a counting fee its practice."""
    iq = set()
    for p, start, length, death in spell_rows:
        lo = BASE + timedelta(days=start)
        hi = date(2020, 12, 31) if length is None else lo + timedelta(days=length)
        if death is not None:
            hi = min(hi, BASE + timedelta(days=death))
        lo, hi = max(lo, PERIOD[0]), min(hi, PERIOD[1])
        if lo <= hi:
            iq |= {(f"P{p}", q) for q in _quarters(lo, hi)}
    best: dict = {}
    for p, agb, day, cents, credited, code in fees:
        d = BASE + timedelta(days=day)
        key = (f"P{p}", _quarter(d))
        if code == "12000" or credited or cents <= 0 or key not in iq:
            continue
        rank = (d, cents, [-int(ch) for ch in agb])
        if key not in best or rank > best[key][0]:
            best[key] = (rank, agb)
    return iq, {k: v[1] for k, v in best.items()}


def _frames(fees, spell_rows):
    lines = [
        (f"P{p}", agb, (BASE + timedelta(days=day)).isoformat(), cents, code, credited)
        for p, agb, day, cents, credited, code in fees
    ]
    gp = gp_lines(*lines) if lines else gp_lines(("X", A, "2019-01-01", FEE)).clear()
    ins = spells(
        *[
            (
                f"P{p}",
                (BASE + timedelta(days=s)).isoformat(),
                None if n is None else (BASE + timedelta(days=s + n)).isoformat(),
                None if d is None else (BASE + timedelta(days=d)).isoformat(),
            )
            for p, s, n, d in spell_rows
        ]
    )
    return gp, ins


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients=patients_st, seed=st.randoms(use_true_random=False))
def test_every_insured_quarter_is_attributed_at_most_once_and_exactly_once_with_a_counting_fee(patients, seed):
    spell_rows = [(p, *spell) for p, (spells_p, _) in enumerate(patients) for spell in spells_p]
    fees = [(p, *fee) for p, (_, days_p) in enumerate(patients) for lines in days_p for fee in lines]
    gp, ins = _frames(fees, spell_rows)
    out = attribute(gp, ins, period=PERIOD)
    keys = out.select("patient_id", "quarter_start")
    assert keys.n_unique() == out.height  # at most once
    iq, practice = _expected(fees, spell_rows)
    assert set(keys.rows()) == set(practice)  # exactly once where a counting fee exists, never elsewhere
    assert dict(zip(keys.rows(), out["practice_agb"])) == practice
    assert set(keys.rows()) <= iq
    assert all((r == "single") == (n == 1) for r, n in out.select("rule", "n_practices").rows())
    c = attribution_counts(gp, ins, period=PERIOD)
    per_unit = dict(c.group_by("unit").agg(pl.col("n").sum()).rows())
    assert per_unit.get("insured_quarter", 0) == len(iq) == insured_quarters(ins, PERIOD).height
    attributed = c.filter(pl.col("outcome").str.starts_with("attributed"))
    assert attributed.filter(pl.col("unit") == "fee")["n"].sum() == out.height
    assert attributed.filter(pl.col("unit") == "insured_quarter")["n"].sum() == out.height
    assert per_unit.get("fee", 0) == sum(code != "12000" for *_, code in fees)
    # any row order gives the same frames
    gp_shuffled = gp.sample(fraction=1.0, shuffle=True, seed=seed.randint(0, 2**31))
    ins_shuffled = ins.sample(fraction=1.0, shuffle=True, seed=seed.randint(0, 2**31))
    assert attribute(gp_shuffled, ins_shuffled, period=PERIOD).equals(out)
    assert attribution_counts(gp_shuffled.lazy(), ins_shuffled.lazy(), period=PERIOD).equals(c)
    assert classify_fees(gp_shuffled, ins_shuffled, period=PERIOD).equals(classify_fees(gp, ins, period=PERIOD))


# -- the enrolled population ----------------------------------------------------------------------


def test_an_enrolled_population_names_practices_or_a_contract():
    EnrolledPopulation(name="Noord", practices=[A, B], start_date=date(2020, 1, 1))
    EnrolledPopulation(name="Noord", contract_id="C-1", start_date=date(2020, 1, 1))
    for bad in (
        {"practices": [A], "contract_id": "C-1"},
        {},
        {"practices": []},
        {"practices": ["0100001"]},
        {"practices": [A, A]},
        {"practices": [A], "end_date": date(2019, 1, 1)},
        {"practices": [A], "extra": 1},
    ):
        with pytest.raises(ValidationError):
            EnrolledPopulation(name="Noord", start_date=date(2020, 1, 1), **bad)


def test_the_population_per_quarter_with_its_pre_period():
    gp = gp_lines(
        *[
            (p, agb, q, FEE)
            for p, agb in (("P1", A), ("P2", B), ("P3", C))
            for q in ("2019-10-01", "2020-01-01", "2020-04-01", "2020-07-01")
        ],
        ("P3", A, "2020-05-01", FEE),
    )  # P3 switches to A in Q2
    insured = spells(("P1", "2019-01-01", None), ("P2", "2019-01-01", None), ("P3", "2019-01-01", None))
    attributed = attribute(gp, insured)
    population = EnrolledPopulation(
        name="Noord", practices=[A, B], start_date=date(2020, 2, 1), end_date=date(2020, 6, 30)
    )
    out = population_quarters(attributed, population)
    assert rows(out, "population", "patient_id", "quarter_start", "practice_agb", "period", "relative_quarter") == [
        ("Noord", "P1", date(2019, 10, 1), A, "pre", -1),
        ("Noord", "P1", date(2020, 1, 1), A, "contract", 0),
        ("Noord", "P1", date(2020, 4, 1), A, "contract", 1),
        ("Noord", "P1", date(2020, 7, 1), A, "after", 2),
        ("Noord", "P2", date(2019, 10, 1), B, "pre", -1),
        ("Noord", "P2", date(2020, 1, 1), B, "contract", 0),
        ("Noord", "P2", date(2020, 4, 1), B, "contract", 1),
        ("Noord", "P2", date(2020, 7, 1), B, "after", 2),
        ("Noord", "P3", date(2020, 4, 1), A, "contract", 1),
    ]


def test_a_contract_population_is_its_gp_practices():
    contracts = pl.DataFrame(
        {"contract_id": ["C-1", "C-1", "C-1", "C-2"], "provider_agb": [A, "06000001", B, "06000001"]}
    )
    providers = pl.DataFrame({"provider_agb": [A, B, "06000001"], "provider_type": ["gp", "gp", "hospital"]})
    population = EnrolledPopulation(name="C-1 population", contract_id="C-1", start_date=date(2020, 1, 1))
    assert population_practices(population, contracts, providers) == [A, B]
    assert population_practices(population, contracts) == [A, B]  # by the AGB zorgsoort 01
    with pytest.raises(UserFacingError, match="'C-2' has no GP practice among its 1 providers \\(hospital\\)"):
        population_practices(population.model_copy(update={"contract_id": "C-2"}), contracts, providers)
    with pytest.raises(UserFacingError, match="'C-9' is not in the contracts table \\(contracts: C-1, C-2\\)"):
        population_practices(population.model_copy(update={"contract_id": "C-9"}), contracts, providers)
    with pytest.raises(UserFacingError, match="needs the contracts table"):
        population_practices(population)


# -- a generated store ----------------------------------------------------------------------------

#: The generator dates a quarter's registration fee on the quarter's first day
#: (``transforms.synth.background``, "GP registration fees every quarter").
QUARTER_STARTS = ((1, 1), (4, 1), (7, 1), (10, 1))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    from transforms.ingest.run import ingest
    from transforms.synth import SynthConfig, generate_delivery

    root = tmp_path_factory.mktemp("attribution")
    generate_delivery(SynthConfig(patients=2_000, seed=11, clean=True, block_size=2_000), root / "delivery")
    ingest(root / "delivery", root / "store", n_buckets=2, data_docs=False)
    gp, insured = scan_store(root / "store")
    period = store_period(root / "store")
    return {
        "root": root,
        "store": root / "store",
        "gp": gp.collect(),
        "insured": insured.collect(),
        "period": period,
        "attributed": attribute(gp, insured, period=period),
        "counts": attribution_counts(gp, insured, period=period),
    }


def _usual_gp(store_dir: Path) -> pl.DataFrame:
    """The patient's usual GP as the other GP lines (consults, chain care) and the prescriptions
    show it, independently of the registration fees: one AGB per patient in the generated data."""
    codes = list(registration_fee_codes())
    other = (
        pl.scan_parquet(sorted((store_dir / "gp").glob("bucket=*/*.parquet")))
        .filter(~pl.col("service_cd").is_in(codes))
        .select("patient_id", pl.col("provider_agb").alias("usual"))
    )
    rx = pl.scan_parquet(sorted((store_dir / "pharmacy").glob("bucket=*/*.parquet"))).select(
        "patient_id", pl.col("prescriber_agb").alias("usual")
    )
    usual = pl.concat([other, rx]).unique().collect()
    assert usual["patient_id"].is_unique().all(), "a patient with two usual GPs in the generated data"
    return usual


def _covered(insured: pl.DataFrame, days: pl.DataFrame) -> pl.DataFrame:
    """The (patient_id, day) rows of ``days`` that an insured spell covers (cut at death)."""
    spell_end = pl.min_horizontal("enrolled_to", "death_date").fill_null(date(2100, 1, 1))
    joined = days.join(insured.with_columns(spell_end.alias("_end")), on="patient_id")
    return joined.filter(pl.col("day").is_between("enrolled_from", "_end")).select("patient_id", "day").unique()


def test_every_enrolled_insured_quarter_of_a_generated_store_goes_to_the_usual_gp(store):
    attributed, insured = store["attributed"], store["insured"]
    assert store["period"] == (date(2015, 1, 1), date(2022, 12, 31))
    assert set(attributed["rule"]) == {"single"} and set(attributed["n_practices"]) == {1}
    # the usual GP, wherever the other lines show one (nearly everyone)
    usual = _usual_gp(store["store"])
    joined = attributed.join(usual, on="patient_id", how="left")
    assert joined["usual"].null_count() < 0.05 * joined.height
    assert joined.filter(pl.col("usual").is_not_null() & (pl.col("usual") != pl.col("practice_agb"))).is_empty()
    # exactly the insured-quarters whose generator fee day an insured spell covers
    patients = insured.select("patient_id").unique()
    fee_days = pl.DataFrame({"day": [date(y, m, d) for y in range(2015, 2023) for m, d in QUARTER_STARTS]})
    expected = (
        _covered(insured, patients.join(fee_days, how="cross"))
        .select("patient_id", pl.col("day").dt.truncate("1q").alias("quarter_start"))
        .unique()
    )
    assert set(attributed.select("patient_id", "quarter_start").rows()) == set(expected.rows())
    # so attributed exactly when insured on the quarter's first day (leap years too); an insured who
    # returns from abroad, or is born, during a quarter is unattributed in that quarter (enrolled, no fee)
    iq = insured_quarters(insured, store["period"])
    first_day = iq.select("patient_id", pl.col("quarter_start").alias("day"))
    on_first_day = set(_covered(insured, first_day).rows())
    got = set(attributed.select("patient_id", "quarter_start").rows())
    assert {r for r in iq.rows() if r in on_first_day} == got
    gaps = {r for r in iq.rows() if r not in on_first_day}
    assert gaps and not gaps & got


def test_the_counts_of_a_generated_store_add_up(store):
    c, attributed = store["counts"], store["attributed"]
    total = c.group_by("unit", "outcome").agg(pl.col("n").sum())
    n = dict(total.select(pl.concat_str("unit", "outcome", separator=":"), "n").rows())
    assert n["insured_quarter:attributed_single"] == n["fee:attributed"] == attributed.height
    assert (
        n["insured_quarter:attributed_single"] + n["insured_quarter:unattributed_no_fee"]
        == insured_quarters(store["insured"], store["period"]).height
    )
    # a clean delivery: no credited fee, none outside enrolment, one fee per insured-quarter
    assert set(n) == {"insured_quarter:attributed_single", "insured_quarter:unattributed_no_fee", "fee:attributed"}
    assert n["fee:attributed"] == store["gp"].height


def test_a_population_of_a_generated_store(store):
    attributed = store["attributed"]
    biggest = attributed.group_by("practice_agb").len().sort("len", "practice_agb", descending=[True, False])
    practices = biggest["practice_agb"].head(3).to_list()
    population = EnrolledPopulation(name="three practices", practices=practices, start_date=date(2019, 1, 1))
    out = population_quarters(attributed, population)
    assert out.height == attributed.filter(pl.col("practice_agb").is_in(practices)).height > 0
    assert set(out.filter(pl.col("period") == "pre")["year"]) == set(range(2015, 2019))
    assert out.filter(pl.col("quarter_start") == date(2019, 1, 1))["relative_quarter"].unique().to_list() == [0]


def test_the_generator_declares_a_fee_in_every_enrolled_quarter_of_a_leap_year(store):
    insured, attributed = store["insured"], store["attributed"]
    iq = insured_quarters(insured, store["period"]).filter(pl.col("quarter_start").dt.year().is_in([2016, 2020]))
    on_first_day = _covered(insured, iq.select("patient_id", pl.col("quarter_start").alias("day")))
    missing = on_first_day.rename({"day": "quarter_start"}).join(
        attributed, on=["patient_id", "quarter_start"], how="anti"
    )
    assert missing.is_empty(), missing.group_by("quarter_start").len().sort("quarter_start")

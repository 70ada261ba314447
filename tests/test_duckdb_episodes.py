"""The DuckDB SQL peer of the episode engine (bench/duckdb_episodes), against docs/episode-rules.md.

Two parts: hand-computed cases on a tiny literal delivery written to tmp_path (every expected
number is worked out in the comments), and invariants on a generated clean delivery.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from bench.duckdb_episodes import (
    EPISODE_COLUMNS,
    EPISODE_LINE_COLUMNS,
    build_episodes,
    completeness_date,
)

D = date.fromisoformat
DATA_AS_OF = D("2023-12-31")  # completeness date 2022-12-31 with the default 12-month run-out

# --------------------------------------------------------------------------------------------
# A tiny literal delivery
# --------------------------------------------------------------------------------------------
_SCHEMAS = {
    "insured": {
        "patient_id": pl.String,
        "insurer_uzovi": pl.String,
        "enrolled_from": pl.Date,
        "enrolled_to": pl.Date,
        "birth_year": pl.Int16,
        "sex": pl.String,
        "postcode3": pl.String,
        "gemeente_code": pl.String,
        "death_date": pl.Date,
    },
    "dbc": {
        "claim_id": pl.String,
        "patient_id": pl.String,
        "provider_agb": pl.String,
        "insurer_uzovi": pl.String,
        "specialism_cd": pl.String,
        "diagnosis_cd": pl.String,
        "product_cd": pl.String,
        "care_type_cd": pl.String,
        "start_date": pl.Date,
        "end_date": pl.Date,
        "clinical": pl.Boolean,
        "amount": pl.Decimal(12, 2),
        "declared_on": pl.Date,
        "corrects_claim_id": pl.String,
    },
    "dbc_activity": {
        "claim_id": pl.String,
        "activity_cd": pl.String,
        "activity_date": pl.Date,
        "quantity": pl.Int32,
        "amount": pl.Decimal(12, 2),
    },
    "gp": {
        "claim_id": pl.String,
        "patient_id": pl.String,
        "provider_agb": pl.String,
        "insurer_uzovi": pl.String,
        "service_date": pl.Date,
        "amount": pl.Decimal(12, 2),
        "declared_on": pl.Date,
        "corrects_claim_id": pl.String,
        "service_cd": pl.String,
        "referral_specialism_cd": pl.String,
    },
    "pharmacy": {
        "claim_id": pl.String,
        "patient_id": pl.String,
        "provider_agb": pl.String,
        "insurer_uzovi": pl.String,
        "service_date": pl.Date,
        "amount": pl.Decimal(12, 2),
        "declared_on": pl.Date,
        "corrects_claim_id": pl.String,
        "atc_cd": pl.String,
        "ddd": pl.Float64,
        "prescriber_agb": pl.String,
    },
    "paramedical": {
        "claim_id": pl.String,
        "patient_id": pl.String,
        "provider_agb": pl.String,
        "insurer_uzovi": pl.String,
        "service_date": pl.Date,
        "amount": pl.Decimal(12, 2),
        "declared_on": pl.Date,
        "corrects_claim_id": pl.String,
        "discipline": pl.String,
        "service_cd": pl.String,
    },
}

HOSP_A = "06000001"
HOSP_B = "06000002"


def _spell(pid, frm, to=None, *, birth=1950, sex="V", pc="111", gm="GM0001", death=None):
    return dict(
        patient_id=pid,
        insurer_uzovi="3311",
        enrolled_from=D(frm),
        enrolled_to=D(to) if to else None,
        birth_year=birth,
        sex=sex,
        postcode3=pc,
        gemeente_code=gm,
        death_date=D(death) if death else None,
    )


def _dbc(cid, pid, spec, diag, start, end, amount, *, pr="131999999", agb=HOSP_A):
    return dict(
        claim_id=cid,
        patient_id=pid,
        provider_agb=agb,
        insurer_uzovi="3311",
        specialism_cd=spec,
        diagnosis_cd=diag,
        product_cd=pr,
        care_type_cd="11",
        start_date=D(start),
        end_date=D(end),
        clinical=False,
        amount=Decimal(amount),
        declared_on=D(end),
        corrects_claim_id=None,
    )


def _act(cid, code, day, qty=1):
    return dict(claim_id=cid, activity_cd=code, activity_date=D(day), quantity=qty, amount=None)


def _first_line(table, cid, pid, day, amount, **extra):
    row = dict(
        claim_id=cid,
        patient_id=pid,
        provider_agb="01000001",
        insurer_uzovi="3311",
        service_date=D(day),
        amount=Decimal(amount),
        declared_on=D(day),
        corrects_claim_id=None,
    )
    defaults = {
        "gp": dict(service_cd="12000", referral_specialism_cd=None),
        "pharmacy": dict(atc_cd="N02BE01", ddd=10.0, prescriber_agb=None),
        "paramedical": dict(discipline="physiotherapy", service_cd="1000"),
    }[table]
    return {**row, **defaults, **extra}


def _write(root: Path, tables: dict[str, list[dict]]) -> None:
    for table, rows in tables.items():
        folder = root / table
        folder.mkdir(parents=True, exist_ok=True)
        pl.DataFrame(rows, schema=_SCHEMAS[table], orient="row").write_parquet(folder / "part-00000.parquet")


# Hip patient P1, anchor 2020-03-10 at HOSP_A:
#   window [2020-03-10 - 120 = 2019-11-11, 2020-03-10 + 365 = 2021-03-10]
#   covariate period [2019-03-11, 2020-03-09]
# Second episode anchor 2021-05-01: window [max(2021-01-01, 2021-03-11) = 2021-03-11, 2022-05-01]
LITERAL = {
    "insured": [
        _spell("P1", "2015-01-01", "2019-06-30", pc="111", gm="GM0001"),
        _spell("P1", "2019-07-01", None, pc="222", gm="GM0002"),  # adjacent: continuous cover
        _spell("P2", "2015-01-01", "2019-01-15", birth=1940, sex="M", death="2019-01-15"),
        _spell("P3", "2015-01-01", "2020-02-29"),
        _spell("P3", "2020-03-02", None),  # 2020-03-01 uninsured
        _spell("P4", "2015-01-01"),
        _spell("P5", "2015-01-01"),
        _spell("P6", "2015-01-01"),
        _spell("P9", "2015-01-01"),
    ],
    "dbc": [
        # P1 hip
        _dbc("H1", "P1", "0305", "1701", "2020-03-10", "2020-03-20", "9000.00", pr="131999002"),
        _dbc("H2", "P1", "0305", "1701", "2020-08-25", "2020-09-10", "8000.00", agb=HOSP_B),
        _dbc("O1", "P1", "0305", "1701", "2019-09-01", "2019-12-31", "1000.00", pr="131999001"),
        _dbc("C1", "P1", "0305", "1703", "2020-06-01", "2020-06-30", "500.00"),
        _dbc("Z1", "P1", "0305", "1701", "2020-04-01", "2020-04-10", "0.00"),
        _dbc("M1", "P1", "0313", "221", "2020-07-01", "2020-07-01", "300.00"),
        _dbc("S1", "P1", "0305", "1701", "2021-03-01", "2021-03-20", "2000.00"),
        _dbc("H3", "P1", "0305", "1701", "2021-05-01", "2021-05-10", "7000.00"),
        # P9: other lines of O1's product, for the national mean of 131999001 in 2019
        _dbc("N1", "P9", "0305", "1701", "2019-02-01", "2019-05-01", "2000.01", pr="131999001"),
        _dbc("N2", "P9", "0305", "1701", "2019-06-01", "2019-07-01", "0.00", pr="131999001"),
        _dbc("N3", "P9", "0305", "1701", "2019-12-01", "2020-01-10", "5000.00", pr="131999001"),
        # P2 cataract, two eyes, a secondary cataract, death inside the window
        _dbc("K1", "P2", "0301", "554", "2018-05-01", "2018-05-01", "1500.00", agb=HOSP_B),
        _dbc("K2", "P2", "0301", "554", "2018-06-15", "2018-06-15", "1500.00"),
        _dbc("K3", "P2", "0301", "557", "2018-11-01", "2018-11-30", "300.00"),
        # P3, P4, P5 hip status cases
        _dbc("T3", "P3", "0305", "1701", "2020-06-01", "2020-06-05", "9000.00"),
        _dbc("T4", "P4", "0305", "1701", "2022-03-01", "2022-03-05", "9000.00"),
        _dbc("T5", "P5", "0305", "1701", "2021-12-31", "2022-01-05", "9000.00"),
        # P6 hip: triggers on day 0, on the window end (joins) and 2 days later (new episode)
        _dbc("U1", "P6", "0305", "1701", "2020-01-01", "2020-01-05", "9000.00"),
        _dbc("U2", "P6", "0305", "1701", "2020-12-31", "2021-01-04", "9000.00"),
        _dbc("U3", "P6", "0305", "1701", "2021-01-02", "2021-01-06", "9000.00"),
    ],
    "dbc_activity": [
        _act("H1", "190305", "2020-03-10"),
        _act("H1", "190218", "2020-03-10", qty=4),  # length of stay 4
        _act("H1", "190060", "2020-03-15", qty=2),  # 2 visits
        _act("H2", "190305", "2020-09-01"),  # second trigger inside the window
        _act("O1", "190013", "2019-10-01"),  # before window start: not counted
        _act("O1", "190013", "2019-12-01"),  # 1 visit
        _act("M1", "190060", "2020-07-01"),  # msz_other line: not counted
        _act("Z1", "190305", "2020-04-01"),  # fully credited: no trigger event
        _act("H3", "190305", "2021-05-01"),
        _act("K1", "031242", "2018-05-01"),  # two rows, same claim and date: one event
        _act("K1", "031268", "2018-05-01"),
        _act("K2", "031268", "2018-06-15"),
        _act("T3", "190305", "2020-06-01"),
        _act("T4", "190305", "2022-03-01"),
        _act("T5", "190305", "2021-12-31"),
        _act("U1", "190305", "2020-01-01"),
        _act("U2", "190305", "2020-12-31"),
        _act("U3", "190305", "2021-01-02"),
    ],
    "gp": [
        _first_line("gp", "G1", "P1", "2020-05-05", "25.50"),
        _first_line("gp", "G0", "P1", "2020-05-06", "0.00"),
    ],
    "pharmacy": [
        _first_line("pharmacy", "F1", "P1", "2019-12-01", "30.00", atc_cd="A10BA02"),  # anchor-100
        _first_line("pharmacy", "F2", "P1", "2020-03-10", "12.34", atc_cd="C10AA01"),  # anchor day
    ],
    "paramedical": [
        _first_line("paramedical", "R1", "P1", "2020-04-15", "40.00"),
    ],
}


@pytest.fixture(scope="module")
def literal(tmp_path_factory):
    root = tmp_path_factory.mktemp("literal")
    _write(root, LITERAL)  # no maternity folder at all: an absent table is empty
    (root / "delivery.json").write_text(json.dumps({"data_as_of": DATA_AS_OF.isoformat()}))
    episodes, lines = build_episodes(root)
    return root, episodes, lines


def _episode(episodes, patient, anchor):
    rows = episodes.filter((pl.col("patient_id") == patient) & (pl.col("anchor_date") == D(anchor)))
    assert rows.height == 1, rows
    return rows.row(0, named=True)


def _lines(lines, episode_id):
    return {r["claim_id"]: r for r in lines.filter(pl.col("episode_id") == episode_id).iter_rows(named=True)}


def test_columns(literal):
    _, episodes, lines = literal
    assert episodes.columns == EPISODE_COLUMNS
    assert lines.columns == EPISODE_LINE_COLUMNS
    assert episodes.schema["episode_id"] == pl.String
    assert episodes.schema["anchor_date"] == pl.Date
    assert episodes.schema["prior_year_standardised_cents"] == pl.Int64
    assert lines.schema["allocated_cents"] == pl.Int64


def test_episode_count(literal):
    _, episodes, _ = literal
    got = sorted(
        (r["bundle_id"], r["patient_id"], r["anchor_date"].isoformat()) for r in episodes.iter_rows(named=True)
    )
    assert got == [
        ("cataract", "P2", "2018-05-01"),
        ("hip_oa", "P1", "2020-03-10"),
        ("hip_oa", "P1", "2021-05-01"),
        ("hip_oa", "P3", "2020-06-01"),
        ("hip_oa", "P4", "2022-03-01"),
        ("hip_oa", "P5", "2021-12-31"),
        ("hip_oa", "P6", "2020-01-01"),
        ("hip_oa", "P6", "2021-01-02"),
    ]


def test_hip_first_episode(literal):
    _, episodes, lines = literal
    e = _episode(episodes, "P1", "2020-03-10")
    assert e["episode_id"] == hashlib.sha256(f"hip_oa|P1|2020-03-10|{HOSP_A}".encode()).hexdigest()[:20]
    assert e["anchor_provider_agb"] == HOSP_A
    assert e["anchor_year"] == 2020
    assert (e["window_start"], e["window_end"]) == (D("2019-11-11"), D("2021-03-10"))
    assert e["n_triggers"] == 2  # H2's trigger on 2020-09-01 lies inside the open window
    assert e["status"] == "complete"
    assert (e["age_at_anchor"], e["sex"]) == (70, "V")
    assert (e["postcode3"], e["gemeente_code"]) == ("222", "GM0002")  # spell covering the anchor
    assert e["length_of_stay"] == 4
    assert e["outpatient_visits"] == 3  # H1 190060 x2 + O1 190013 on 2019-12-01
    assert e["complication"] is True  # C1 0305/1703 starting 2020-06-01
    assert e["secondary_cataract"] is None and e["second_eye"] is None

    got = _lines(lines, e["episode_id"])
    # O1: 2019-09-01..2019-12-31 = 122 days, 51 in the window (2019-11-11..12-31);
    #   100000 * 51 / 122 = 41803.28 -> 41803.
    #   standardised: mean of product 131999001 in 2019 over non-zero lines O1 and N1
    #   (N2 is fully credited, N3 ends in 2020): (100000 + 200001) / 2 = 150000.5 -> 150001;
    #   150001 * 51 / 122 = 62705.34 -> 62705.
    o1 = got["O1"]
    assert (o1["component"], o1["days_in"], o1["days"]) == ("in_bundle", 51, 122)
    assert (o1["allocated_cents"], o1["allocated_standardised_cents"]) == (41803, 62705)
    # S1 2021-03-01..03-20 straddles the window end: 10 of 20 days.
    s1 = got["S1"]
    assert (s1["days_in"], s1["days"], s1["allocated_cents"]) == (10, 20, 100000)
    expected = {
        "H1": ("in_bundle", 900000),
        "H2": ("in_bundle", 800000),
        "O1": ("in_bundle", 41803),
        "C1": ("in_bundle", 50000),
        "S1": ("in_bundle", 100000),
        "M1": ("msz_other", 30000),
        "G1": ("gp", 2550),
        "F1": ("pharmacy", 3000),
        "F2": ("pharmacy", 1234),
        "R1": ("paramedical", 4000),
    }
    assert {k: (v["component"], v["allocated_cents"]) for k, v in got.items()} == expected
    assert "Z1" not in got and "G0" not in got  # fully credited lines are not allocated
    assert sum(v["allocated_cents"] for v in got.values()) == 1932587
    # first-line lines keep their declared amount as the standardised amount
    assert got["G1"]["allocated_standardised_cents"] == 2550


def test_hip_covariates(literal):
    _, episodes, _ = literal
    e = _episode(episodes, "P1", "2020-03-10")
    # F1 (A10, 100 days before the anchor) counts; F2 (C10, on the anchor day) does not
    assert e["diabetes"] is True and e["lipid"] is False
    assert e["n_chronic_conditions"] == 1
    assert not any(
        e[f]
        for f in (
            "obstructive_airway",
            "cardiovascular",
            "anticoagulants",
            "depression",
            "psychosis",
            "epilepsy",
            "thyroid",
            "cancer",
        )
    )
    # period [2019-03-11, 2020-03-09]: O1 wholly inside at its standardised 150001, F1 3000;
    # Z1 is fully credited, H1 starts on the anchor
    assert e["prior_year_standardised_cents"] == 153001


def test_second_episode_window_truncated(literal):
    _, episodes, lines = literal
    e = _episode(episodes, "P1", "2021-05-01")
    # anchor - 120 = 2021-01-01, but the first window ends 2021-03-10
    assert (e["window_start"], e["window_end"]) == (D("2021-03-11"), D("2022-05-01"))
    assert e["n_triggers"] == 1 and e["complication"] is False
    assert e["length_of_stay"] == 0 and e["outpatient_visits"] == 0
    assert e["n_chronic_conditions"] == 0
    got = _lines(lines, e["episode_id"])
    assert {k: (v["days_in"], v["days"], v["allocated_cents"]) for k, v in got.items()} == {
        "S1": (10, 20, 100000),
        "H3": (10, 10, 700000),
    }


def test_window_end_rule(literal):
    _, episodes, _ = literal
    # U2 on 2020-12-31 = anchor + 365 joins; U3 on 2021-01-02 opens a new episode although it
    # is within 365 days of U2 (the window does not move)
    first = _episode(episodes, "P6", "2020-01-01")
    second = _episode(episodes, "P6", "2021-01-02")
    assert (first["n_triggers"], first["window_end"]) == (2, D("2020-12-31"))
    assert (second["n_triggers"], second["window_start"]) == (1, D("2021-01-01"))


def test_cataract_second_eye_and_death(literal):
    _, episodes, lines = literal
    e = _episode(episodes, "P2", "2018-05-01")
    assert e["bundle_id"] == "cataract"
    assert e["anchor_provider_agb"] == HOSP_B
    assert e["episode_id"] == hashlib.sha256(f"cataract|P2|2018-05-01|{HOSP_B}".encode()).hexdigest()[:20]
    assert (e["window_start"], e["window_end"]) == (D("2018-01-31"), D("2020-04-30"))
    assert e["n_triggers"] == 2  # K1's two activity rows on one date are one event
    assert e["second_eye"] is True
    assert e["secondary_cataract"] is True  # K3 0301/557 after the anchor
    assert e["complication"] is None
    # death on 2019-01-15 inside the window; precedes the enrolment gap after it
    assert e["status"] == "death"
    assert (e["age_at_anchor"], e["sex"]) == (78, "M")
    got = _lines(lines, e["episode_id"])
    assert {k: v["component"] for k, v in got.items()} == {"K1": "in_bundle", "K2": "in_bundle", "K3": "in_bundle"}


def test_status_enrolment_and_data(literal):
    _, episodes, _ = literal
    assert _episode(episodes, "P3", "2020-06-01")["status"] == "censored_enrolment"
    # window end 2023-03-01 after the completeness date 2022-12-31
    assert _episode(episodes, "P4", "2022-03-01")["status"] == "censored_data"
    # window end 2022-12-31 equals the completeness date: complete
    assert _episode(episodes, "P5", "2021-12-31")["status"] == "complete"


def test_runout_and_data_as_of_argument(literal):
    root, _, _ = literal
    episodes, _ = build_episodes(root, bundles=("hip_oa",), data_as_of=DATA_AS_OF, runout_months=0, threads=1)
    assert set(episodes["bundle_id"]) == {"hip_oa"}
    assert _episode(episodes, "P4", "2022-03-01")["status"] == "complete"
    assert completeness_date(D("2024-02-29"), 12) == D("2023-02-28")
    assert completeness_date(D("2023-03-31"), 1) == D("2023-02-28")
    assert completeness_date(D("2023-03-31"), 12) == D("2022-03-31")


def test_missing_data_as_of(tmp_path):
    _write(tmp_path, {"insured": LITERAL["insured"]})
    with pytest.raises(ValueError):
        build_episodes(tmp_path)


def test_hive_partitioned_store_with_extra_columns(literal, tmp_path):
    """The ingest store: Hive buckets and extra columns give the same result."""
    _root, episodes, lines = literal
    for table, rows in LITERAL.items():
        df = pl.DataFrame(rows, schema=_SCHEMAS[table], orient="row")
        key = "patient_id" if "patient_id" in df.columns else "claim_id"
        df = df.with_columns(patient_key=pl.col(key).hash(), bucket=pl.col(key).hash() % 3)
        for (bucket,), part in df.group_by("bucket"):
            folder = tmp_path / table / f"bucket={bucket:03d}"
            folder.mkdir(parents=True)
            part.drop("bucket").write_parquet(folder / "part-0.parquet")
    e2, l2 = build_episodes(tmp_path, data_as_of=DATA_AS_OF)
    assert e2.equals(episodes)
    assert l2.equals(lines)


# --------------------------------------------------------------------------------------------
# Invariants on a generated clean delivery
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    from transforms.synth import SynthConfig, generate_delivery

    path = tmp_path_factory.mktemp("duckdb_episodes") / "clean3k"
    generate_delivery(SynthConfig(patients=3000, clean=True, seed=5), path)
    episodes, lines = build_episodes(path)
    return path, episodes, lines


def _money_lines(path: Path) -> pl.DataFrame:
    frames = []
    for table in ("dbc", "gp", "pharmacy", "paramedical", "maternity"):
        files = sorted((path / table).glob("**/*.parquet"))
        if not files:
            continue
        df = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
        start, end = ("start_date", "end_date") if table == "dbc" else ("service_date",) * 2
        frames.append(
            df.select(
                pl.lit(table).alias("source_table"),
                "claim_id",
                "patient_id",
                pl.col(start).alias("line_start"),
                pl.col(end).alias("line_end"),
                pl.col("amount").cast(pl.String).alias("amount"),
            )
        )
    return pl.concat(frames)


def _cents(amount: str) -> int:
    return int(Decimal(amount) * 100)


def _prorate(cents: int, days_in: int, days: int) -> int:
    sign = (cents > 0) - (cents < 0)
    return sign * ((2 * abs(cents) * days_in + days) // (2 * days))


def test_generated_has_both_bundles(generated):
    _, episodes, lines = generated
    counts = dict(episodes.group_by("bundle_id").len().iter_rows())
    assert counts.get("hip_oa", 0) > 0 and counts.get("cataract", 0) > 0
    assert lines.height > 0
    assert episodes["episode_id"].n_unique() == episodes.height
    for r in episodes.iter_rows(named=True):
        key = f"{r['bundle_id']}|{r['patient_id']}|{r['anchor_date']:%Y-%m-%d}|{r['anchor_provider_agb']}"
        assert r["episode_id"] == hashlib.sha256(key.encode()).hexdigest()[:20]


def test_generated_allocation_recomputed(generated):
    """Every non-zero money line overlapping a window is allocated, and each episode's allocated
    cents equal the prorated amounts recomputed here in Python."""
    path, episodes, lines = generated
    money = _money_lines(path)
    pats = set(episodes["patient_id"])
    by_patient = defaultdict(list)
    for r in money.filter(pl.col("patient_id").is_in(pats)).iter_rows(named=True):
        by_patient[r["patient_id"]].append(r)

    expected_total, expected_keys = {}, {}
    for e in episodes.iter_rows(named=True):
        ws, we = e["window_start"], e["window_end"]
        total, keys = 0, set()
        for r in by_patient[e["patient_id"]]:
            cents = _cents(r["amount"])
            if cents == 0 or r["line_start"] > we or r["line_end"] < ws:
                continue
            days_in = (min(r["line_end"], we) - max(r["line_start"], ws)).days + 1
            days = (r["line_end"] - r["line_start"]).days + 1
            total += _prorate(cents, days_in, days)
            keys.add((r["source_table"], r["claim_id"]))
        expected_total[e["episode_id"]] = total
        expected_keys[e["episode_id"]] = keys

    got_total = dict(lines.group_by("episode_id").agg(pl.col("allocated_cents").sum()).iter_rows())
    got_keys = defaultdict(set)
    for eid, table, cid in lines.select("episode_id", "source_table", "claim_id").iter_rows():
        got_keys[eid].add((table, cid))
    for eid in expected_total:
        assert got_total.get(eid, 0) == expected_total[eid], eid
        assert got_keys.get(eid, set()) == expected_keys[eid], eid
    key = pl.struct("episode_id", "source_table", "claim_id")
    assert lines.select(key.is_unique().all()).item()


def test_generated_no_double_allocation(generated):
    _, _, lines = generated
    over = (
        lines.group_by("bundle_id", "source_table", "claim_id")
        .agg(pl.col("days_in").sum(), pl.col("days").first(), pl.col("days").n_unique().alias("k"))
        .filter((pl.col("days_in") > pl.col("days")) | (pl.col("k") > 1))
    )
    assert over.height == 0, over
    assert lines.filter((pl.col("days_in") < 1) | (pl.col("days_in") > pl.col("days"))).height == 0


def test_generated_windows_do_not_overlap(generated):
    _, episodes, _ = generated
    prev = episodes.sort("bundle_id", "patient_id", "anchor_date").with_columns(
        prev_end=pl.col("window_end").shift(1).over("bundle_id", "patient_id")
    )
    assert prev.filter(pl.col("window_start") <= pl.col("prev_end")).height == 0
    assert prev.filter(pl.col("anchor_date") <= pl.col("prev_end")).height == 0
    assert episodes.filter(pl.col("window_start") > pl.col("anchor_date")).height == 0


def test_generated_planted_triggers_found(generated):
    path, episodes, _ = generated
    truth = pl.read_parquet(f"{path}.truth/planted_triggers/*.parquet")
    planted = truth.filter(
        (pl.col("role") == "trigger") & pl.col("delivered") & pl.col("bundle_id").is_in(["hip_oa", "cataract"])
    )
    assert planted.height > 0
    eps = defaultdict(list)
    for e in episodes.iter_rows(named=True):
        eps[(e["bundle_id"], e["patient_id"])].append(e)
    missing = []
    for p in planted.iter_rows(named=True):
        found = any(
            e["anchor_date"] == p["anchor_date"]
            or (e["n_triggers"] > 1 and e["anchor_date"] < p["anchor_date"] <= e["window_end"])
            for e in eps[(p["bundle_id"], p["patient_id"])]
        )
        if not found:
            missing.append(p)
    assert not missing, missing[:5]


def test_generated_threads_deterministic(generated):
    path, episodes, lines = generated
    e1, l1 = build_episodes(path, threads=1)
    assert e1.equals(episodes) and l1.equals(lines)


def test_written_outputs_equal_the_returned_frames(generated, tmp_path):
    """``out=`` writes the same rows, partitioned by bundle and anchor year (what the benchmark times)."""
    path, episodes, lines = generated
    build_episodes(path, out=tmp_path)
    years = {p.name for p in (tmp_path / "episodes" / "bundle_id=hip_oa").iterdir()}
    assert years and all(y.startswith("anchor_year=") for y in years)
    written = pl.read_parquet(tmp_path / "episodes" / "**" / "*.parquet", hive_partitioning=True)
    assert written.select(episodes.columns).sort("episode_id").equals(episodes.sort("episode_id"), null_equal=True)
    written_lines = pl.read_parquet(tmp_path / "episode_lines" / "**" / "*.parquet", hive_partitioning=True)
    key = ["episode_id", "source_table", "claim_id", "component"]
    assert written_lines.select(lines.columns).sort(key).equals(lines.sort(key), null_equal=True)

"""Hand-computed episode cases: one per bundle and one per common rule (docs/episode-rules.md).

Every expected number below is worked out by hand in the comment next to it.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from tiny_delivery import HOSPITAL, TinyDelivery
from transforms.episodes.run import build_episodes


def run(delivery: TinyDelivery, tmp_path, bundles: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    out = tmp_path / "out"
    build_episodes(delivery.store(), out, bundles=bundles)
    if not (out / "episodes").exists():
        return pl.DataFrame(), pl.DataFrame()
    episodes = pl.concat(
        [pl.read_parquet(f, hive_partitioning=True) for f in sorted((out / "episodes").rglob("*.parquet"))],
        how="diagonal_relaxed",
    )
    lines = pl.concat(
        [pl.read_parquet(f, hive_partitioning=True) for f in sorted((out / "episode_lines").rglob("*.parquet"))],
        how="diagonal_relaxed",
    )
    return episodes.sort("patient_id", "anchor_date"), lines


def one(frame: pl.DataFrame, **where) -> dict:
    rows = frame.filter(pl.all_horizontal([pl.col(k) == v for k, v in where.items()])).to_dicts()
    assert len(rows) == 1, f"{len(rows)} rows for {where}"
    return rows[0]


# ------------------------------------------------------------------------------- hip_oa (rules 1-8)
@pytest.fixture
def hip(tmp_path):
    d = TinyDelivery(tmp_path / "hip")
    d.patient("P1", birth_year=1950, sex="V")
    # outpatient 2016-01-01..03-31 = 91 days (leap year); window starts 2016-05-10 - 120 = 2016-01-11
    d.dbc(
        "D-out",
        "P1",
        "0305",
        "1701",
        "2016-01-01",
        "2016-03-31",
        300.00,
        product="131999234",
        activities=[("190013", "2016-01-05", 1), ("190013", "2016-02-01", 2)],
    )
    d.dbc(
        "D-op",
        "P1",
        "0305",
        "1701",
        "2016-05-01",
        "2016-06-30",
        9000.00,
        product="131999052",
        clinical=True,
        activities=[("190305", "2016-05-10", 1), ("190218", "2016-05-10", 3)],
    )
    d.dbc(
        "D-compl",
        "P1",
        "0305",
        "1703",
        "2016-12-01",
        "2016-12-20",
        5000.00,
        product="192001007",
        activities=[("038570", "2016-12-05", 1)],
    )
    d.dbc("D-cardio", "P1", "0320", "302", "2017-04-01", "2017-07-29", 1200.00, product="099899066")  # 120 days
    d.gp("G-before", "P1", "2015-12-01")
    d.gp("G-ref", "P1", "2016-02-01", referral="0305")
    d.pharmacy("F-diab", "P1", "2015-06-01", "A10BA02")  # in the 365 days before the anchor
    d.pharmacy("F-statin", "P1", "2016-05-10", "C10AA01")  # on the anchor day: allocated, not a covariate
    d.physio("P-1", "P1", "2016-05-20")
    # another patient with the operation's product in 2016, no trigger: the national mean is 8,500
    d.patient("P2", birth_year=1948, sex="M")
    d.dbc("D-p2", "P2", "0305", "1701", "2016-04-01", "2016-06-15", 8000.00, product="131999052")
    return d


def test_hip_episode_anchor_window_allocation_and_proration(hip, tmp_path):
    episodes, lines = run(hip, tmp_path, ["hip_oa"])
    e = one(episodes, patient_id="P1")
    assert e["anchor_date"] == date(2016, 5, 10) and e["anchor_provider_agb"] == HOSPITAL
    assert e["window_start"] == date(2016, 1, 11) and e["window_end"] == date(2017, 5, 10)
    assert e["n_triggers"] == 1 and e["status"] == "complete"
    assert episodes.height == 1  # P2 has no trigger activity
    alloc = {r["claim_id"]: r for r in lines.filter(pl.col("episode_id") == e["episode_id"]).to_dicts()}
    assert set(alloc) == {"D-out", "D-op", "D-compl", "D-cardio", "G-ref", "F-statin", "P-1"}
    # straddling outpatient subtraject: 81 of 91 days inside -> 30000 * 81 / 91 = 26703.3 -> 26703
    assert (alloc["D-out"]["days_in"], alloc["D-out"]["days"], alloc["D-out"]["allocated_cents"]) == (81, 91, 26703)
    # cardiology subtraject: 40 of 120 days inside (Apr 1 - May 10) -> 120000 * 40 / 120 = 40000, msz_other
    assert alloc["D-cardio"]["allocated_cents"] == 40000 and alloc["D-cardio"]["component"] == "msz_other"
    assert alloc["D-compl"]["component"] == "in_bundle" and alloc["G-ref"]["component"] == "gp"
    assert alloc["F-statin"]["component"] == "pharmacy" and alloc["P-1"]["component"] == "paramedical"
    assert e["in_bundle_cents"] == 26703 + 900000 + 500000
    assert (e["gp_cents"], e["pharmacy_cents"], e["paramedical_cents"], e["msz_other_cents"]) == (
        950,
        1200,
        3100,
        40000,
    )
    assert e["total_cents"] == 26703 + 900000 + 500000 + 950 + 1200 + 3100 + 40000


def test_hip_standardised_amounts_use_the_national_mean_price(hip, tmp_path):
    episodes, lines = run(hip, tmp_path, ["hip_oa"])
    e = one(episodes, patient_id="P1")
    op = one(lines, claim_id="D-op")
    # product 131999052 ending in 2016: (900000 + 800000) / 2 = 850000
    assert op["allocated_cents"] == 900000 and op["allocated_standardised_cents"] == 850000
    assert e["in_bundle_standardised_cents"] == 26703 + 850000 + 500000
    assert one(lines, claim_id="G-ref")["allocated_standardised_cents"] == 950  # first line: declared


def test_hip_covariates_outcomes_and_care_path(hip, tmp_path):
    episodes, _ = run(hip, tmp_path, ["hip_oa"])
    e = one(episodes, patient_id="P1")
    assert e["age_at_anchor"] == 66 and e["sex"] == "V" and e["postcode3"] == "101"
    assert e["diabetes"] and not e["lipid"] and e["n_chronic_conditions"] == 1
    # prior year [2015-05-11, 2016-05-09]: diabetes dispensing 1200, GP 950 + 950, outpatient 30000,
    # operation 2016-05-01..05-09 = 9 of 61 days of 850000 -> 125409.8 -> 125410 (standardised)
    assert e["prior_year_standardised_cents"] == 1200 + 950 + 950 + 30000 + 125410
    assert e["complication"] is True and e["length_of_stay"] == 3
    assert e["outpatient_visits"] == 2  # the 2016-01-05 visit lies before the window
    assert e["referral"] == date(2016, 2, 1) and e["first_specialist_visit"] == date(2016, 1, 1)
    assert e["discharge"] == date(2016, 5, 13) and e["first_physiotherapy"] == date(2016, 5, 20)
    assert e["days_discharge_to_physiotherapy"] == 7


# ----------------------------------------------------------------------- rules 2-3 and status (rule 7)
def test_trigger_inside_an_open_episode_and_no_overlap_with_the_next(tmp_path):
    d = TinyDelivery(tmp_path / "d")
    d.patient("P3")
    for claim, day in (("A", "2016-03-01"), ("B", "2016-10-01"), ("C", "2017-06-01")):
        d.dbc(claim, "P3", "0305", "1701", day, day, 9000.0, activities=[("190305", day, 1)])
    episodes, lines = run(d, tmp_path, ["hip_oa"])
    assert episodes["n_triggers"].to_list() == [2, 1]
    first, second = episodes.to_dicts()
    assert first["window_end"] == date(2017, 3, 1)
    # 2017-06-01 - 120 = 2017-02-01 would overlap: the window starts the day after the previous end
    assert second["window_start"] == date(2017, 3, 2) and second["window_end"] == date(2018, 6, 1)
    assert lines.group_by("claim_id").len()["len"].max() == 1  # each line in one episode


@pytest.mark.parametrize(
    "case,expected",
    [("death", "death"), ("gap", "censored_enrolment"), ("recent", "censored_data"), ("complete", "complete")],
)
def test_status(tmp_path, case, expected):
    d = TinyDelivery(tmp_path / "d")
    anchor = {"death": "2017-01-10", "gap": "2017-06-01", "recent": "2022-06-01", "complete": "2017-06-01"}[case]
    if case == "death":
        d.patient("P", spells=[("2015-01-01", "2017-06-01")], death="2017-06-01")
    elif case == "gap":  # not insured in February 2017, inside the window 2017-02-01 .. 2018-06-01
        d.patient("P", spells=[("2015-01-01", "2016-12-31"), ("2017-03-01", None)])
    else:
        d.patient("P")
    d.dbc("A", "P", "0305", "1701", anchor, anchor, 9000.0, activities=[("190305", anchor, 1)])
    episodes, _ = run(d, tmp_path, ["hip_oa"])
    # completeness = 2023-03-31 - 12 months = 2022-03-31; a window ending 2023-06-01 is censored
    assert episodes["status"].to_list() == [expected]


def test_adjacent_spells_with_an_insurer_switch_cover_the_window(tmp_path):
    d = TinyDelivery(tmp_path / "d")
    d.patient("P", spells=[("2015-01-01", "2016-12-31"), ("2017-01-01", None)])
    d.dbc("A", "P", "0305", "1701", "2017-02-01", "2017-02-01", 9000.0, activities=[("190305", "2017-02-01", 1)])
    episodes, _ = run(d, tmp_path, ["hip_oa"])
    assert episodes["status"].to_list() == ["complete"]


def test_episode_id_is_the_documented_hash(tmp_path):
    import hashlib

    d = TinyDelivery(tmp_path / "d")
    d.patient("P9")
    d.dbc("A", "P9", "0305", "1701", "2016-03-01", "2016-03-01", 9000.0, activities=[("190305", "2016-03-01", 1)])
    episodes, _ = run(d, tmp_path, ["hip_oa"])
    expected = hashlib.sha256(f"hip_oa|P9|2016-03-01|{HOSPITAL}".encode()).hexdigest()[:20]
    assert episodes["episode_id"].to_list() == [expected]


# ------------------------------------------------------------------------------ the other bundles
def test_knee_with_complication(tmp_path):
    d = TinyDelivery(tmp_path / "d")
    d.patient("P")
    d.dbc("K", "P", "0305", "1801", "2018-02-01", "2018-03-15", 9500.0, activities=[("190306", "2018-02-10", 1)])
    d.dbc("R", "P", "0305", "1803", "2018-09-01", "2018-09-20", 7000.0, activities=[("038665", "2018-09-02", 1)])
    d.dbc("H", "P", "0305", "1701", "2018-05-01", "2018-05-02", 300.0)  # hip arthrosis: not knee in-bundle
    episodes, _lines = run(d, tmp_path, ["knee_oa"])
    e = one(episodes, patient_id="P")
    assert e["complication"] and e["in_bundle_cents"] == 950000 + 700000 and e["msz_other_cents"] == 30000


def test_cataract_second_eye_and_secondary_cataract(tmp_path):
    d = TinyDelivery(tmp_path / "d")
    d.patient("P", birth_year=1940)
    d.dbc("E1", "P", "0301", "554", "2018-02-25", "2018-03-30", 1500.0, activities=[("031242", "2018-03-01", 1)])
    d.dbc("E2", "P", "0301", "554", "2018-05-30", "2018-07-01", 1500.0, activities=[("031268", "2018-06-01", 1)])
    d.dbc("N", "P", "0301", "557", "2019-01-10", "2019-01-10", 300.0)
    episodes, _ = run(d, tmp_path, ["cataract"])
    e = one(episodes, patient_id="P")
    assert e["n_triggers"] == 2 and e["second_eye"] and e["secondary_cataract"]
    assert e["window_start"] == date(2017, 12, 1) and e["window_end"] == date(2020, 2, 29)  # -90 / +730 days


def test_breast_cancer_surgery_reoperation_mastectomy_and_exclusion_of_men(tmp_path):
    d = TinyDelivery(tmp_path / "d")
    for pid, sex in (("W", "V"), ("M", "M")):
        d.patient(pid, sex=sex)
        d.dbc(
            f"L-{pid}", pid, "0303", "318", "2019-02-01", "2019-02-20", 4000.0, activities=[("033911", "2019-02-01", 1)]
        )
    d.dbc("Mx", "W", "0303", "318", "2019-03-15", "2019-04-10", 6000.0, activities=[("033930", "2019-03-15", 1)])
    d.dbc("Rt", "W", "0361", "105", "2019-05-01", "2019-06-30", 8000.0)
    d.pharmacy("Tam", "W", "2019-04-01", "L02BA01", amount=20.0)
    episodes, _ = run(d, tmp_path, ["breast_cancer_surgery"])
    e = one(episodes, patient_id="W")
    assert episodes.height == 1
    assert e["n_triggers"] == 2 and e["reoperation_90d"] and e["mastectomy"]
    assert (e["radiotherapy_cents"], e["hormone_therapy_cents"]) == (800000, 2000)


def test_heart_failure_calendar_year_episodes_prorate_across_the_year_end(tmp_path):
    d = TinyDelivery(tmp_path / "d")
    d.patient("P", birth_year=1935)
    d.dbc("O1", "P", "0320", "302", "2019-02-01", "2019-05-31", 600.0)
    d.dbc("A1", "P", "0320", "301", "2019-09-01", "2019-09-30", 5000.0, activities=[("190218", "2019-09-01", 5)])
    # 2019-11-15 .. 2020-02-15 = 93 days: 47 in 2019, 46 in 2020 -> 93000 split 47000 / 46000
    d.dbc("S", "P", "0320", "302", "2019-11-15", "2020-02-15", 930.0)
    d.dbc("O2", "P", "0320", "302", "2020-03-01", "2020-04-30", 600.0)
    episodes, lines = run(d, tmp_path, ["heart_failure"])
    assert episodes["anchor_date"].to_list() == [date(2019, 2, 1), date(2020, 3, 1)]
    e2019, e2020 = episodes.to_dicts()
    assert e2019["window_start"] == date(2019, 1, 1) and e2019["window_end"] == date(2019, 12, 31)
    assert e2019["n_triggers"] == 3 and e2019["admissions"] == 1 and e2019["care_days"] == 5
    split = lines.filter(pl.col("claim_id") == "S").sort("start")
    assert sorted(split["allocated_cents"].to_list()) == [46000, 47000]
    assert e2019["in_bundle_cents"] == 60000 + 500000 + 47000
    assert e2020["in_bundle_cents"] == 46000 + 60000 and e2020["n_triggers"] == 1


def test_ra_drugs_need_a_rheumatology_dbc_in_the_same_year(tmp_path):
    d = TinyDelivery(tmp_path / "d")
    d.patient("P")
    d.dbc("R", "P", "0324", "101", "2020-01-10", "2020-04-30", 400.0)
    d.pharmacy("F1", "P", "2020-02-01", "L04AB04", amount=1100.0)
    d.pharmacy("F2", "P", "2020-03-01", "L04AB04", amount=1100.0)
    d.pharmacy("F3", "P", "2021-01-05", "L04AB01", amount=1000.0)  # no RA subtraject in 2021
    episodes, _ = run(d, tmp_path, ["ra_drugs"])
    e = one(episodes, patient_id="P")
    assert episodes.height == 1 and e["anchor_date"] == date(2020, 2, 1) and e["n_triggers"] == 2
    assert e["distinct_drugs"] == 1 and e["in_bundle_cents"] == 220000 and e["msz_other_cents"] == 40000


def test_acute_stroke_rehabilitation_and_death(tmp_path):
    d = TinyDelivery(tmp_path / "d")
    d.patient("P", birth_year=1940, spells=[("2015-01-01", "2019-08-01")], death="2019-08-01")
    d.dbc("S", "P", "0330", "1111", "2019-04-01", "2019-04-20", 7000.0, activities=[("190218", "2019-04-01", 10)])
    d.dbc("Rv", "P", "0327", "0313", "2019-04-21", "2019-06-30", 15000.0)
    episodes, _ = run(d, tmp_path, ["acute_stroke"])
    e = one(episodes, patient_id="P")
    assert e["window_start"] == date(2019, 4, 1) and e["window_end"] == date(
        2020, 3, 31
    )  # +365 days, 2020 is a leap year
    assert e["status"] == "death" and e["death_365d"] and e["length_of_stay"] == 10
    assert e["in_bundle_cents"] == 2200000 and e["rehabilitation_cents"] == 1500000


def test_birth_care_phases(tmp_path):
    d = TinyDelivery(tmp_path / "d")
    d.patient("M", birth_year=1990, sex="V")
    d.maternity("pre", "M", "2019-12-01", "prenatal")
    d.dbc("G", "M", "0307", "Z29", "2020-03-01", "2020-05-01", 700.0)
    d.maternity("birth", "M", "2020-06-10", "birth_home", amount=600.0)
    d.maternity("kraam", "M", "2020-06-11", "maternity_care_hours", amount=2000.0, quantity=40)
    d.maternity("post", "M", "2020-06-15", "postnatal", amount=300.0)
    episodes, lines = run(d, tmp_path, ["birth_care"])
    e = one(episodes, patient_id="M")
    assert e["anchor_date"] == date(2020, 6, 10)
    assert e["window_start"] == date(2019, 9, 4) and e["window_end"] == date(2020, 7, 22)  # -280 / +42 days
    phases = dict(lines.select("claim_id", "phase").iter_rows())
    assert phases == {
        "pre": "prenatal",
        "G": "prenatal",
        "birth": "natal",
        "kraam": "maternity_care",
        "post": "postnatal",
    }
    assert set(lines["component"].to_list()) == {"in_bundle"} and not e["caesarean"]


def test_hand_wrist_intake_surgery_and_hand_therapy(tmp_path):
    d = TinyDelivery(tmp_path / "d")
    d.patient("P", birth_year=1965)
    d.dbc("I", "P", "0303", "132", "2018-05-01", "2018-06-30", 250.0, activities=[("190013", "2018-05-01", 1)])
    d.dbc("S", "P", "0303", "132", "2018-07-10", "2018-08-10", 1400.0, activities=[("038340", "2018-07-10", 1)])
    for i, day in enumerate(("2018-07-20", "2018-07-27", "2018-08-03")):
        d.physio(f"T{i}", "P", day, discipline="occupational_therapy", service="4000")
    episodes, _lines = run(d, tmp_path, ["hand_wrist"])
    e = one(episodes, patient_id="P")
    assert e["anchor_date"] == date(2018, 5, 1) and e["n_triggers"] == 2  # the surgery subtraject also matches
    assert e["surgery"] and e["hand_therapy_sessions"] == 3
    assert e["in_bundle_cents"] == 25000 + 140000 + 3 * 3100 and e["paramedical_cents"] == 0


# ------------------------------------------------------------------ rule 5: corrections, via ingest
def test_credit_and_redeclaration_are_netted_before_allocation(tmp_path):
    from transforms.ingest.run import ingest

    d = TinyDelivery(tmp_path / "d")
    d.patient("P")
    act = [("190305", "2018-03-01", 1)]
    d.dbc("OP", "P", "0305", "1701", "2018-02-20", "2018-04-10", 9000.0, activities=act, declared_on="2018-05-01")
    d.dbc("OP-C", "P", "0305", "1701", "2018-02-20", "2018-04-10", -9000.0, corrects="OP", declared_on="2018-08-01")
    d.dbc(
        "OP-R",
        "P",
        "0305",
        "1701",
        "2018-02-20",
        "2018-04-10",
        8500.0,
        activities=act,
        corrects="OP",
        declared_on="2018-08-02",
    )
    d.dbc("X", "P", "0305", "1701", "2018-05-01", "2018-05-02", 400.0, product="131999234")
    d.dbc("X-C", "P", "0305", "1701", "2018-05-01", "2018-05-02", -400.0, product="131999234", corrects="X")
    d.gp("G", "P", "2018-01-10")
    d.pharmacy("F", "P", "2018-01-11", "A10BA02")
    d.physio("T", "P", "2018-03-20")
    d.maternity("K", "P", "2018-06-01", "postnatal")
    root = d.write()
    store = tmp_path / "store"
    result = ingest(root, store, n_buckets=1, data_docs=False)
    assert sum(result.quarantined.values()) == 0, result.manifest["quarantine"]
    build_episodes(store, tmp_path / "out", bundles=["hip_oa"])
    lines = pl.read_parquet(tmp_path / "out" / "episode_lines" / "**" / "*.parquet")
    op = one(lines, claim_id="OP")
    assert op["allocated_cents"] == 850000  # 9000 - 9000 + 8500
    assert "X" not in lines["claim_id"].to_list()  # fully credited: contributes nothing
    assert lines["claim_id"].str.ends_with("-C").sum() == 0


def test_default_group_of_buckets_per_task():
    """Two tasks per worker of at most 4 buckets each when the workers are known, else ~48 tasks."""
    from transforms.episodes.run import default_buckets_per_task

    assert default_buckets_per_task(16, workers=2) == 4  # 100k patients: 4 tasks of 4 buckets
    assert default_buckets_per_task(153, workers=2) == 4  # 1M: 39 tasks (4 buckets at most)
    assert default_buckets_per_task(16, workers=16) == 1  # a larger cluster: a bucket per task
    assert default_buckets_per_task(3, workers=8) == 1  # more workers than buckets
    assert default_buckets_per_task(153) == 4 and default_buckets_per_task(16) == 1


def test_a_delivery_is_refused_the_engine_reads_stores_only(tmp_path):
    """No raw-delivery path: the rows of a delivery are not validated or netted and it has no
    patient buckets, so the engine refuses it and says to ingest it first."""
    from transforms.output_folder import OutputError

    d = TinyDelivery(tmp_path / "d")
    d.patient("P")
    with pytest.raises(OutputError, match=r"is not a zorgpad store .*run `zorgpad ingest` first"):
        build_episodes(d.write(), tmp_path / "out", bundles=["hip_oa"])
    assert not (tmp_path / "out").exists()

"""Property-based tests of the episode rules on random patients (hypothesis).

Each example is a small random delivery: hip triggers at random dates, random DBC subtrajecten of
random length and sign, random first-line lines. The properties are checked against an independent
recomputation in plain Python.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiny_delivery import TinyDelivery
from transforms.episodes.run import build_episodes

# integration: hypothesis examples each ingested and built (several minutes)
pytestmark = pytest.mark.integration

BASE = date(2016, 1, 1)
SPAN = 3 * 365

day = st.integers(min_value=0, max_value=SPAN)
dbc_line = st.tuples(
    day,
    st.integers(min_value=0, max_value=119),
    st.integers(min_value=-50_000, max_value=900_000),
    st.sampled_from([("0305", "1701"), ("0305", "1703"), ("0320", "302"), ("0301", "554")]),
)
# a valid zorgproduct (NZa reference, open-ended since 2012) per specialism and diagnosis: ingest
# quarantines an unknown product, and the properties are about lines that reach the store
PRODUCT = {
    ("0305", "1701"): "131999052",
    ("0305", "1703"): "131999052",
    ("0320", "302"): "010501001",
    ("0301", "554"): "020107001",
}
first_line = st.tuples(
    day,
    st.sampled_from(["gp", "pharmacy", "paramedical"]),
    st.integers(min_value=1, max_value=20_000),
    st.sampled_from(["A10BA02", "C10AA05", "N06AB04", "R03AC02", "M01AE01"]),
)
patient = st.tuples(
    st.lists(day, min_size=1, max_size=4),
    st.lists(dbc_line, max_size=8),
    st.lists(first_line, max_size=10),
    st.one_of(st.none(), day),
)


def _write(tmp_path, patients, extra=None) -> TinyDelivery:
    """A valid delivery of ``patients``: no line after the patient's death (ingest would quarantine
    it), so every generated line reaches the store. ``d.n_triggers``: the triggers written."""
    d = TinyDelivery(tmp_path)
    d.n_triggers = 0
    for p, (triggers, dbcs, firsts, death) in enumerate(patients):
        pid = f"P{p}"
        died = death is not None and death > 200
        death_day = (BASE + timedelta(days=death)).isoformat() if died else None

        def alive(offset: int) -> bool:
            return not died or offset <= death  # noqa: B023 (used within this iteration)

        d.patient(pid, birth_year=1945 + p, spells=[("2015-01-01", death_day)], death=death_day)
        for i, t in enumerate(t for t in triggers if alive(t)):
            d.n_triggers += 1
            when = (BASE + timedelta(days=t)).isoformat()
            d.dbc(
                f"{pid}-T{i}",
                pid,
                "0305",
                "1701",
                when,
                when,
                9000.0,
                product="131999052",
                activities=[("190305", when, 1)],
            )
        for i, (start, length, cents, (spec, diag)) in enumerate(x for x in dbcs if alive(x[0] + x[1])):
            s, e = BASE + timedelta(days=start), BASE + timedelta(days=start + length)
            line = dict(start=s.isoformat(), end=e.isoformat(), product=PRODUCT[spec, diag])
            if cents < 0:  # a credit names its original, which ingest nets it against: a net of cents / 2
                original = f"{pid}-D{i}-original"
                d.dbc(original, pid, spec, diag, amount=(-cents // 2 + 1) / 100, **line)
                d.dbc(f"{pid}-D{i}", pid, spec, diag, amount=cents / 100, corrects=original, **line)
            else:
                d.dbc(f"{pid}-D{i}", pid, spec, diag, amount=cents / 100, **line)
        for i, (when, table, cents, atc) in enumerate(x for x in firsts if alive(x[0])):
            w = (BASE + timedelta(days=when)).isoformat()
            if table == "gp":
                d.gp(f"{pid}-G{i}", pid, w, amount=cents / 100)
            elif table == "pharmacy":
                d.pharmacy(f"{pid}-F{i}", pid, w, atc, amount=cents / 100)
            else:
                d.physio(f"{pid}-P{i}", pid, w, amount=cents / 100)
    if extra:
        extra(d)
    return d


def _run(d: TinyDelivery, out):
    build_episodes(d.store(), out, bundles=["hip_oa"])
    if not (out / "episodes").exists():
        return pl.DataFrame(), pl.DataFrame()
    return (
        pl.read_parquet(out / "episodes" / "**" / "*.parquet"),
        pl.read_parquet(out / "episode_lines" / "**" / "*.parquet"),
    )


def _prorate(cents: int, days_in: int, days: int) -> int:
    magnitude = (2 * abs(cents) * days_in + days) // (2 * days)
    return -magnitude if cents < 0 else magnitude


SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(st.lists(patient, min_size=1, max_size=3))
def test_allocation_conserves_prorated_money_and_never_double_allocates(tmp_path_factory, patients):
    tmp = tmp_path_factory.mktemp("prop")
    d = _write(tmp / "d", patients)
    episodes, lines = _run(d, tmp / "out")
    if episodes.height == 0:
        return
    store = d.root.with_name(f"{d.root.name}-store")
    assert not (store / "quarantine").exists() or not list((store / "quarantine").rglob("*.parquet")), (
        "the generated delivery is valid: ingest quarantines none of it"
    )
    claims = {}  # claim id -> patient, first and last day, cents after netting credits into originals
    for table in ("dbc", "gp", "pharmacy", "paramedical"):
        for r in sorted(d.rows[table], key=lambda r: r.get("corrects_claim_id") is not None):
            cents = round(float(r["amount"]) * 100)
            if (original := r.get("corrects_claim_id")) is not None:
                pid, start, end, net = claims[original]
                claims[original] = (pid, start, end, net + cents)
                continue
            start = r.get("start_date") or r["service_date"]
            end = r.get("end_date") or r["service_date"]
            claims[r["claim_id"]] = (r["patient_id"], start, end, cents)
    for e in episodes.to_dicts():
        expected = 0
        for pid, start, end, cents in claims.values():
            if pid != e["patient_id"] or cents == 0 or start > e["window_end"] or end < e["window_start"]:
                continue
            days_in = (min(end, e["window_end"]) - max(start, e["window_start"])).days + 1
            expected += _prorate(cents, days_in, (end - start).days + 1)
        assert e["total_cents"] == expected
        got = lines.filter(pl.col("episode_id") == e["episode_id"])["allocated_cents"].sum()
        assert got == expected
    # no line is allocated twice within the bundle: its days inside windows never exceed its days
    per_claim = lines.group_by("claim_id").agg(pl.col("days_in").sum(), pl.col("days").first())
    assert (per_claim["days_in"] <= per_claim["days"]).all()
    # windows of one patient never overlap, and every trigger is in exactly one episode
    ordered = episodes.sort("patient_id", "window_start")
    previous = ordered.with_columns(pl.col("window_end").shift(1).over("patient_id").alias("prev"))
    assert (previous["window_start"] > previous["prev"]).fill_null(True).all()
    assert episodes["n_triggers"].sum() == d.n_triggers  # each trigger its own claim


@SETTINGS
@given(st.lists(patient, min_size=1, max_size=3))
def test_covariates_never_use_data_from_the_anchor_on(tmp_path_factory, patients):
    tmp = tmp_path_factory.mktemp("prop")
    base, _ = _run(_write(tmp / "a", patients), tmp / "out-a")
    if base.height == 0:
        return

    last_anchor = dict(base.group_by("patient_id").agg(pl.col("anchor_date").max()).iter_rows())

    def add_future(d: TinyDelivery) -> None:
        # on each patient's last anchor day and later (so on or after the anchor of every episode):
        # dispensings of several chronic groups and an expensive subtraject
        for i, (pid, anchor) in enumerate(last_anchor.items()):
            for k, offset in enumerate((0, 1, 30)):
                when = (anchor + timedelta(days=offset)).isoformat()
                for j, atc in enumerate(("A10BA02", "L01BC06", "N05AH04")):
                    d.pharmacy(f"X{i}-{k}-{j}", pid, when, atc, amount=99.0)
                d.dbc(f"XD{i}-{k}", pid, "0320", "302", when, when, 5000.0, product="990000001")

    changed, _ = _run(_write(tmp / "b", patients, add_future), tmp / "out-b")
    columns = [
        "episode_id",
        "n_chronic_conditions",
        "diabetes",
        "cancer",
        "psychosis",
        "prior_year_standardised_cents",
        "age_at_anchor",
    ]
    assert base.select(columns).sort("episode_id").equals(changed.select(columns).sort("episode_id"))


def _every_table_delivered(d: TinyDelivery) -> None:
    """Ingest refuses a delivery with an empty table (a national delivery never has one): one line
    of each first-line table for the first patient, well before any trigger."""
    d.gp("FILL-G", "P0", "2015-02-01")
    d.pharmacy("FILL-F", "P0", "2015-02-01", "A10BA02")
    d.physio("FILL-P", "P0", "2015-02-01")
    d.maternity("FILL-K", "P0", "2015-02-01", "postnatal")


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(patient, min_size=2, max_size=6))
def test_episodes_and_their_ids_do_not_depend_on_buckets_or_tasks(tmp_path_factory, patients):
    """The same random patients ingested into 1 and into 3 patient buckets, the 3 built as one task
    and as three: the same episodes (ids included) and the same allocated lines, row for row."""
    from transforms.ingest.run import ingest

    tmp = tmp_path_factory.mktemp("prop")
    delivery = _write(tmp / "d", patients, _every_table_delivered).write()
    # critical_share=1: random amounts may be quarantined (a credit without an original); both
    # stores quarantine the same rows, which is all this property needs
    ingest(delivery, tmp / "one", n_buckets=1, data_docs=False, critical_share=1.0)
    ingest(delivery, tmp / "three", n_buckets=3, data_docs=False, critical_share=1.0)
    runs = [(tmp / "one", None), (tmp / "three", 1), (tmp / "three", 3)]
    results = []
    for i, (store, per_task) in enumerate(runs):
        build_episodes(store, tmp / f"out{i}", bundles=["hip_oa"], buckets_per_task=per_task)
        out = tmp / f"out{i}"
        if not (out / "episodes").exists():
            results.append(None)
            continue
        results.append(
            (
                pl.read_parquet(out / "episodes" / "**" / "*.parquet").sort("episode_id"),
                pl.read_parquet(out / "episode_lines" / "**" / "*.parquet").sort(
                    "episode_id", "source_table", "claim_id", "component", "phase"
                ),
            )
        )
    first = results[0]
    for other in results[1:]:
        if first is None:
            assert other is None
            continue
        assert first[0].equals(other[0].select(first[0].columns))
        assert first[1].equals(other[1].select(first[1].columns))

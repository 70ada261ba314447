"""Realistic faults and corrections, injected into a block's claim tables at configurable rates.

Every injected fault is recorded (table, claim_id, fault, column, old and new value) in the truth
that is written *next to* the delivery, so that validation can be checked to quarantine exactly
these lines. Each faulty line carries exactly one fault, drawn from the clean original lines, so the
expected quarantine reason is unambiguous.

Corrections are not faults but are injected the same way: a credit line (the negative of the
original, referring to it) and usually a re-declaration (a new amount, referring to the original).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import polars as pl

import reference
from transforms.synth.calendar import day as to_day
from transforms.synth.calendar import year_start
from transforms.synth.claims import FIRST_LINE_TABLES, frame_of
from transforms.synth.config import FaultRates

CLAIM_TABLES = ("dbc", *FIRST_LINE_TABLES)
FAULT_COLUMNS = ["table", "claim_id", "fault", "column", "old_value", "new_value"]


def bsn_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """Nine-digit numbers that pass the BSN eleven-test (sum d_i * (9 - i) for the first eight digits
    minus the ninth is divisible by 11): what a pseudonymisation failure looks like."""
    out = []
    while len(out) < n:
        digits = rng.integers(0, 10, (n, 8))
        digits[:, 0] = rng.integers(1, 10, n)
        total = (digits * np.arange(9, 1, -1)).sum(axis=1)
        check = total % 11
        ok = check < 10
        for row, c in zip(digits[ok], check[ok]):
            out.append("".join(map(str, row)) + str(int(c)))
    return np.array(out[:n], dtype=object)


def is_bsn_like(value: str) -> bool:
    """Does ``value`` pass the BSN eleven-test? (Independent check used by tests and validation.)"""
    if len(value) != 9 or not value.isdigit():
        return False
    digits = [int(c) for c in value]
    return (sum(d * w for d, w in zip(digits[:8], range(9, 1, -1))) - digits[8]) % 11 == 0


@lru_cache(maxsize=8)
def ended_codes(relative: str, code: str, before_day: int) -> tuple[str, ...]:
    """Codes whose every validity row ended before ``before_day`` (real codes, invalid later on)."""
    df = reference.table(relative)
    last = df.group_by(code).agg(pl.col("valid_to").max(), pl.col("valid_to").is_null().any().alias("open"))
    cutoff = np.datetime64("1970-01-01") + np.timedelta64(before_day, "D")
    ended = last.filter(~pl.col("open") & (pl.col("valid_to") < pl.lit(cutoff).cast(pl.Date)))
    return tuple(sorted(ended[code].to_list()))


def _pseudonym(text: str) -> str:
    return "ZP" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def inject(tables: dict[str, pl.DataFrame], rates: FaultRates, rng: np.random.Generator, *, block: int,
           first_year: int, as_of_day: int, known_agb: set[str]) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, pl.DataFrame]:
    """Inject corrections and faults. Returns (tables, faults, corrections)."""
    faults: list[dict] = []
    corrections: list[pl.DataFrame] = []
    first_day = int(year_start(first_year))
    activity = tables["dbc_activity"]
    for table in CLAIM_TABLES:
        df = tables.get(table)
        if df is None or df.height == 0:
            continue
        n = df.height
        # disjoint fault sets drawn from the original lines
        kinds = ["invalid_code", "outside_enrolment", "unknown_provider", "bsn_in_id", "credit", "duplicate"]
        rate = {**rates.error_rates(), "credit": rates.credit}
        counts = [rng.binomial(n, rate[k]) for k in kinds]
        order = rng.permutation(n)
        taken = 0
        chosen = {}
        for kind, count in zip(kinds, counts):
            count = min(count, n - taken)
            chosen[kind] = np.sort(order[taken : taken + count])
            taken += count

        cols = {c: df[c].to_numpy().copy() if df[c].dtype != pl.String else np.array(df[c].to_list(), dtype=object)
                for c in df.columns}
        claim = cols["claim_id"]

        def record(idx: np.ndarray, fault: str, column: str, old: np.ndarray, new: np.ndarray, tbl: str = table) -> None:
            for i, o, v in zip(idx, old, new):
                faults.append({"table": tbl, "claim_id": claim[i], "fault": fault, "column": column,
                               "old_value": None if o is None else str(o), "new_value": None if v is None else str(v)})

        # codes not valid on the service date
        idx = chosen["invalid_code"]
        if idx.size:
            activity = _invalid_codes(table, idx, cols, rng, first_day, record, activity)
        # a patient without any enrolment spell
        idx = chosen["outside_enrolment"]
        if idx.size:
            new = np.array([_pseudonym(f"not-insured:{claim[i]}") for i in idx], dtype=object)
            record(idx, "outside_enrolment", "patient_id", cols["patient_id"][idx], new)
            cols["patient_id"][idx] = new
        # an AGB code not in providers
        idx = chosen["unknown_provider"]
        if idx.size:
            new = []
            for i in idx:
                while True:
                    candidate = cols["provider_agb"][i][:2] + f"{rng.integers(0, 1_000_000):06d}"
                    if candidate not in known_agb:
                        break
                new.append(candidate)
            new = np.array(new, dtype=object)
            record(idx, "unknown_provider", "provider_agb", cols["provider_agb"][idx], new)
            cols["provider_agb"][idx] = new
        # a BSN-like value where a pseudonym belongs
        idx = chosen["bsn_in_id"]
        if idx.size:
            new = bsn_like(rng, idx.size)
            record(idx, "bsn_in_id", "patient_id", cols["patient_id"][idx], new)
            cols["patient_id"][idx] = new

        out = frame_of(cols, dict(df.schema))
        # credits and re-declarations (legitimate corrections)
        idx = chosen["credit"]
        extra_frames = []
        if idx.size:
            credit_frames, activity_copies, corr = _corrections(out, idx, rates, rng, table, as_of_day, activity)
            extra_frames += credit_frames
            if activity_copies is not None:
                activity = pl.concat([activity, activity_copies])
            corrections.append(corr)
        # exact duplicates of lines (same claim_id)
        idx = chosen["duplicate"]
        if idx.size:
            extra_frames.append(out[idx])
            for i in idx:
                faults.append({"table": table, "claim_id": claim[i], "fault": "duplicate", "column": "claim_id",
                               "old_value": None, "new_value": claim[i]})
        if extra_frames:
            out = pl.concat([out, *extra_frames], how="vertical_relaxed")
        tables[table] = out
    tables["dbc_activity"] = activity
    fault_frame = pl.DataFrame(faults, schema={c: pl.String for c in FAULT_COLUMNS})
    correction_frame = (pl.concat(corrections) if corrections else
                        pl.DataFrame(schema={"table": pl.String, "original_claim_id": pl.String,
                                             "credit_claim_id": pl.String, "redeclaration_claim_id": pl.String,
                                             "original_cents": pl.Int64, "net_cents": pl.Int64}))
    return tables, fault_frame, correction_frame


def _invalid_codes(table, idx, cols, rng, first_day, record, activity):
    """Replace a code by a real code that is no longer valid on the line's date (or a malformed one)."""
    if table == "dbc":
        ended_products = ended_codes("nza/products.parquet", "product_cd", first_day)
        ended_activities = ended_codes("nza/activities.parquet", "activity_cd", first_day)
        on_activity = rng.random(idx.size) < 0.5
        prod_idx = idx[~on_activity] if ended_products else idx
        if prod_idx.size:
            new = np.array(ended_products, dtype=object)[rng.integers(0, len(ended_products), prod_idx.size)] \
                if ended_products else np.full(prod_idx.size, "000000000", dtype=object)
            record(prod_idx, "invalid_code", "product_cd", cols["product_cd"][prod_idx], new)
            cols["product_cd"][prod_idx] = new
        act_claims = cols["claim_id"][idx[on_activity]] if ended_products else np.zeros(0, dtype=object)
        if act_claims.size:
            # change the first activity of each chosen claim (claims without activities: change the product)
            a_claim = np.array(activity["claim_id"].to_list(), dtype=object)
            a_code = np.array(activity["activity_cd"].to_list(), dtype=object)
            for c_i, c in zip(idx[on_activity], act_claims):
                hits = np.flatnonzero(a_claim == c)
                new = ended_activities[rng.integers(0, len(ended_activities))] if ended_activities else "000000"
                if hits.size:
                    record(np.array([c_i]), "invalid_code", "activity_cd", a_code[hits[:1]], np.array([new]), tbl="dbc_activity")
                    a_code[hits[0]] = new
                else:
                    new_p = ended_products[rng.integers(0, len(ended_products))]
                    record(np.array([c_i]), "invalid_code", "product_cd", cols["product_cd"][[c_i]], np.array([new_p]))
                    cols["product_cd"][c_i] = new_p
            activity = activity.with_columns(pl.Series("activity_cd", a_code, dtype=pl.String))
    elif table == "gp":
        switch = to_day(__import__("datetime").date(2022, 1, 1))
        new = np.where(cols["service_date"][idx] >= switch, "12000", "12010").astype(object)
        record(idx, "invalid_code", "service_cd", cols["service_cd"][idx], new)
        cols["service_cd"][idx] = new
    elif table == "pharmacy":
        new = np.array([a[:-2] + a[-1] for a in cols["atc_cd"][idx]], dtype=object)  # a digit lost
        record(idx, "invalid_code", "atc_cd", cols["atc_cd"][idx], new)
        cols["atc_cd"][idx] = new
    elif table == "paramedical":
        new = np.full(idx.size, "9999", dtype=object)
        record(idx, "invalid_code", "service_cd", cols["service_cd"][idx], new)
        cols["service_cd"][idx] = new
    elif table == "maternity":
        new = np.full(idx.size, "birth_clinic", dtype=object)
        record(idx, "invalid_code", "service_cd", cols["service_cd"][idx], new)
        cols["service_cd"][idx] = new
    return activity


def _corrections(df: pl.DataFrame, idx: np.ndarray, rates: FaultRates, rng: np.random.Generator, table: str,
                 as_of_day: int, activity: pl.DataFrame):
    originals = df[idx]
    n = originals.height
    credit_declared = originals["declared_on"].to_numpy() + rng.integers(20, 300, n)
    redeclare = rng.random(n) < rates.redeclare_share
    redeclared_on = credit_declared + rng.integers(0, 15, n)
    credit_ok = credit_declared <= as_of_day if rates.late_declarations else np.ones(n, dtype=bool)
    redecl_ok = redeclare & credit_ok & ((redeclared_on <= as_of_day) if rates.late_declarations else True)
    if not rates.late_declarations:
        credit_declared = np.minimum(credit_declared, as_of_day)
        redeclared_on = np.minimum(redeclared_on, as_of_day)
    amount = originals["amount_cents"].to_numpy()
    new_amount = np.round(amount * rng.uniform(0.85, 1.15, n)).astype(np.int64)
    original_ids = originals["claim_id"]
    credits = originals.with_columns(
        (pl.col("claim_id") + "-C").alias("claim_id"),
        (-pl.col("amount_cents")).alias("amount_cents"),
        pl.Series("declared_on", credit_declared),
        pl.col("claim_id").alias("corrects_claim_id"),
    ).filter(pl.Series(credit_ok))
    redeclarations = originals.with_columns(
        (pl.col("claim_id") + "-R").alias("claim_id"),
        pl.Series("amount_cents", new_amount),
        pl.Series("declared_on", redeclared_on),
        pl.col("claim_id").alias("corrects_claim_id"),
    ).filter(pl.Series(redecl_ok))
    activity_copies = None
    if table == "dbc" and redeclarations.height:
        redeclared_ids = original_ids.filter(pl.Series(redecl_ok))
        activity_copies = activity.filter(pl.col("claim_id").is_in(redeclared_ids.implode())).with_columns(
            (pl.col("claim_id") + "-R").alias("claim_id"))
    net = np.where(redecl_ok, new_amount, np.where(credit_ok, 0, amount))
    corr = pl.DataFrame({
        "table": np.full(n, table, dtype=object).tolist(),
        "original_claim_id": original_ids.to_list(),
        "credit_claim_id": [c + "-C" if ok else None for c, ok in zip(original_ids.to_list(), credit_ok)],
        "redeclaration_claim_id": [c + "-R" if ok else None for c, ok in zip(original_ids.to_list(), redecl_ok)],
        "original_cents": amount,
        "net_cents": net,
    }, schema={"table": pl.String, "original_claim_id": pl.String, "credit_claim_id": pl.String,
               "redeclaration_claim_id": pl.String, "original_cents": pl.Int64, "net_cents": pl.Int64})
    return [credits, redeclarations], activity_copies, corr

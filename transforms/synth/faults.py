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
from transforms.synth.claims import FIRST_LINE_TABLES
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


def inject(
    tables: dict[str, pl.DataFrame | None],
    rates: FaultRates,
    rng: np.random.Generator,
    *,
    first_year: int,
    as_of_day: int,
    known_agb: set[str],
) -> tuple[dict[str, pl.DataFrame | None], pl.DataFrame, pl.DataFrame]:
    """Inject corrections and faults into the claim tables. Returns (tables, faults, corrections)."""
    faults: list[pl.DataFrame] = []
    corrections: list[pl.DataFrame] = []
    first_day = int(year_start(first_year))
    activity = tables["dbc_activity"]
    kinds = ("invalid_code", "outside_enrolment", "unknown_provider", "bsn_in_id", "credit", "duplicate")
    rate = {**rates.error_rates(), "credit": rates.credit}
    for table in CLAIM_TABLES:
        df = tables.get(table)
        if df is None or df.height == 0:
            continue
        n = df.height
        # disjoint sets of original lines, one fault each
        order = rng.permutation(n)
        chosen, taken = {}, 0
        for kind in kinds:
            count = min(int(rng.binomial(n, rate[kind])), n - taken)
            chosen[kind] = np.sort(order[taken : taken + count])
            taken += count
        claim = df["claim_id"]

        def record(
            idx: np.ndarray,
            fault: str,
            column: str,
            old: pl.Series,
            new: list | pl.Series,
            tbl: str = table,
            ids: pl.Series | None = None,
            claim: pl.Series = claim,
        ) -> None:
            faults.append(
                pl.DataFrame(
                    {
                        "table": [tbl] * idx.size,
                        "claim_id": (ids if ids is not None else claim.gather(idx)).cast(pl.String),
                        "fault": [fault] * idx.size,
                        "column": [column] * idx.size,
                        "old_value": old.cast(pl.String),
                        "new_value": pl.Series(new, dtype=pl.String)
                        if not isinstance(new, pl.Series)
                        else new.cast(pl.String),
                    },
                    schema={c: pl.String for c in FAULT_COLUMNS},
                )
            )

        def replace(frame: pl.DataFrame, column: str, idx: np.ndarray, new: list) -> pl.DataFrame:
            values = frame[column].clone()
            values.scatter(idx, pl.Series(new, dtype=values.dtype))
            return frame.with_columns(values)

        idx = chosen["invalid_code"]
        if idx.size:
            df, activity = _invalid_codes(table, df, idx, rng, first_day, record, replace, activity)
        idx = chosen["outside_enrolment"]  # a patient without any enrolment spell
        if idx.size:
            new = [_pseudonym(f"not-insured:{c}") for c in claim.gather(idx).to_list()]
            record(idx, "outside_enrolment", "patient_id", df["patient_id"].gather(idx), new)
            df = replace(df, "patient_id", idx, new)
        idx = chosen["unknown_provider"]  # an AGB code not in providers
        if idx.size:
            new = []
            for old in df["provider_agb"].gather(idx).to_list():
                candidate = old
                while candidate in known_agb:
                    candidate = old[:2] + f"{rng.integers(0, 1_000_000):06d}"
                new.append(candidate)
            record(idx, "unknown_provider", "provider_agb", df["provider_agb"].gather(idx), new)
            df = replace(df, "provider_agb", idx, new)
        idx = chosen["bsn_in_id"]  # a BSN-like value where a pseudonym belongs
        if idx.size:
            new = bsn_like(rng, idx.size).tolist()
            record(idx, "bsn_in_id", "patient_id", df["patient_id"].gather(idx), new)
            df = replace(df, "patient_id", idx, new)

        extra_frames = []
        idx = chosen["credit"]  # credits and re-declarations (legitimate corrections)
        if idx.size:
            credit_frames, activity_copies, corr = _corrections(df, idx, rates, rng, table, as_of_day, activity)
            extra_frames += credit_frames
            if activity_copies is not None:
                activity = pl.concat([activity, activity_copies])
            corrections.append(corr)
        idx = chosen["duplicate"]  # exact duplicates (same claim_id)
        if idx.size:
            extra_frames.append(df[idx])
            record(idx, "duplicate", "claim_id", pl.Series([None] * idx.size, dtype=pl.String), claim.gather(idx))
        if extra_frames:
            df = pl.concat([df, *extra_frames], how="vertical_relaxed")
        tables[table] = df
    tables["dbc_activity"] = activity
    fault_frame = pl.concat(faults) if faults else pl.DataFrame(schema={c: pl.String for c in FAULT_COLUMNS})
    correction_frame = pl.concat(corrections) if corrections else pl.DataFrame(schema=CORRECTION_SCHEMA)
    return tables, fault_frame, correction_frame


CORRECTION_SCHEMA = {
    "table": pl.String,
    "original_claim_id": pl.String,
    "credit_claim_id": pl.String,
    "redeclaration_claim_id": pl.String,
    "original_cents": pl.Int64,
    "net_cents": pl.Int64,
}


def _invalid_codes(table, df, idx, rng, first_day, record, replace, activity):
    """Replace a code by a real code that is no longer valid on the line's date (or a malformed one)."""
    if table == "dbc":
        ended_products = ended_codes("nza/products.parquet", "product_cd", first_day)
        ended_activities = ended_codes("nza/activities.parquet", "activity_cd", first_day)
        claims = df["claim_id"].gather(idx)
        # half of them: the first activity of the subtraject (when it has one), else the product
        first_activity = (
            activity.with_row_index("position")
            .filter(pl.col("claim_id").is_in(claims.implode()))
            .group_by("claim_id")
            .agg(pl.col("position").min())
        )
        position_of = dict(first_activity.iter_rows())
        on_activity = (rng.random(idx.size) < 0.5) & np.array([c in position_of for c in claims.to_list()], dtype=bool)
        if on_activity.any():
            positions = np.array([position_of[c] for c in claims.filter(pl.Series(on_activity)).to_list()])
            new = [ended_activities[i] for i in rng.integers(0, len(ended_activities), positions.size)]
            record(
                idx[on_activity],
                "invalid_code",
                "activity_cd",
                activity["activity_cd"].gather(positions),
                new,
                tbl="dbc_activity",
            )
            activity = replace(activity, "activity_cd", positions, new)
        prod = idx[~on_activity]
        if prod.size:
            new = [ended_products[i] for i in rng.integers(0, len(ended_products), prod.size)]
            record(prod, "invalid_code", "product_cd", df["product_cd"].gather(prod), new)
            df = replace(df, "product_cd", prod, new)
        return df, activity
    column, new = {
        "gp": ("service_cd", lambda old, days: ["12000" if d >= _GP_REFORM_DAY else "12010" for d in days]),
        "pharmacy": ("atc_cd", lambda old, days: [a[:-2] + a[-1] for a in old]),  # a digit lost
        "paramedical": ("service_cd", lambda old, days: ["9999"] * len(old)),
        "maternity": ("service_cd", lambda old, days: ["birth_clinic"] * len(old)),
    }[table]
    old = df[column].gather(idx)
    values = new(old.to_list(), df["service_date"].gather(idx).to_list())
    record(idx, "invalid_code", column, old, values)
    return replace(df, column, idx, values), activity


_GP_REFORM_DAY = to_day(__import__("datetime").date(2022, 1, 1))


def _corrections(
    df: pl.DataFrame,
    idx: np.ndarray,
    rates: FaultRates,
    rng: np.random.Generator,
    table: str,
    as_of_day: int,
    activity: pl.DataFrame,
):
    """Credit lines and re-declarations for the lines ``idx``; those processed after data_as_of are
    withheld like any late declaration."""
    originals = df[idx]
    n = originals.height
    credit_declared = originals["declared_on"].to_numpy() + rng.integers(20, 300, n)
    redeclare = rng.random(n) < rates.redeclare_share
    redeclared_on = credit_declared + rng.integers(0, 15, n)
    if rates.late_declarations:
        credit_ok = credit_declared <= as_of_day
        redecl_ok = redeclare & credit_ok & (redeclared_on <= as_of_day)
    else:
        credit_ok = np.ones(n, dtype=bool)
        redecl_ok = redeclare
        credit_declared = np.minimum(credit_declared, as_of_day)
        redeclared_on = np.minimum(redeclared_on, as_of_day)
    amount = originals["amount_cents"].to_numpy()
    new_amount = np.round(amount * rng.uniform(0.85, 1.15, n)).astype(np.int64)
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
        activity_copies = activity.filter(
            pl.col("claim_id").is_in(redeclarations["corrects_claim_id"].implode())
        ).with_columns((pl.col("claim_id") + "-R").alias("claim_id"))
    original_ids = originals["claim_id"]
    corr = pl.DataFrame(
        {
            "table": [table] * n,
            "original_claim_id": original_ids,
            "credit_claim_id": pl.select(pl.when(pl.Series(credit_ok)).then(original_ids + "-C")).to_series(),
            "redeclaration_claim_id": pl.select(pl.when(pl.Series(redecl_ok)).then(original_ids + "-R")).to_series(),
            "original_cents": amount,
            "net_cents": np.where(redecl_ok, new_amount, np.where(credit_ok, 0, amount)),
        },
        schema=CORRECTION_SCHEMA,
    )
    return [credits, redeclarations], activity_copies, corr

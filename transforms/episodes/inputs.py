"""Read one patient bucket of the store as the engine's three inputs: insured spells, money lines
(all claim tables in one frame) and care activities.

Money becomes int64 cents. Lines with a net amount of zero are *fully credited* and contribute
nothing (docs/episode-rules.md, Input): they are dropped here, so they are neither allocated nor
triggers nor part of any price or covariate.

The input is always a store written by ``zorgpad ingest``: validated, netted and patient-bucketed
(``TABLE/bucket=NNNN/*.parquet``, every row with its ``patient_key``). A delivery is not read here:
its rows are unvalidated, and a delivery has no buckets; ingest it first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from transforms.contract import load_contract
from transforms.money import decimal_cents

LINE_COLUMNS = {
    "patient_key": pl.Int64,
    "patient_id": pl.String,
    "source_table": pl.String,
    "claim_id": pl.String,
    "start": pl.Date,
    "end": pl.Date,
    "amount_cents": pl.Int64,
    "provider_agb": pl.String,
    "specialism_cd": pl.String,
    "diagnosis_cd": pl.String,
    "product_cd": pl.String,
    "atc_cd": pl.String,
    "service_cd": pl.String,
    "discipline": pl.String,
    "referral_specialism_cd": pl.String,
}
#: The claim tables episodes are built from (``role: claim`` in the contract).
CLAIM_TABLES = load_contract().claim_tables


@dataclass
class BucketInputs:
    insured: pl.DataFrame
    lines: pl.DataFrame
    activities: pl.DataFrame


def _files(root: Path, table: str, bucket: int) -> list[Path]:
    folder = root / table / f"bucket={bucket:04d}"
    return sorted(folder.rglob("*.parquet")) if folder.exists() else []


def read_store_table(
    root: Path, table: str, bucket: int, columns: list[str], patient_keys: pl.Series | None = None
) -> pl.DataFrame | None:
    """Read a table of one bucket of the store (only ``columns``; only ``patient_keys`` when given).
    Public because the reference prices (``transforms.episodes.prices``) read the store the same way."""
    files = _files(root, table, bucket)
    if not files:
        return None
    frames = []
    for f in files:
        available = pl.read_parquet_schema(f)
        scan = pl.scan_parquet(f).select([c for c in columns if c in available])
        if patient_keys is not None:
            scan = scan.filter(pl.col("patient_key").is_in(patient_keys.implode()))
        frames.append(scan)
    return pl.concat(pl.collect_all(frames), how="diagonal_relaxed")


def read_insured(root: Path | str, bucket: int) -> pl.DataFrame:
    insured = read_store_table(
        Path(root),
        "insured",
        bucket,
        [
            "patient_key",
            "patient_id",
            "enrolled_from",
            "enrolled_to",
            "birth_year",
            "sex",
            "postcode3",
            "gemeente_code",
            "death_date",
        ],
    )
    if insured is None:
        insured = pl.DataFrame(
            schema={
                "patient_key": pl.Int64,
                "patient_id": pl.String,
                "enrolled_from": pl.Date,
                "enrolled_to": pl.Date,
                "birth_year": pl.Int16,
                "sex": pl.String,
                "postcode3": pl.String,
                "gemeente_code": pl.String,
                "death_date": pl.Date,
            }
        )
    return insured


def read_lines(
    root: Path | str, bucket: int, tables: tuple[str, ...] = CLAIM_TABLES, patient_keys: pl.Series | None = None
) -> pl.DataFrame:
    """Money lines of the given tables in one frame (fully credited lines dropped)."""
    parts = []
    for table in tables:
        cols = ["patient_key", "patient_id", "claim_id", "amount", "provider_agb"]
        if table == "dbc":
            cols += ["start_date", "end_date", "specialism_cd", "diagnosis_cd", "product_cd"]
        else:
            cols += ["service_date", "atc_cd", "service_cd", "discipline", "referral_specialism_cd"]
        frame = read_store_table(Path(root), table, bucket, cols, patient_keys)
        if frame is None:
            continue
        start, end = ("start_date", "end_date") if table == "dbc" else ("service_date", "service_date")
        frame = frame.with_columns(
            pl.lit(table).alias("source_table"),
            pl.col(start).alias("start"),
            pl.col(end).alias("end"),
            decimal_cents("amount").alias("amount_cents"),
        )
        parts.append(
            frame.select(
                [pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c) for c, t in LINE_COLUMNS.items()]
            )
        )
    lines = pl.concat(parts) if parts else pl.DataFrame(schema=LINE_COLUMNS)
    return lines.filter(pl.col("amount_cents") != 0)


def read_activities(
    root: Path | str, bucket: int, dbc_lines: pl.DataFrame, patient_keys: pl.Series | None = None
) -> pl.DataFrame:
    """Care activities of the (not fully credited) DBC lines given."""
    activities = read_store_table(
        Path(root),
        "dbc_activity",
        bucket,
        ["patient_key", "claim_id", "activity_cd", "activity_date", "quantity", "amount"],
        patient_keys,
    )
    if activities is None:
        activities = pl.DataFrame(
            schema={
                "claim_id": pl.String,
                "activity_cd": pl.String,
                "activity_date": pl.Date,
                "quantity": pl.Int32,
                "amount": pl.Decimal(12, 2),
            }
        )
    activities = activities.with_columns(decimal_cents("amount").alias("amount_cents")).drop(
        "amount", "patient_key", strict=False
    )
    claims = dbc_lines.filter(pl.col("source_table") == "dbc").select("claim_id", "patient_key", "patient_id")
    return activities.join(claims, on="claim_id", how="inner")


def bucket_numbers(root: Path | str) -> list[int]:
    """The patient buckets of a store (``insured/bucket=NNNN``)."""
    root = Path(root)
    return sorted({int(p.name.split("=")[1]) for p in (root / "insured").glob("bucket=*")})

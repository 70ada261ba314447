"""Read one patient bucket of the store as the engine's three inputs: insured spells, money lines
(all claim tables in one frame) and care activities.

Money becomes int64 cents. Lines with a net amount of zero are *fully credited* and contribute
nothing (docs/episode-rules.md, Input): they are dropped here, so they are neither allocated nor
triggers nor part of any price or covariate.

The reader also accepts a clean delivery or any folder with the contract's tables (no bucket
folders): then everything is one bucket, and ``patient_key`` is computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from transforms.ingest.keys import patient_key

LINE_COLUMNS = {
    "patient_key": pl.Int64, "patient_id": pl.String, "source_table": pl.String, "claim_id": pl.String,
    "start": pl.Date, "end": pl.Date, "amount_cents": pl.Int64, "provider_agb": pl.String,
    "specialism_cd": pl.String, "diagnosis_cd": pl.String, "product_cd": pl.String, "atc_cd": pl.String,
    "service_cd": pl.String, "discipline": pl.String, "referral_specialism_cd": pl.String,
}
CLAIM_TABLES = ("dbc", "gp", "pharmacy", "paramedical", "maternity")


@dataclass
class BucketInputs:
    insured: pl.DataFrame
    lines: pl.DataFrame
    activities: pl.DataFrame


def _files(root: Path, table: str, bucket: int | None) -> list[Path]:
    folder = root / table / f"bucket={bucket:04d}" if bucket is not None else root / table
    return sorted(folder.rglob("*.parquet")) if folder.exists() else []


def _read(root: Path, table: str, bucket: int | None, columns: list[str]) -> pl.DataFrame | None:
    files = _files(root, table, bucket)
    if not files:
        return None
    frame = pl.concat([pl.read_parquet(f, columns=[c for c in columns if c in pl.read_parquet_schema(f)])
                       for f in files], how="diagonal_relaxed")
    if "patient_key" not in frame.columns and "patient_id" in frame.columns:
        frame = frame.with_columns(patient_key(frame["patient_id"]))
    return frame


def _cents(column: str) -> pl.Expr:
    return (pl.col(column).cast(pl.Decimal(14, 2)) * 100).cast(pl.Int64)


def read_bucket(root: Path | str, bucket: int | None) -> BucketInputs:
    """The insured spells, money lines and activities of one bucket (``bucket=None``: the whole
    folder, for an unbucketed delivery)."""
    root = Path(root)
    insured = _read(root, "insured", bucket, ["patient_key", "patient_id", "enrolled_from", "enrolled_to",
                                               "birth_year", "sex", "postcode3", "gemeente_code", "death_date"])
    if insured is None:
        insured = pl.DataFrame(schema={"patient_key": pl.Int64, "patient_id": pl.String, "enrolled_from": pl.Date,
                                       "enrolled_to": pl.Date, "birth_year": pl.Int16, "sex": pl.String,
                                       "postcode3": pl.String, "gemeente_code": pl.String, "death_date": pl.Date})
    parts = []
    for table in CLAIM_TABLES:
        cols = ["patient_key", "patient_id", "claim_id", "amount", "provider_agb"]
        if table == "dbc":
            cols += ["start_date", "end_date", "specialism_cd", "diagnosis_cd", "product_cd"]
        else:
            cols += ["service_date", "atc_cd", "service_cd", "discipline", "referral_specialism_cd"]
        frame = _read(root, table, bucket, cols)
        if frame is None:
            continue
        start, end = ("start_date", "end_date") if table == "dbc" else ("service_date", "service_date")
        frame = frame.with_columns(
            pl.lit(table).alias("source_table"),
            pl.col(start).alias("start"),
            pl.col(end).alias("end"),
            _cents("amount").alias("amount_cents"),
        )
        parts.append(frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c)
                                   for c, t in LINE_COLUMNS.items()]))
    lines = pl.concat(parts) if parts else pl.DataFrame(schema=LINE_COLUMNS)
    lines = lines.filter(pl.col("amount_cents") != 0)
    activities = _read(root, "dbc_activity", bucket, ["patient_key", "claim_id", "activity_cd", "activity_date",
                                                      "quantity", "amount"])
    if activities is None:
        activities = pl.DataFrame(schema={"claim_id": pl.String, "activity_cd": pl.String,
                                          "activity_date": pl.Date, "quantity": pl.Int32, "amount": pl.Decimal(12, 2)})
    activities = activities.with_columns(_cents("amount").alias("amount_cents")).drop("amount", "patient_key", strict=False)
    # only activities of money lines that are still there (not fully credited)
    dbc_claims = lines.filter(pl.col("source_table") == "dbc").select("claim_id", "patient_key", "patient_id")
    activities = activities.join(dbc_claims, on="claim_id", how="inner")
    return BucketInputs(insured=insured, lines=lines, activities=activities)


def bucket_numbers(root: Path | str) -> list[int | None]:
    """The buckets of a store, or ``[None]`` for an unbucketed folder (a delivery)."""
    root = Path(root)
    found = sorted({int(p.name.split("=")[1]) for p in (root / "insured").glob("bucket=*")})
    return found or [None]

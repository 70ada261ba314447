"""Stage 1 of ingest, one task per partition: normalise, run the row checks, route rows to buckets.

The only shuffle of the whole pipeline happens here, as partition-local writes: every partition
writes its rows into one piece file, a piece per patient bucket (``transforms.ingest.pieces``). Claim ids are also written, split by a hash of the
id, so that uniqueness across the delivery and the routing of care activities to their
subtraject's bucket can be checked part by part without holding all ids in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from expectations.suites import suite_checks
from transforms.contract import load_contract
from transforms.ingest.checks import add_row_flags, mask_bsn
from transforms.ingest.delivery import Partition
from transforms.ingest.keys import bucket_of, fnv1a64, patient_key
from transforms.ingest.layout import Staging
from transforms.ingest.normalise import normalise, read_partition
from transforms.ingest.pieces import write_pieces
from transforms.ingest.verdicts import VerdictFile, failing_rows, record_verdicts

FAILED = "_failed"  # list of failing check ids of a row (row and link stage)


@dataclass
class PartitionReport:
    table: str
    partition: str
    path: str
    rows: int
    cents: int  # sum of the ``amount`` column in cents (rows with an inexact amount count 0)
    failed: dict[str, int] = field(default_factory=dict)  # check id -> failing rows (incl. warnings)
    examples: dict[str, list[str]] = field(default_factory=dict)  # BSN-like values masked
    padded: dict[str, int] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)
    verdicts: VerdictFile | None = None  # the row checks' verdicts, for Great Expectations
    blank_to_null: dict[str, int] = field(default_factory=dict)
    #: the exact euros of delivered amounts that are not whole cents (text), and NaN / infinite ones
    unrepresentable_euros: str = "0"
    amounts_not_a_number: int = 0


def id_part(claim_id: pl.Series, n_parts: int) -> np.ndarray:
    """Which id-part a claim id belongs to (stable FNV-1a hash)."""
    return (fnv1a64(claim_id) % np.uint64(n_parts)).astype(np.int32)


def with_failed(
    frame: pl.DataFrame, failed_rows: dict[str, np.ndarray], checks: set[str], column: str = FAILED
) -> pl.DataFrame:
    """Add (or extend) the list of failing check ids per row (an empty list = passed), from the
    ``_row`` numbers GX reported per check; only checks in ``checks`` count."""
    pairs = [
        pl.DataFrame({"_row": rows, "_check": [check] * len(rows)}, schema={"_row": pl.Int64, "_check": pl.String})
        for check, rows in failed_rows.items()
        if check in checks and len(rows)
    ]
    if pairs:
        lists = pl.concat(pairs).group_by("_row").agg(pl.col("_check").sort().alias("_new"))
        frame = frame.join(lists, on="_row", how="left", maintain_order="left")
    else:
        frame = frame.with_columns(pl.lit(None, pl.List(pl.String)).alias("_new"))
    new = pl.col("_new").fill_null(pl.lit([], pl.List(pl.String)))
    combined = pl.concat_list(pl.col(column), new) if column in frame.columns else new
    return frame.with_columns(combined.alias(column)).drop("_new")


def process_partition(
    partition: Partition,
    staging_root: str,
    n_buckets: int,
    data_as_of: date,
    n_id_parts: int | None = None,
    years: tuple[int, int] | None = None,
) -> PartitionReport:
    """Normalise, check and route one partition (pure apart from its staging writes): rows that fail
    a row check carry its id to their bucket, and the verdicts are written for Great Expectations
    (``transforms.ingest.validation_stage``). ``years``: ``first_year``, ``last_year`` of
    ``delivery.json``, which claims must fall in."""
    contract = load_contract()
    n_id_parts = n_id_parts or n_buckets
    table = contract.table(partition.table)
    staging = Staging(Path(staging_root))
    normalised = normalise(read_partition(partition), table)
    frame = add_row_flags(normalised.frame, table, data_as_of, contract, years=years)
    checks = suite_checks(table.name, "row")
    failing = failing_rows(frame, checks)
    failed_rows = {check: rows for check, rows in failing.items() if len(rows)}
    batch = (table.name, "row", partition.name)
    verdicts = record_verdicts(frame, checks, batch, staging.verdicts(*batch), failed_rows)
    row_checks = {c.id for c in checks if c.severity == "row"}
    frame = with_failed(frame, failed_rows, row_checks)
    frame = frame.drop([c for c in frame.columns if c.startswith("_ok__")])
    frame = frame.with_columns(pl.lit(partition.index, pl.Int32).alias("_partition"))

    examples = {}
    for check, rows in failed_rows.items():
        sample = frame.filter(pl.col("_row").is_in(pl.Series(rows[:3]).implode()))
        id_col = "claim_id" if "claim_id" in frame.columns else frame.columns[1]
        examples[check] = [mask_bsn(str(v)) for v in sample[id_col].to_list()]
    cents = int(frame["amount"].fill_null(0).sum()) if "amount" in frame.columns else 0

    if "patient_id" in frame.columns:
        frame = frame.with_columns(patient_key(frame["patient_id"]))
        frame = frame.with_columns(pl.Series("_bucket", bucket_of(frame["patient_key"], n_buckets)))
        write_pieces(frame, "_bucket", staging.rows(table.name, partition.name))
        if "claim_id" in frame.columns:
            ids = frame.select("claim_id", "patient_key", pl.col("_bucket").alias("bucket"), "_partition", "_row")
            ids = ids.with_columns(pl.Series("_part", id_part(ids["claim_id"], n_id_parts)))
            write_pieces(ids, "_part", staging.claim_ids(table.name, partition.name))
    elif table.name == "dbc_activity":
        frame = frame.with_columns(pl.Series("_part", id_part(frame["claim_id"], n_id_parts)))
        write_pieces(frame, "_part", staging.activities_by_claim(partition.name))
    else:
        _write(frame, staging.unbucketed(table.name, partition.name))

    return PartitionReport(
        table=table.name,
        partition=partition.name,
        path=partition.path,
        rows=normalised.frame.height,
        cents=cents,
        failed={k: len(v) for k, v in failed_rows.items()},
        examples=examples,
        padded=normalised.padded,
        extra_columns=normalised.extra_columns,
        verdicts=verdicts,
        blank_to_null=normalised.blank_to_null,
        unrepresentable_euros=normalised.unrepresentable.get("amount", "0"),
        amounts_not_a_number=normalised.not_a_number.get("amount", 0),
    )


def _write(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, compression="lz4", statistics=False)

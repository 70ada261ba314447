"""Stage 2 of ingest, one task per id-part: checks that span the whole delivery, done on the claim
ids only (an aggregate), part by part.

- **Uniqueness**: a claim id delivered more than once keeps its first delivered line (lowest
  partition and row); every later copy is marked ``duplicate_claim_id``. Found without sorting
  strings: ids whose 64-bit hash occurs more than once are the only candidates (all true duplicates
  and the rare hash collision), and only those few are compared and ordered exactly.
- **Routing of care activities**: ``dbc_activity`` has no patient column, so each activity is sent
  to the bucket of its subtraject's patient by joining on the claim id; an activity whose claim id
  is not in ``dbc`` is an orphan (``unknown_reference``) and is quarantined here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from transforms.ingest.layout import CLAIM_TABLES, Staging
from transforms.ingest.partition_stage import FAILED

ORPHAN_CHECK = "dbc_activity.claim_id.references"


@dataclass
class IdPartReport:
    part: int
    duplicates: dict[str, int]
    routed_activities: int
    orphan_activities: int


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet")) if folder.exists() else []


def _scan(folder: Path) -> pl.DataFrame | None:
    files = _files(folder)
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed") if files else None


def _repeated(hashes: np.ndarray) -> np.ndarray:
    """The hash values that occur more than once (a numeric sort, light in memory: a hash-table
    ``is_duplicated`` needs several times more)."""
    ordered = np.sort(hashes)
    return np.unique(ordered[1:][ordered[1:] == ordered[:-1]])


def repeated_hash(claim_id: pl.Series) -> np.ndarray:
    """True where the 64-bit hash of the id occurs more than once in the series: every repeated id,
    and the rare id whose hash collides with another's. The in-process polars hash is enough: it
    only has to agree with itself within this call."""
    hashes = claim_id.hash().to_numpy()
    return np.isin(hashes, _repeated(hashes))


def later_copies(ids: pl.DataFrame) -> pl.DataFrame:
    """The copies of each claim id after its first delivered line (lowest ``_partition``, ``_row``),
    ordered by partition and row.

    Sorting tens of millions of string ids is the slow part of a uniqueness check; the hash narrows
    it to the ids that may repeat, and the exact comparison runs on those alone."""
    candidates = ids.filter(pl.Series(repeated_hash(ids["claim_id"])))
    ranked = candidates.sort("claim_id", "_partition", "_row").with_columns(
        pl.int_range(pl.len()).over("claim_id").alias("_occurrence")
    )
    return ranked.filter(pl.col("_occurrence") > 0).drop("_occurrence").sort("_partition", "_row")


def later_copies_in(files: list[Path]) -> pl.DataFrame:
    """:func:`later_copies` of one table's id files in two light passes: first only the hashes of
    the claim ids (8 bytes an id, strings decoded chunk by chunk), then the full rows of the ids
    whose hash repeats. Both passes hash with the same engine in the same process."""
    scan = pl.scan_parquet(files)
    hashes = scan.select(pl.col("claim_id").hash()).collect(engine="streaming").to_series().to_numpy()
    repeated = pl.Series(_repeated(hashes), dtype=pl.UInt64)
    del hashes
    rows = scan.filter(pl.col("claim_id").hash().is_in(repeated.implode())).collect(engine="streaming")
    return later_copies(rows)


def process_id_part(part: int, staging_root: str) -> IdPartReport:
    staging = Staging(Path(staging_root))
    duplicates: dict[str, int] = {}
    dbc_first: pl.DataFrame | None = None
    for table in CLAIM_TABLES:
        files = _files(staging.claim_ids_dir(table, part))
        if not files:
            duplicates[table] = 0
            continue
        later = later_copies_in(files)
        duplicates[table] = later.height
        # split by bucket, so a bucket reads only its own duplicates (not the whole delivery's)
        copies = later.select("claim_id", "bucket", "_partition", "_row")
        for (bucket,), rows in copies.partition_by("bucket", as_dict=True, maintain_order=True).items():
            path = staging.duplicates(table, int(bucket), part)
            path.parent.mkdir(parents=True, exist_ok=True)
            rows.write_parquet(path)
        if table == "dbc":  # the first line of every subtraject routes its care activities
            dbc_first = (
                pl.scan_parquet(files)
                .join(later.lazy().select("_partition", "_row"), on=["_partition", "_row"], how="anti")
                .select("claim_id", "patient_key", "bucket")
                .collect()
            )

    routed = orphans = 0
    activities = _scan(staging.activities_by_claim_dir(part))
    if activities is not None:
        if dbc_first is None:
            dbc_first = pl.DataFrame(schema={"claim_id": pl.String, "patient_key": pl.Int64, "bucket": pl.Int32})
        joined = activities.join(dbc_first, on="claim_id", how="left", maintain_order="left")
        found = joined.filter(pl.col("bucket").is_not_null())
        lost = joined.filter(pl.col("bucket").is_null()).drop("bucket")
        for (bucket,), rows in found.partition_by("bucket", as_dict=True, maintain_order=True).items():
            path = staging.routed_activities(int(bucket), part)
            path.parent.mkdir(parents=True, exist_ok=True)
            rows.drop("bucket").write_parquet(path)
        routed = found.height
        if lost.height:
            lost = lost.with_columns(pl.concat_list(pl.col(FAILED), pl.lit([ORPHAN_CHECK])).alias(FAILED))
            path = staging.orphan_activities(part)
            path.parent.mkdir(parents=True, exist_ok=True)
            lost.write_parquet(path)
        orphans = lost.height
    return IdPartReport(part, duplicates, routed, orphans)

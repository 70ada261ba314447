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
from transforms.ingest.pieces import iter_piece, piece_files, read_piece, write_pieces

ORPHAN_CHECK = "dbc_activity.claim_id.references"


@dataclass
class IdPartReport:
    part: int
    duplicates: dict[str, int]
    routed_activities: int
    orphan_activities: int


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


def later_copies_in(files: list[Path], part: int) -> pl.DataFrame | None:
    """:func:`later_copies` of one id-part of a table, read from its piece files in two light
    passes: first only the hashes of the claim ids (8 bytes an id, one file's piece at a time),
    then the rows of the ids whose hash repeats. Both passes hash in the same process. None if no
    file has ids of this part."""
    hashes = [piece["claim_id"].hash().to_numpy() for piece in iter_piece(files, part)]
    if not hashes:
        return None
    repeated = pl.Series(_repeated(np.concatenate(hashes)), dtype=pl.UInt64).implode()
    del hashes
    candidates = [piece.filter(pl.col("claim_id").hash().is_in(repeated)) for piece in iter_piece(files, part)]
    return later_copies(pl.concat(candidates, how="diagonal_relaxed"))


def process_id_part(part: int, staging_root: str) -> IdPartReport:
    staging = Staging(Path(staging_root))
    duplicates: dict[str, int] = {}
    dbc_first: pl.DataFrame | None = None
    for table in CLAIM_TABLES:
        files = piece_files(staging.claim_ids_dir(table))
        later = later_copies_in(files, part)
        if later is None:
            duplicates[table] = 0
            continue
        duplicates[table] = later.height
        # a piece per bucket, so a bucket reads only its own duplicates (not the whole delivery's)
        write_pieces(
            later.select("claim_id", "bucket", "_partition", "_row"), "bucket", staging.duplicates(table, part)
        )
        if table == "dbc":  # the first line of every subtraject routes its care activities
            copies = later.select("_partition", "_row")
            dbc_first = pl.concat(
                [
                    piece.join(copies, on=["_partition", "_row"], how="anti").select(
                        "claim_id", "patient_key", "bucket"
                    )
                    for piece in iter_piece(files, part)
                ]
            )

    routed = orphans = 0
    activities = read_piece(piece_files(staging.activities_by_claim_dir()), part)
    if activities is not None:
        if dbc_first is None:
            dbc_first = pl.DataFrame(schema={"claim_id": pl.String, "patient_key": pl.Int64, "bucket": pl.Int32})
        joined = activities.join(dbc_first, on="claim_id", how="left", maintain_order="left")
        found = joined.filter(pl.col("bucket").is_not_null())
        lost = joined.filter(pl.col("bucket").is_null()).drop("bucket")
        write_pieces(found, "bucket", staging.routed_activities(part))
        routed = found.height
        if lost.height:
            lost = lost.with_columns(pl.concat_list(pl.col(FAILED), pl.lit([ORPHAN_CHECK])).alias(FAILED))
            path = staging.orphan_activities(part)
            path.parent.mkdir(parents=True, exist_ok=True)
            lost.write_parquet(path)
        orphans = lost.height
    return IdPartReport(part, duplicates, routed, orphans)

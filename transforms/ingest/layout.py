"""Where ingest writes what: the staging area of a run and the final store.

```
STORE/
  manifest.json                       the run's books: inputs, counts, euros, checks, timing
  validation/summary.json             machine-readable validation summary
  validation/gx/data_docs/index.html  Great Expectations Data Docs
  providers/part-0.parquet            small tables, not bucketed
  contracts/part-0.parquet
  <table>/bucket=NNNN/part-0.parquet  insured, dbc, dbc_activity, gp, pharmacy, paramedical, maternity:
                                      valid, netted lines, sorted by patient_key and date
  quarantine/<table>/bucket=NNNN/part-0.parquet   rows that failed a check, with reason and checks
  corrections/<table>/bucket=NNNN/part-0.parquet  credit and re-declaration lines merged by netting
```

A run writes everything into ``STORE.zorgpad-new-<run id>`` beside the store and swaps it into
place only when no critical check failed and the books balance (``transforms.output_folder``): a
failed or killed run leaves the previous store untouched.
"""

from __future__ import annotations

from pathlib import Path

from transforms.contract import load_contract
from transforms.ingest.pieces import SUFFIX

#: The tables stored in patient buckets, those read whole, and the claim tables (``role`` in the
#: contract's table files).
BUCKETED_TABLES = load_contract().bucketed_tables
SMALL_TABLES = load_contract().tables_of_role("reference")
CLAIM_TABLES = load_contract().claim_tables
#: The date a table's rows are ordered by inside a bucket, after the patient key (the contract's
#: ``order_by``, or a claim's period start).
ORDER_DATE = {name: load_contract().table(name).order_date for name in BUCKETED_TABLES}


def bucket_dir(root: Path, table: str, bucket: int) -> Path:
    return Path(root) / table / f"bucket={bucket:04d}"


class Staging:
    """Paths inside a run's staging folder (``STORE.tmp-<run>/_staging``).

    The shuffle files are piece files (``transforms.ingest.pieces``): one per writer (a partition,
    or an id-part), holding a piece for each bucket (or id-part) it sends rows to, so the number of
    files grows with the delivery and not with its square."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def rows(self, table: str, partition: str) -> Path:
        """Normalised rows of one partition, a piece per bucket."""
        return self.rows_dir(table) / f"{partition}{SUFFIX}"

    def rows_dir(self, table: str) -> Path:
        return self.root / "rows" / table

    def unbucketed(self, table: str, partition: str) -> Path:
        return self.root / "rows" / table / "all" / f"{partition}.parquet"

    def claim_ids(self, table: str, partition: str) -> Path:
        """Claim ids of one partition, a piece per id-part (for uniqueness and routing)."""
        return self.claim_ids_dir(table) / f"{partition}{SUFFIX}"

    def claim_ids_dir(self, table: str) -> Path:
        return self.root / "claim_ids" / table

    def activities_by_claim(self, partition: str) -> Path:
        """Care activities of one partition, a piece per id-part of their claim id."""
        return self.activities_by_claim_dir() / f"{partition}{SUFFIX}"

    def activities_by_claim_dir(self) -> Path:
        return self.root / "activity_by_claim"

    def duplicates(self, table: str, part: int) -> Path:
        """Later copies of repeated claim ids found in one id-part, a piece per bucket."""
        return self.duplicates_dir(table) / f"part={part:04d}{SUFFIX}"

    def duplicates_dir(self, table: str) -> Path:
        return self.root / "duplicates" / table

    def verdicts(self, table: str, stage: str, batch: str) -> Path:
        """The check verdicts of one partition (row stage) or bucket (link stage) of a table."""
        return self.root / "verdicts" / stage / table / f"{batch}.parquet"

    def validation(self, step: str) -> Path:
        """The merged Great Expectations results of one step (partitions, buckets)."""
        return self.root / "validation" / f"{step}.json"

    def routed_activities(self, part: int) -> Path:
        """Care activities of one id-part sent to their subtraject's bucket, a piece per bucket
        (read with the rows of the table, after its partitions')."""
        return self.rows_dir("dbc_activity") / f"routed-{part:04d}{SUFFIX}"

    def orphan_activities(self, part: int) -> Path:
        return self.root / "orphans" / "dbc_activity" / f"part={part:04d}.parquet"

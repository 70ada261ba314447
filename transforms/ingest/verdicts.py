"""Check verdicts: which rows fail, what Data Docs shows of them, and the files Great Expectations
validates.

Every check is decided once, in polars, as a ``_ok__`` column (``transforms.ingest.checks``,
``transforms.ingest.links``); a row fails a check where its verdict is False (a null verdict, a
missing value, does not fail it, as GX counts it missing). The stage tasks route rows by those
verdicts and write them, a few bit-packed boolean columns, to the staging folder; GX then validates
the verdicts of every row of a table in a few large batches (:func:`validation_batches`) instead
of one batch per partition and bucket: GX spends about half a second per batch on building its
metric graphs whatever the batch's size, and its results are folded per table and stage for Data
Docs anyway (``expectations.results``). The validation task checks that GX found exactly the rows the routing
used, so what GX reports is what the store holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from transforms.contract import load_contract
from transforms.ingest.checks import Check, mask_bsn

#: Examples of unexpected values kept per check and batch (the folded result keeps more).
EXAMPLES = 10
#: Rows of verdicts Great Expectations validates in one batch: large enough that GX's fixed cost
#: per batch and expectation is paid a few times per table, small enough that a validation task's
#: memory (a boolean per row and check, twice) does not grow with the delivery.
ROWS_PER_VALIDATION = 8_000_000

#: Data Docs examples of one check: the first unexpected values in row order, and the most
#: frequent ones with their counts (as GX's ``partial_unexpected_list`` / ``_counts``).
Examples = tuple[list[str], list[dict]]


@dataclass
class VerdictFile:
    """The verdicts of one batch (a partition or a bucket's table) written for GX to validate."""

    table: str
    stage: str
    batch: str  # the partition or bucket it came from, for ordering and error messages
    path: str
    rows: int
    examples: dict[str, Examples] = field(default_factory=dict)


def failing_rows(frame: pl.DataFrame, checks: Iterable[Check], index: str = "_row") -> dict[str, np.ndarray]:
    """Per check whose verdict column is in ``frame``, the ``index`` values of the rows that fail it
    (verdict False), in frame order; a check no row fails maps to an empty array."""
    flags = [c for c in checks if c.flag in frame.columns]
    if not flags or frame.height == 0:
        return {c.id: np.empty(0, dtype=np.int64) for c in flags}
    failing = frame.select(
        [
            pl.col(index).cast(pl.Int64).filter(pl.col(c.flag).not_().fill_null(False)).implode().alias(c.id)
            for c in flags
        ]
    )
    return {c.id: failing[c.id][0].to_numpy() for c in flags}


def unexpected_examples(
    frame: pl.DataFrame, check: Check, rows: np.ndarray, table: str, index: str = "_row"
) -> Examples | None:
    """The values of the check's column at the failing ``rows``, for Data Docs (GX's own examples
    are those of the verdict, ``False``): the first ones in row order and the most frequent ones
    with their counts; money in euros; a BSN-like value masked. None where GX's examples stay: no
    failing row, a check on no single column (a rule over several), and exactness, whose failing
    values are not in the column (it holds null or what they converted to; the delivered text is
    kept in the quarantine's ``_as_delivered``)."""
    if not len(rows) or check.column is None or check.derivation == "exact" or check.column not in frame.columns:
        return None
    chosen = frame.filter(pl.col(index).is_in(pl.Series(rows, dtype=frame.schema[index]).implode())).sort(index)
    values = chosen[check.column]
    if check.column in load_contract().table(table).money_columns:
        values = values / 100.0
    texts = [mask_bsn(str(v)) for v in values.to_list()]
    return texts[:EXAMPLES], most_frequent(Counter(texts))


def most_frequent(counts: Counter[str], keep: int = EXAMPLES) -> list[dict]:
    """Value counts as GX lists them: most frequent first, ties by value."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:keep]
    return [{"value": value, "count": count} for value, count in ranked]


def combined_examples(files: Sequence[VerdictFile]) -> dict[str, Examples]:
    """The examples of several batches as one: the first ones in batch order, counts summed."""
    lists: dict[str, list[str]] = {}
    counts: dict[str, Counter[str]] = {}
    for f in files:
        for check, (first, frequent) in f.examples.items():
            lists.setdefault(check, []).extend(first)
            counter = counts.setdefault(check, Counter())
            for entry in frequent:
                counter[entry["value"]] += int(entry["count"])
    return {check: (lists[check][:EXAMPLES], most_frequent(counts[check])) for check in lists}


def examples_of(
    frame: pl.DataFrame, failing: dict[str, np.ndarray], checks: Iterable[Check], table: str, index: str = "_row"
) -> dict[str, Examples]:
    """:func:`unexpected_examples` of every check with failing rows that has them."""
    out = {}
    for check in checks:
        examples = unexpected_examples(frame, check, failing.get(check.id, np.empty(0)), table, index)
        if examples is not None:
            out[check.id] = examples
    return out


def write_verdicts(frame: pl.DataFrame, checks: Iterable[Check], path: Path) -> int:
    """Write the verdict columns of ``checks`` (as many as ``frame`` has) to ``path``; rows written."""
    flags = [c.flag for c in checks if c.flag in frame.columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.select(flags).write_parquet(path, compression="lz4", statistics=False)
    return frame.height


def record_verdicts(
    frame: pl.DataFrame,
    checks: Iterable[Check],
    batch: tuple[str, str, str],
    path: Path,
    failing: dict[str, np.ndarray],
    index: str = "_row",
) -> VerdictFile:
    """Write the verdicts of one batch (``table``, ``stage``, ``batch``) to ``path`` and describe them
    for the validation step: their rows and the Data Docs examples of the ``failing`` rows."""
    checks = list(checks)
    table, stage, name = batch
    rows = write_verdicts(frame, checks, path)
    return VerdictFile(table, stage, name, str(path), rows, examples_of(frame, failing, checks, table, index))


def validation_batches(files: Iterable[VerdictFile], rows: int = ROWS_PER_VALIDATION) -> list[list[VerdictFile]]:
    """Group verdict files into GX batches: per table and stage, in batch order, each batch of at
    most ``rows`` rows (a single larger file is a batch of its own)."""
    by_suite: dict[tuple[str, str], list[VerdictFile]] = {}
    for f in files:
        by_suite.setdefault((f.table, f.stage), []).append(f)
    batches: list[list[VerdictFile]] = []
    for key in sorted(by_suite):
        current: list[VerdictFile] = []
        size = 0
        for f in sorted(by_suite[key], key=lambda f: f.batch):
            if current and size + f.rows > rows:
                batches.append(current)
                current, size = [], 0
            current.append(f)
            size += f.rows
        if current:
            batches.append(current)
    return batches


def read_verdicts(files: Sequence[VerdictFile]) -> pl.DataFrame:
    """The verdicts of ``files`` as one frame, in file order, indexed by ``_row`` (0, 1, ...)."""
    frames = [pl.read_parquet(f.path) for f in files]
    return pl.concat(frames, how="vertical").with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))

"""The Great Expectations step of ingest, one task per batch of verdict files: GX validates the
verdicts of every row the stage tasks routed, and the task proves that GX found exactly the rows
that the routing failed (``transforms.ingest.verdicts``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from expectations.runner import validate_batch
from expectations.suites import suite_checks
from transforms.ingest.verdicts import VerdictFile, combined_examples, failing_rows, read_verdicts


class ValidationDisagreement(RuntimeError):
    """Great Expectations and the routing disagree on which rows failed a check: a bug, never a
    property of the delivery, so the run stops before anything is published."""


@dataclass
class VerdictValidation:
    """The slim GX result of one batch of verdict files (see ``expectations.runner``)."""

    table: str
    stage: str
    rows: int
    result: dict = field(default_factory=dict)


def batch_name(files: Sequence[VerdictFile]) -> str:
    first, last = files[0].batch, files[-1].batch
    return first if first == last else f"{first}..{last}"


def validate_verdicts(files: Sequence[VerdictFile]) -> VerdictValidation:
    """Validate the verdicts of ``files`` (one table and stage, in order) as one GX batch."""
    table, stage = files[0].table, files[0].stage
    if any((f.table, f.stage) != (table, stage) for f in files):
        raise ValueError("a validation batch holds the verdicts of one table and stage")
    verdicts = read_verdicts(files)
    name = batch_name(files)
    validation = validate_batch(verdicts, table, stage, name, examples=combined_examples(files))
    routed = failing_rows(verdicts, suite_checks(table, stage))
    for check in sorted(set(routed) | set(validation.failed_rows)):
        ours, theirs = routed.get(check), validation.failed_rows.get(check)
        ours_set = set() if ours is None else set(ours.tolist())
        theirs_set = set() if theirs is None else set(theirs.tolist())
        if ours_set != theirs_set:
            raise ValidationDisagreement(
                f"check {check} on {table} ({stage} stage, batch {name}): Great Expectations found "
                f"{len(theirs_set):,} failing rows, the routing {len(ours_set):,}"
            )
    return VerdictValidation(table, stage, verdicts.height, validation.result)

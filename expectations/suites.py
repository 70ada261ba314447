"""Great Expectations suites generated from the contract's checks (``transforms.ingest.checks``).

One suite per table and stage: ``<table>.row`` validates the verdicts of the checks each row is
decided on alone (in the partition step), ``<table>.link`` those that need a patient's other rows
(in the bucket step, after the shuffle); both run as a few large pandas batches per table on the
Dask workers (``transforms.ingest.validation_stage``). Each expectation carries in its ``meta`` the check id, the reason code a failing row
gets and the severity, so the runner can turn unexpected rows into quarantine rows. Every
expectation reads the check's verdict column (see :func:`expectation_for`).

Money bounds are given and compared in euros (cents / 100), so they read in euros; the pipeline
itself keeps exact cents.
"""

from __future__ import annotations

from functools import lru_cache

import great_expectations as gx
import great_expectations.expectations as gxe

from transforms.contract import load_contract
from transforms.ingest.checks import Check, checks_for


def _parameters(check: Check) -> object:
    """The check's parameters as JSON (a pattern, a length, the allowed values, the bounds)."""
    value = check.value
    return list(value) if isinstance(value, tuple) else value


def expectation_for(check: Check) -> gxe.Expectation:
    """The expectation of one check: every row's verdict (its ``_ok__`` column, computed in polars
    by ``transforms.ingest.checks`` and ``transforms.ingest.links``) is True. Deciding each check
    once, in polars, and letting GX validate and report the verdicts of every row keeps the
    validation linear in the rows without a second, pandas evaluation of every regex and value set
    (the bulk of ingest's time). A verdict is null where the checked value is missing, so GX's
    element, missing and unexpected counts are those of the check on the values. The Data Docs text
    is the check's description; ``meta`` carries the check id, reason, severity, kind, column and
    parameters, so a reader (and the runner) knows what was checked."""
    meta = {
        "check": check.id,
        "reason": check.reason,
        "severity": check.severity,
        "description": check.description,
        "kind": check.kind,
        "column": check.column,
        "parameters": _parameters(check),
        "derivation": check.derivation,
    }
    return gxe.ExpectColumnValuesToBeInSet(
        column=check.flag, value_set=[True], meta=meta, description=f"`{check.id}`: {check.description}"
    )


@lru_cache(maxsize=64)
def suite_checks(table: str, stage: str) -> tuple[Check, ...]:
    return tuple(c for c in checks_for(load_contract().table(table)) if c.stage == stage)


def build_suite(table: str, stage: str) -> gx.ExpectationSuite:
    """The GX suite of one table and stage (``row`` or ``link``)."""
    suite = gx.ExpectationSuite(name=f"{table}.{stage}", meta={"zorgpad": {"table": table, "stage": stage}})
    for check in suite_checks(table, stage):
        suite.add_expectation(expectation_for(check))
    return suite

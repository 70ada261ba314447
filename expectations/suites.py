"""Great Expectations suites generated from the contract's checks (``transforms.ingest.checks``).

One suite per table and stage: ``<table>.row`` runs on every partition of the delivery (in
parallel, as pandas batches on the Dask workers) and ``<table>.link`` on every patient bucket after
the shuffle. Each expectation carries in its ``meta`` the check id, the reason code a failing row
gets and the severity, so the runner can turn unexpected rows into quarantine rows.

Money is shown to GX in euros (float) so bounds and Data Docs read in euros; the pipeline itself
keeps exact cents.
"""

from __future__ import annotations

from functools import lru_cache

import great_expectations as gx
import great_expectations.expectations as gxe

from transforms.contract import load_contract
from transforms.ingest.checks import Check, checks_for


def expectation_for(check: Check) -> gxe.Expectation:
    meta = {"check": check.id, "reason": check.reason, "severity": check.severity, "description": check.description}
    if check.kind == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(column=check.column, meta=meta)
    if check.kind == "length":
        return gxe.ExpectColumnValueLengthsToEqual(column=check.column, value=check.value, meta=meta)
    if check.kind == "pattern":
        return gxe.ExpectColumnValuesToMatchRegex(column=check.column, regex=check.value, meta=meta)
    if check.kind == "in_set":
        return gxe.ExpectColumnValuesToBeInSet(column=check.column, value_set=list(check.value), meta=meta)
    if check.kind == "between":
        low, high = check.value
        return gxe.ExpectColumnValuesToBeBetween(column=check.column, min_value=low, max_value=high, meta=meta)
    if check.kind == "derived":
        return gxe.ExpectColumnValuesToBeInSet(column=check.flag, value_set=[True], meta=meta)
    raise ValueError(f"no expectation for check kind {check.kind!r}")


@lru_cache(maxsize=64)
def suite_checks(table: str, stage: str) -> tuple[Check, ...]:
    return tuple(c for c in checks_for(load_contract().table(table)) if c.stage == stage)


def build_suite(table: str, stage: str) -> gx.ExpectationSuite:
    """The GX suite of one table and stage (``row`` or ``link``)."""
    suite = gx.ExpectationSuite(name=f"{table}.{stage}", meta={"zorgpad": {"table": table, "stage": stage}})
    for check in suite_checks(table, stage):
        suite.add_expectation(expectation_for(check))
    return suite

"""Run the generated suites on pandas batches (GX 1.x has no Dask engine) and collect the results.

``validate_batch`` is what a Dask task calls on a batch of verdicts (the checks' ``_ok__`` columns,
computed by ``transforms.ingest.checks.add_row_flags`` and ``transforms.ingest.links``, gathered
from many partitions or buckets by ``transforms.ingest.validation_stage``): it validates them with
``result_format=COMPLETE`` to learn exactly which rows failed which check, and returns those row
numbers plus a slim copy of the GX validation result (without the row lists) for Data Docs.
``build_data_docs`` puts all slim results into a file-based GX project and renders the HTML.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd
import polars as pl
from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from great_expectations.validator.v1_validator import Validator

from expectations.data_docs import localise_static_links
from expectations.suites import build_suite, suite_checks
from transforms.ingest.verdicts import EXAMPLES

DATA_DOCS_SITE = "zorgpad"
_STRIP = ("unexpected_index_list", "unexpected_list", "partial_unexpected_index_list", "unexpected_index_query")


_CONTEXT: dict[str, Any] = {}


def _context():
    """One ephemeral GX context per process, with the validation definitions created once."""
    if "context" not in _CONTEXT:
        context = gx.get_context(mode="ephemeral")
        context.enable_analytics(False)  # no telemetry from a health-data pipeline
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        _CONTEXT["context"] = context
        _CONTEXT["source"] = context.data_sources.add_pandas("zorgpad")
        _CONTEXT["definitions"] = {}
    return _CONTEXT["context"]


def _definition(table: str, stage: str):
    context = _context()
    key = f"{table}.{stage}"
    definitions = _CONTEXT["definitions"]
    if key not in definitions:
        batch = _CONTEXT["source"].add_dataframe_asset(key).add_batch_definition_whole_dataframe("batch")
        suite = context.suites.add(build_suite(table, stage))
        definitions[key] = context.validation_definitions.add(
            gx.ValidationDefinition(name=key, data=batch, suite=suite)
        )
    return definitions[key]


def _forget_stored_results() -> None:
    """Drop what GX keeps of a validated batch. The data source's execution engine keeps the last
    pandas batch of every suite and its metrics (the column types metric holds every distinct value
    of every text column), and a ``ValidationDefinition.run`` (which :func:`validate_batch` does not
    call) would keep every result, row lists and all, in the context's results store: in a
    long-lived worker, a whole partition or bucket per suite, held for the life of the process. The
    caller keeps what it needs."""
    store = _context().validation_results_store
    for key in store.list_keys():
        store.remove_key(key)
    engine = _CONTEXT["source"].get_execution_engine()
    engine.batch_manager.batch_data_cache.clear()
    engine.batch_manager.reset_batch_cache()
    metrics = getattr(engine, "_metric_cache", None)  # the last batch's metrics, column categories and all
    if isinstance(metrics, dict):
        metrics.clear()


def retained_by_gx() -> dict[str, int]:
    """What GX holds on to in this process: results in the results store, cached batches and batch
    data, cached metrics. All 0 after :func:`validate_batch` (see :func:`_forget_stored_results`):
    a long-lived worker's memory depends on it, and a test checks it."""
    context = _context()
    engine = _CONTEXT["source"].get_execution_engine()
    metrics = getattr(engine, "_metric_cache", None)
    return {
        "stored_results": len(context.validation_results_store.list_keys()),
        "batch_data": len(engine.batch_manager.batch_data_cache),
        "batches": len(engine.batch_manager.batch_cache),
        "metrics": len(metrics) if metrics else 0,
    }


@dataclass
class BatchValidation:
    """Rows that failed, per check id, and the slim GX result (a JSON-able dict)."""

    failed_rows: dict[str, np.ndarray]
    result: dict
    rows: int


def verdict_frame(frame: pl.DataFrame, flags: list[str]) -> pd.DataFrame:
    """The pandas batch GX sees: one boolean column per check (its verdict, a masked boolean where
    the checked value is missing), index = ``_row``. Built from numpy buffers, without pandas'
    object or categorical conversion of any delivered value."""
    columns = {}
    for name in flags:
        series = frame[name]
        values = series.fill_null(False).to_numpy()
        columns[name] = pd.arrays.BooleanArray(values, series.is_null().to_numpy()) if series.null_count() else values
    return pd.DataFrame(columns, index=frame["_row"].to_numpy())


def validate_batch(
    frame: pl.DataFrame,
    table: str,
    stage: str,
    batch_name: str,
    examples: dict[str, tuple[list[str], list[dict]]] | None = None,
) -> BatchValidation:
    """Validate one batch of verdicts with the table's suite for ``stage``: GX reads the ``_ok__``
    verdict column of every check (see ``expectations.suites.expectation_for``), rows indexed by
    ``_row``. ``examples``: per check, the values Data Docs shows for the failing rows instead of
    GX's (which are the verdicts, ``False``): the first ones and the most frequent with counts."""
    checks = suite_checks(table, stage)
    if not checks or frame.height == 0:
        return BatchValidation({}, {}, frame.height)
    definition = _definition(table, stage)
    pdf = verdict_frame(frame, [c.flag for c in checks if c.flag in frame.columns])
    # the validator of ``definition.run`` without the run's bookkeeping: ``run`` also serialises the
    # whole result (row lists included) into the context's results store, which would be emptied
    # again at once, and adds run ids to ``meta`` that the folded results do not keep
    validator = Validator(
        batch_definition=definition.batch_definition,
        batch_parameters={"dataframe": pdf},
        result_format={"result_format": "COMPLETE"},
    )
    result = validator.validate_expectation_suite(definition.suite)
    _forget_stored_results()
    failed: dict[str, np.ndarray] = {}
    for r in result.results:
        check = r.expectation_config.meta["check"]
        rows = np.asarray(r.result.get("unexpected_index_list") or [], dtype=np.int64)
        if not r.success or r.result.get("unexpected_count"):
            failed[check] = rows
        for key in _STRIP:
            r.result.pop(key, None)
        if "partial_unexpected_list" not in r.result:
            continue
        if examples and check in examples:
            first, frequent = examples[check]
            r.result["partial_unexpected_list"], r.result["partial_unexpected_counts"] = first, frequent
        else:  # verdicts only (True / False): nothing to mask, kept as GX gives them
            r.result["partial_unexpected_list"] = r.result.get("partial_unexpected_list", [])[:EXAMPLES]
            r.result["partial_unexpected_counts"] = r.result.get("partial_unexpected_counts", [])[:EXAMPLES]
    slim = result.to_json_dict()
    slim["meta"] = {**slim.get("meta", {}), "batch": batch_name, "table": table, "stage": stage}
    return BatchValidation(failed, json.loads(json.dumps(slim, default=str)), frame.height)


def build_data_docs(results: list[dict], out: Path) -> Path:
    """Write every slim validation result into a file-based GX project under ``out`` and render
    Data Docs there; returns the path of ``index.html``."""
    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    context = gx.get_context(mode="file", project_root_dir=str(out))
    context.enable_analytics(False)
    docs_dir = out / "data_docs"
    context.add_data_docs_site(
        site_name=DATA_DOCS_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        },
    )
    suites_seen: set[str] = set()
    for raw in results:
        if not raw:
            continue
        meta = raw.get("meta", {})
        suite_name = raw["suite_name"]
        if suite_name not in suites_seen:
            table, stage = meta["table"], meta["stage"]
            context.suites.add(build_suite(table, stage))
            suites_seen.add(suite_name)
        result = ExpectationSuiteValidationResult(
            success=raw["success"],
            results=[_expectation_result(r) for r in raw["results"]],
            suite_name=suite_name,
            statistics=raw["statistics"],
            meta=raw.get("meta", {}),
        )
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
            run_id=RunIdentifier(run_name=meta.get("run_name", "ingest"), run_time=meta.get("run_time")),
            batch_identifier=meta["batch"],
        )
        context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=[DATA_DOCS_SITE])
    localise_static_links(docs_dir)
    return docs_dir / "index.html"


def _expectation_result(raw: dict):
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    config = raw["expectation_config"]
    return ExpectationValidationResult(
        success=raw["success"],
        expectation_config=ExpectationConfiguration(
            type=config["type"], kwargs=config["kwargs"], meta=config.get("meta")
        ),
        result=raw.get("result", {}),
        exception_info=raw.get("exception_info"),
        meta=raw.get("meta", {}),
    )

"""The ingest pipeline as plain functions: inspect, partitions, id-parts, buckets, books, manifest.

Each stage takes a ``mapper(function, argument_tuples, on_result) -> results``: the Prefect flow passes one
that runs the calls on a Dask cluster, tests and small runs use :func:`local_map`. Stages exchange
only paths and small reports, so any stage can run on any worker.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

import polars as pl

from expectations.results import ValidationMerger, load_results
from transforms.contract import CONTRACT_VERSION, load_contract
from transforms.ingest.bucket_stage import (
    BucketReport,
    TableBooks,
    process_bucket,
    unrepresentable_amounts,
    validate_link,
    write_table,
)
from transforms.ingest.delivery import DeliveryError, DeliveryPlan, inspect_delivery
from transforms.ingest.id_stage import IdPartReport, process_id_part
from transforms.ingest.layout import BUCKETED_TABLES, CLAIM_TABLES, SMALL_TABLES, Staging
from transforms.ingest.links import LinkContext, add_link_flags, first_valid_kept
from transforms.ingest.partition_stage import FAILED, PartitionReport, process_partition
from transforms.ingest.validation_stage import VerdictValidation, validate_verdicts
from transforms.ingest.verdicts import VerdictFile, validation_batches
from transforms.manifests import BooksEntry, StoreManifest, ValidationRef
from transforms.money import exact_euros
from transforms.output_folder import Publication, check_target, require_unlocked
from transforms.runtime import Mapper, code_version, local_map

DEFAULT_CRITICAL_SHARE = 0.05
ROWS_PER_BUCKET = 2_000_000


IDS_PER_PART = 20_000_000


def choose_id_parts(plan: DeliveryPlan) -> int:
    """Id-parts for the delivery-wide checks: about 20 million claim ids each. Fewer parts than
    buckets keep the number of small staging files (partitions x parts) down."""
    rows = sum(plan.rows_in(t) for t in (*CLAIM_TABLES, "dbc_activity"))
    return max(2, math.ceil(rows / IDS_PER_PART))


def choose_buckets(plan: DeliveryPlan) -> int:
    """About 2 million rows per bucket (at least 4 buckets), so a bucket's memory does not grow with
    the delivery."""
    rows = sum(plan.rows_in(t) for t in BUCKETED_TABLES)
    return max(4, math.ceil(rows / ROWS_PER_BUCKET))


@dataclass
class IngestResult:
    store: str
    manifest: dict
    quarantined: dict[str, int] = field(default_factory=dict)


def check_critical(reports: list[PartitionReport], plan: DeliveryPlan, share: float) -> dict[str, dict]:
    """Sum row-check failures per table and raise when a check fails on more than ``share`` of rows."""
    from expectations.suites import suite_checks

    per_table: dict[str, dict] = {}
    for table in plan.files:
        rows = sum(r.rows for r in reports if r.table == table)
        failed: Counter[str] = Counter()
        examples: dict[str, list[str]] = {}
        for r in (r for r in reports if r.table == table):
            failed.update(r.failed)
            for check in r.failed:
                examples.setdefault(check, r.examples.get(check, []))
        per_table[table] = {"rows": rows, "failed": failed, "examples": examples}
        by_id = {c.id: c for c in suite_checks(table, "row")}
        for check, count in sorted(failed.items()):
            spec = by_id.get(check)
            if spec is None or spec.severity != "row" or rows == 0 or count / rows <= share:
                continue
            if spec.value == "within_delivery_years":
                raise DeliveryError(
                    f"delivery.json contradicts the data: table {table}, check {check}: {count:,} of {rows:,} rows "
                    f"({count / rows:.1%}) fall outside the years {plan.meta.first_year}-{plan.meta.last_year} it "
                    f"gives (examples: {', '.join(examples[check])}); are first_year and last_year right?",
                    table=table,
                    check=check,
                    details={"failed": count, "rows": rows},
                )
            if spec.value == "date_range":
                raise DeliveryError(
                    f"delivery.json contradicts the data: table {table}, check {check}: {count:,} of {rows:,} rows "
                    f"({count / rows:.1%}) have dates outside 1990-01-01..data_as_of {plan.meta.data_as_of} "
                    f"(examples: {', '.join(examples[check])}); is data_as_of right?",
                    table=table,
                    check=check,
                    details={"failed": count, "rows": rows},
                )
            raise DeliveryError(
                f"table {table}: check {check} failed on {count:,} of {rows:,} rows ({count / rows:.1%}), more than "
                f"the critical share {share:.0%}; examples: {', '.join(examples[check])}",
                table=table,
                check=check,
                details={"failed": count, "rows": rows},
            )
    return per_table


def _small_tables(
    staging: Staging, store: Path, plan: DeliveryPlan
) -> tuple[list[str], dict[str, TableBooks], list[VerdictFile], dict]:
    """Providers and contracts: unique providers, contracts referring to valid providers."""
    books: dict[str, TableBooks] = {}
    report = BucketReport(bucket=-1)
    frames = {}
    for table in SMALL_TABLES:
        files = sorted((staging.root / "rows" / table / "all").glob("*.parquet"))
        frames[table] = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed").with_row_index("_i")
    # a provider delivered twice keeps its first valid row: a broken or conflicting copy must not
    # take the valid one, and with it the provider's claims and contracts, into quarantine
    providers = first_valid_kept(
        frames["providers"].sort("_partition", "_row"), ["provider_agb"], "_ok__providers.provider_agb.unique"
    )
    providers = validate_link(providers, "providers", -1, report, staging)
    valid = providers.filter(pl.col(FAILED).list.len() == 0)["provider_agb"].to_list()
    contracts = frames["contracts"].with_columns(
        pl.col("provider_agb").is_in(valid).alias("_ok__contracts.provider_agb.references")
    )
    contracts = validate_link(
        add_link_flags(LinkContext(load_contract().table("contracts"), contracts)), "contracts", -1, report, staging
    )
    from expectations.suites import suite_checks
    from transforms.ingest.bucket_stage import primary_reason

    reason_of = {c.id: c.reason for t in SMALL_TABLES for c in (*suite_checks(t, "row"), *suite_checks(t, "link"))}
    for table, frame in (("providers", providers), ("contracts", contracts)):
        frame = frame.with_columns(pl.lit(0, pl.Int64).alias("patient_key"))
        bad = frame.filter(pl.col(FAILED).list.len() > 0)
        good = frame.filter(pl.col(FAILED).list.len() == 0)
        if bad.height:
            bad = bad.with_columns(primary_reason(pl.col(FAILED), reason_of).alias("reason"))
            report.reasons[table] = dict(bad.group_by("reason").len().iter_rows())
            write_table(bad, table, store / "quarantine" / table, quarantine=True)
        write_table(good, table, store / table)
        books[table] = TableBooks(rows_in=frame.height, rows_stored=good.height, rows_quarantined=bad.height)
    return valid, books, report.verdicts, {"failed": report.failed, "reasons": report.reasons}


def _orphans(staging: Staging, store: Path) -> TableBooks:
    files = sorted((staging.root / "orphans" / "dbc_activity").glob("*.parquet"))
    books = TableBooks()
    if not files:
        return books
    frame = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
    frame = frame.with_columns(pl.lit("unknown_reference").alias("reason"), pl.lit(None, pl.Int64).alias("patient_key"))
    write_table(frame, "dbc_activity", store / "quarantine" / "dbc_activity" / "orphans", quarantine=True)
    cents = int(frame["amount"].fill_null(0).sum())
    unrepresentable, not_a_number = unrepresentable_amounts(frame)
    return TableBooks(
        rows_in=frame.height,
        rows_quarantined=frame.height,
        cents_in=cents,
        cents_quarantined=cents,
        unrepresentable_in=unrepresentable,
        unrepresentable_quarantined=unrepresentable,
        amounts_not_a_number=not_a_number,
    )


def balance(books: dict[str, TableBooks]) -> dict[str, BooksEntry]:
    """Rows in = stored + quarantined + merged; euros in = stored + quarantined (+ merged care
    activities, whose amounts are a breakdown), exactly: amounts that are not whole cents count
    with their delivered value (all of them are quarantined). Returns per table the check; euros
    are given as numbers and, exactly, as text in the JSON (``*_exact``)."""
    out = {}
    for table, b in books.items():
        rows_ok = b.rows_in == b.rows_stored + b.rows_quarantined + b.rows_merged
        merged_cents = b.cents_merged_lines if table == "dbc_activity" else 0
        cents_ok = b.cents_in == b.cents_stored + b.cents_quarantined + merged_cents
        unrepresentable_ok = b.unrepresentable_in == b.unrepresentable_quarantined
        euros_in = exact_euros(b.cents_in) + b.unrepresentable_in
        euros_stored = exact_euros(b.cents_stored)
        euros_quarantined = exact_euros(b.cents_quarantined) + b.unrepresentable_quarantined
        out[table] = BooksEntry(
            **b.model_dump(),
            euros_in=float(euros_in),
            euros_stored=float(euros_stored),
            euros_quarantined=float(euros_quarantined),
            euros_in_exact=euros_in,
            euros_stored_exact=euros_stored,
            euros_quarantined_exact=euros_quarantined,
            balanced=rows_ok and cents_ok and unrepresentable_ok,
        )
    return out


def delivered_euros(reports: list[PartitionReport]) -> dict[str, Decimal]:
    """Per table, the exact euros of the ``amount`` column as read from the delivery by the
    partition step: the books of the later steps must account for exactly this."""
    out: dict[str, Decimal] = {}
    for r in reports:
        out[r.table] = out.get(r.table, Decimal(0)) + exact_euros(r.cents) + Decimal(r.unrepresentable_euros)
    return out


@dataclass
class RunState:
    """What the steps of one ingest run share: paths and the plan (small, picklable). The store is
    written into ``publication.work`` and swapped into place by :func:`publish`."""

    delivery: str
    store: str
    publication: Publication
    buckets: int
    id_parts: int
    plan: DeliveryPlan
    critical_share: float
    started: float
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def tmp(self) -> str:
        """The folder the run writes the new store into."""
        return self.publication.work

    @property
    def staging(self) -> Staging:
        return Staging(Path(self.tmp) / "_staging")


def check_options(n_buckets: int | None, critical_share: float) -> None:
    """Options a run cannot start with (raises :class:`DeliveryError`, before any work)."""
    if n_buckets is not None and (isinstance(n_buckets, bool) or not isinstance(n_buckets, int) or n_buckets < 1):
        raise DeliveryError(f"--buckets must be a whole number of at least 1, not {n_buckets!r}", check="options")
    if not (isinstance(critical_share, (int, float)) and 0 <= critical_share <= 1):
        raise DeliveryError(
            f"--critical-share must be a share between 0 and 1 (0.05 = 5%), not {critical_share!r}", check="options"
        )


def _delivery_folder(delivery: Path | str) -> Path:
    path = Path(delivery).expanduser().resolve()
    if not path.is_dir():
        raise DeliveryError(
            f"the delivery folder {path} does not exist"
            if not path.exists()
            else f"the delivery {path} is a file, not a folder"
        )
    return path


def preflight(
    delivery: Path | str,
    store: Path | str,
    *,
    n_buckets: int | None = None,
    critical_share: float = DEFAULT_CRITICAL_SHARE,
) -> DeliveryPlan:
    """What a run can check in seconds, before any heavy work starts (the command line runs it
    before it starts a Prefect API): the options, the store path (``transforms.output_folder``),
    whether another run holds the store, and the delivery without hashing its files. Raises the
    first problem found; :func:`plan_run` checks all of it again."""
    check_options(n_buckets, critical_share)
    folder = _delivery_folder(delivery)
    target = check_target(store, "store", inputs={"delivery": folder}, option="--store")
    require_unlocked(target)
    return inspect_delivery(folder, hash_files=False)


def plan_run(
    delivery: Path | str,
    store: Path | str,
    *,
    n_buckets: int | None = None,
    critical_share: float = DEFAULT_CRITICAL_SHARE,
) -> RunState:
    """Step 1: check the options and the store path, take the store's lock, inspect the delivery
    (critical problems raise) and choose the buckets."""
    started = time.perf_counter()
    check_options(n_buckets, critical_share)
    delivery = _delivery_folder(delivery)
    publication = Publication.begin(store, "store", inputs={"delivery": delivery}, option="--store")
    try:
        plan = inspect_delivery(delivery)
    except BaseException:
        publication.abandon()
        raise
    state = RunState(
        str(delivery),
        publication.target,
        publication,
        n_buckets or choose_buckets(plan),
        choose_id_parts(plan),
        plan,
        critical_share,
        started,
    )
    state.timing["inspect"] = time.perf_counter() - started
    return state


def run_partitions(state: RunState, mapper: Mapper = local_map) -> tuple[list[PartitionReport], dict]:
    """Step 2: every partition in parallel: normalise, row checks, route to buckets; then the
    critical-share check on the summed failures."""
    t = time.perf_counter()
    years = (state.plan.meta.first_year, state.plan.meta.last_year)
    jobs = [
        (p, str(state.staging.root), state.buckets, state.plan.meta.data_as_of, state.id_parts, years)
        for ps in state.plan.partitions.values()
        for p in ps
    ]
    reports: list[PartitionReport] = mapper(process_partition, jobs, _take_verdicts(verdicts := []))
    state.timing["partitions"] = time.perf_counter() - t
    critical = check_critical(reports, state.plan, state.critical_share)
    validate_all(verdicts, state.staging.validation("partitions"), mapper)
    state.timing["partitions_gx"] = time.perf_counter() - t - state.timing["partitions"]
    return reports, critical


def run_id_parts(state: RunState, mapper: Mapper = local_map) -> list[IdPartReport]:
    """Step 3: uniqueness of claim ids and routing of care activities, per id-part in parallel."""
    t = time.perf_counter()
    reports = mapper(process_id_part, [(k, str(state.staging.root)) for k in range(state.id_parts)])
    state.timing["ids"] = time.perf_counter() - t
    return reports


def run_buckets(state: RunState, mapper: Mapper = local_map) -> tuple[list[BucketReport], dict]:
    """Step 4: providers and contracts, then every bucket in parallel: link checks, quarantine,
    netting, store files."""
    t = time.perf_counter()
    valid_providers, small_books, small_verdicts, small_link = _small_tables(state.staging, Path(state.tmp), state.plan)
    reports: list[BucketReport] = mapper(
        process_bucket,
        [
            (b, str(state.staging.root), state.tmp, valid_providers, state.plan.meta.data_as_of.isoformat())
            for b in range(state.buckets)
        ],
        _take_verdicts(verdicts := list(small_verdicts)),
    )
    state.timing["buckets"] = time.perf_counter() - t
    validate_all(verdicts, state.staging.validation("buckets"), mapper)
    state.timing["buckets_gx"] = time.perf_counter() - t - state.timing["buckets"]
    return reports, {"books": small_books, **small_link}


def _take_verdicts(into: list[VerdictFile]) -> Callable:
    """An ``on_result`` for the mapper: move a report's verdict files into ``into``."""

    def take(report):
        if isinstance(report, PartitionReport):
            if report.verdicts is not None:
                into.append(report.verdicts)
            report.verdicts = None
        else:
            into.extend(report.verdicts)
            report.verdicts = []
        return report

    return take


def validate_all(verdicts: list[VerdictFile], saved: Path, mapper: Mapper = local_map) -> None:
    """Great Expectations over every verdict file, in a few large batches per table
    (``transforms.ingest.verdicts.validation_batches``); the results, folded per suite, go to
    ``saved`` for Data Docs."""
    merger = ValidationMerger()
    mapper(
        validate_verdicts,
        [(batch,) for batch in validation_batches(verdicts)],
        lambda validation: (
            merger.absorb(validation.result) or VerdictValidation(validation.table, validation.stage, validation.rows)
        ),
    )
    merger.save(saved)


def close_books(
    state: RunState,
    partition_reports: list[PartitionReport],
    row_checks: dict,
    id_reports: list[IdPartReport],
    bucket_reports: list[BucketReport],
    small: dict,
    *,
    data_docs: bool = True,
) -> StoreManifest:
    """Step 5: the books (rows and euros in = stored + quarantined + merged), the validation summary,
    Data Docs and the manifest. Raises when a link check passes the critical share or the books do
    not balance."""
    tmp = Path(state.tmp)
    plan = state.plan
    books: dict[str, TableBooks] = {t: TableBooks() for t in BUCKETED_TABLES}
    for r in bucket_reports:
        for table, b in r.books.items():
            books[table].add(b)
    books["dbc_activity"].add(_orphans(state.staging, tmp))
    books.update(small["books"])
    ledger = balance(books)
    delivered = delivered_euros(partition_reports)
    for table, entry in ledger.items():
        entry.rows_in_delivery = plan.rows_in(table)
        entry.euros_delivered_exact = delivered.get(table, Decimal(0))
        entry.balanced = (
            entry.balanced
            and entry.rows_in == plan.rows_in(table)
            and entry.euros_in_exact == entry.euros_delivered_exact
        )
    link_failed: Counter[str] = Counter(small["failed"])
    reasons: dict[str, Counter[str]] = {k: Counter(v) for k, v in small["reasons"].items()}
    for r in bucket_reports:
        link_failed.update(r.failed)
        for table, counts in r.reasons.items():
            reasons.setdefault(table, Counter()).update(counts)
    orphans = sum(r.orphan_activities for r in id_reports)
    if orphans:
        reasons.setdefault("dbc_activity", Counter())["unknown_reference"] += orphans
        link_failed["dbc_activity.claim_id.references"] += orphans
    _check_link_critical(link_failed, books, state.critical_share)

    t = time.perf_counter()
    summary = _validation_summary(plan, row_checks, link_failed, reasons, ledger)
    validation_dir = tmp / "validation"
    validation_dir.mkdir(parents=True, exist_ok=True)
    docs_index = None
    if data_docs:
        from expectations.runner import build_data_docs

        results = load_results([state.staging.validation("partitions"), state.staging.validation("buckets")])
        docs_index = build_data_docs(results, validation_dir / "gx")
    (validation_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    state.timing["validation_docs"] = time.perf_counter() - t

    manifest = StoreManifest(
        delivery_id=plan.meta.delivery_id,
        delivery=plan.meta.as_dict(),
        delivery_path=str(Path(state.delivery).resolve()),
        store=str(Path(state.store).resolve()),
        code_version=code_version(),
        contract_version=CONTRACT_VERSION,
        buckets=state.buckets,
        id_parts=state.id_parts,
        critical_share=state.critical_share,
        inputs={
            t: [asdict(f) | {"path": str(Path(f.path).relative_to(Path(state.delivery)))} for f in files]
            for t, files in plan.files.items()
        },
        file_list_checked=plan.file_list_checked,
        ignored_files=plan.ignored,
        identical_files=plan.identical_files,
        extra_columns=plan.extra_columns,
        normalised={t: _sum_dicts(r.padded for r in partition_reports if r.table == t) for t in plan.files},
        blank_to_null={t: _sum_dicts(r.blank_to_null for r in partition_reports if r.table == t) for t in plan.files},
        books=ledger,
        balanced=all(e.balanced for e in ledger.values()),
        quarantine=reasons,
        validation=ValidationRef(
            summary="validation/summary.json",
            data_docs=str(docs_index.relative_to(tmp)) if docs_index else None,
            success=summary["success"],
        ),
        timing_seconds={k: round(v, 3) for k, v in state.timing.items()},
        machine={"python": platform.python_version(), "platform": platform.platform()},
    )
    if not manifest.balanced:
        bad = {t: e.model_dump(mode="json") for t, e in ledger.items() if not e.balanced}
        raise DeliveryError(
            f"the books do not balance for {', '.join(bad)}: {json.dumps(bad, default=str)}", check="books", details=bad
        )
    return manifest


def publish(state: RunState, manifest: StoreManifest) -> str:
    """Step 6: write the manifest and swap the finished store into place (replacing an older one
    atomically, see ``transforms.output_folder``)."""
    shutil.rmtree(state.staging.root, ignore_errors=True)
    manifest.timing_seconds["total"] = round(time.perf_counter() - state.started, 3)
    return str(state.publication.commit(manifest.dump()))


def abandon(state: RunState) -> None:
    """Remove a failed run's work folder and release the lock: the store stays as it was."""
    state.publication.abandon()


def ingest(
    delivery: Path | str,
    store: Path | str,
    *,
    n_buckets: int | None = None,
    mapper: Mapper = local_map,
    critical_share: float = DEFAULT_CRITICAL_SHARE,
    data_docs: bool = True,
) -> IngestResult:
    """Validate a delivery and write the patient-bucketed store (see ``transforms.ingest.layout``);
    the steps in order, without Prefect (tests, small runs)."""
    state = plan_run(delivery, store, n_buckets=n_buckets, critical_share=critical_share)
    try:
        partition_reports, row_checks = run_partitions(state, mapper)
        id_reports = run_id_parts(state, mapper)
        bucket_reports, small = run_buckets(state, mapper)
        manifest = close_books(
            state, partition_reports, row_checks, id_reports, bucket_reports, small, data_docs=data_docs
        )
        publish(state, manifest)
    except BaseException:
        abandon(state)
        raise
    quarantined = {t: e.rows_quarantined for t, e in manifest.books.items()}
    return IngestResult(state.store, manifest.dump(), quarantined)


def _check_link_critical(failed: dict[str, int], books: dict[str, TableBooks], share: float) -> None:
    from expectations.suites import suite_checks

    for check, count in sorted(failed.items()):
        table = (
            check.split(".")[0]
            if "." in check
            else next((t for t in books if any(c.id == check for c in suite_checks(t, "link"))), None)
        )
        if table is None or table not in books:
            continue
        rows = books[table].rows_in
        if rows and count / rows > share:
            raise DeliveryError(
                f"table {table}: check {check} failed on {count:,} of {rows:,} rows ({count / rows:.1%}), more than "
                f"the critical share {share:.0%}",
                table=table,
                check=check,
                details={"failed": count, "rows": rows},
            )


def _sum_dicts(dicts) -> Counter[str]:
    out: Counter[str] = Counter()
    for d in dicts:
        out.update(d)
    return out


def _validation_summary(
    plan: DeliveryPlan, row_checks: dict, link_failed: dict[str, int], reasons: dict, ledger: dict[str, BooksEntry]
) -> dict:
    from expectations.suites import suite_checks

    tables = {}
    success = True
    for table in plan.files:
        checks = []
        rows = row_checks[table]["rows"]
        for stage in ("row", "link"):
            for c in suite_checks(table, stage):
                failed = row_checks[table]["failed"].get(c.id, 0) if stage == "row" else link_failed.get(c.id, 0)
                checks.append(
                    {
                        "check": c.id,
                        "stage": stage,
                        "severity": c.severity,
                        "reason": c.reason,
                        "description": c.description,
                        "failed_rows": failed,
                        "failed_share": failed / rows if rows else 0.0,
                        "examples": row_checks[table]["examples"].get(c.id, []),
                    }
                )
                success = success and (failed == 0 or c.severity == "warning")
        tables[table] = {
            "rows": rows,
            "quarantined": ledger[table].rows_quarantined,
            "reasons": reasons.get(table, {}),
            "checks": checks,
        }
    return {"delivery_id": plan.meta.delivery_id, "success": success, "tables": tables}


__all__ = ["DeliveryError", "IngestResult", "choose_buckets", "ingest", "local_map"]

"""Stage 3 of ingest, one task per patient bucket: the checks that need a patient's other tables,
quarantine, netting, and the store files of the bucket.

All tables of a patient are in the same bucket, so enrolment coverage, death dates, the dates of a
care activity's subtraject and the originals of corrections are all local: no further shuffle.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from expectations.suites import suite_checks
from transforms.contract import load_contract
from transforms.ingest.checks import REASON_PRECEDENCE, masked_bsn
from transforms.ingest.layout import BUCKETED_TABLES, CLAIM_TABLES, ORDER_DATE, Staging, bucket_dir
from transforms.ingest.links import LinkContext, add_link_flags, parent_rows
from transforms.ingest.netting import in_correction_cycle, net_corrections, rekey_activities
from transforms.ingest.normalise import AS_DELIVERED, ISSUE, exact_sum
from transforms.ingest.partition_stage import FAILED
from transforms.ingest.pieces import piece_files, read_piece
from transforms.ingest.verdicts import VerdictFile, failing_rows, record_verdicts
from transforms.manifests import TableBooks
from transforms.money import cents_to_decimal

STORE_EXTRA = {
    "claims": [("n_corrections", pa.int16()), ("fully_credited", pa.bool_()), ("effective_claim_id", pa.string())],
}


@dataclass
class BucketReport:
    bucket: int
    books: dict[str, TableBooks] = field(default_factory=dict)
    failed: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    verdicts: list[VerdictFile] = field(default_factory=list)  # the link checks', for Great Expectations


def _flag_duplicates(frame: pl.DataFrame, duplicates: pl.DataFrame | None, check: str) -> pl.DataFrame:
    ok = pl.lit(True)
    if duplicates is not None and duplicates.height:
        marks = duplicates.select("_partition", "_row").with_columns(pl.lit(True).alias("_dup"))
        frame = frame.join(marks, on=["_partition", "_row"], how="left", maintain_order="left")
        ok = pl.col("_dup").is_null()
        return frame.with_columns(ok.alias(f"_ok__{check}")).drop("_dup")
    return frame.with_columns(ok.alias(f"_ok__{check}"))


def orphaned_corrections(frame: pl.DataFrame) -> pl.Series:
    """True for a valid correcting line whose chain of ``corrects_claim_id`` links passes through a
    line that has no valid copy (quarantined): the correction follows it into quarantine, however
    deep the chain (a credit of a re-declaration of a quarantined claim)."""
    valid = frame.select("claim_id", "corrects_claim_id", FAILED).filter(pl.col(FAILED).list.len() == 0)
    corrections = valid.filter(pl.col("corrects_claim_id").is_not_null()).select("claim_id", "corrects_claim_id")
    if corrections.height == 0:
        return pl.Series("orphaned", [False] * frame.height, dtype=pl.Boolean)
    referenced = corrections["corrects_claim_id"].unique()
    alive = set(valid["claim_id"].filter(valid["claim_id"].is_in(referenced.implode())).to_list())
    parent = dict(corrections.iter_rows())
    orphaned: dict[str, bool] = {}
    for start in parent:
        path: list[str] = []
        node = start
        while node not in orphaned:
            up = parent[node]
            path.append(node)
            if up not in alive or up in path:  # its parent has no valid line, or a cycle
                verdict = True
                break
            if up not in parent:  # a valid original
                verdict = False
                break
            node = up
        else:
            verdict = orphaned[node]
        for step in path:
            orphaned[step] = verdict
    flags = frame.select(
        pl.col("corrects_claim_id").is_not_null()
        & (pl.col(FAILED).list.len() == 0)
        & pl.col("claim_id").replace_strict(orphaned, default=False, return_dtype=pl.Boolean)
    )
    return flags.to_series().alias("orphaned")


def primary_reason(failed: pl.Expr, reason_of: dict[str, str]) -> pl.Expr:
    """The reason code of the highest-precedence failing check."""
    rank = {r: i for i, r in enumerate(REASON_PRECEDENCE)}
    ranked = failed.list.eval(
        pl.element()
        .replace_strict(reason_of, default="invalid_value")
        .replace_strict(rank, default=len(rank), return_dtype=pl.Int32)
    ).list.min()
    return ranked.replace_strict(dict(enumerate(REASON_PRECEDENCE)), default="invalid_value", return_dtype=pl.String)


def _read_staged(staging: Staging, table: str, bucket: int) -> pl.DataFrame:
    frame = read_piece(piece_files(staging.rows_dir(table)), bucket)
    return (frame if frame is not None else _empty_staged(table)).with_row_index("_i")


def process_bucket(
    bucket: int, staging_root: str, store_root: str, valid_providers: list[str], data_as_of_iso: str
) -> BucketReport:
    """Link checks, quarantine, netting and the store files of one bucket.

    Tables are processed one at a time (insured first, care activities last), so a worker holds
    one claim table of one bucket at a time, plus the small facts the later tables need.
    """
    contract = load_contract()
    staging = Staging(Path(staging_root))
    store = Path(store_root)
    report = BucketReport(bucket)
    reason_of = {c.id: c.reason for t in BUCKETED_TABLES for c in (*suite_checks(t, "row"), *suite_checks(t, "link"))}
    reason_of["parent_quarantined"] = "parent_quarantined"

    # ---- insured: its link rules (spells do not overlap); valid spells drive coverage and death ----
    # spells in patient and date order, the order they are validated and quarantined in
    insured = _read_staged(staging, "insured", bucket).sort(
        "patient_key", *contract.table("insured").primary_key, "_partition", "_row"
    )
    insured = validate_link(
        add_link_flags(LinkContext(contract.table("insured"), insured)), "insured", bucket, report, staging
    )
    valid_spells = insured.filter(pl.col(FAILED).list.len() == 0)
    _finish_table(insured, "insured", bucket, store, report, reason_of)
    del insured

    # ---- claims: uniqueness, provider, corrections' originals and their link rules (enrolment, death) ----
    parents: dict[str, pl.DataFrame] = {}
    dbc_facts = None
    for table in CLAIM_TABLES:
        frame = _read_staged(staging, table, bucket)
        dups = read_piece(piece_files(staging.duplicates_dir(table)), bucket)
        frame = _flag_duplicates(frame, dups, f"{table}.claim_id.unique")
        frame = add_link_flags(LinkContext(contract.table(table), frame, valid_spells, parents))
        frame = frame.with_columns(
            pl.col("provider_agb").is_in(valid_providers).alias(f"_ok__{table}.provider_agb.references"),
            (
                pl.col("corrects_claim_id").is_null() | pl.col("corrects_claim_id").is_in(frame["claim_id"].implode())
            ).alias(f"_ok__{table}.corrects_claim_id.references"),
            (~in_correction_cycle(frame)).alias(f"_ok__{table}.corrects_claim_id.no_cycle"),
        )
        frame = validate_link(frame, table, bucket, report, staging)
        # corrections whose original was quarantined follow it, through any chain of corrections
        frame = frame.with_columns(
            pl.when(orphaned_corrections(frame))
            .then(pl.lit(["parent_quarantined"]))
            .otherwise(pl.col(FAILED))
            .alias(FAILED)
        )
        parent = parent_rows(frame, table, contract)
        if parent is not None:
            parents[table] = parent
        if table == "dbc":
            dbc_facts = {"valid": frame.filter(pl.col(FAILED).list.len() == 0)["claim_id"]}
        netted = _finish_table(frame, table, bucket, store, report, reason_of)
        if table == "dbc":
            dbc_facts["netted"] = netted.select("claim_id", "effective_claim_id")
        del frame, netted

    # ---- care activities: their subtraject must be valid; their link rules (subtraject dates, unique) ----
    activity = _read_staged(staging, "dbc_activity", bucket)
    activity = activity.with_columns(
        pl.col("claim_id").is_in(dbc_facts["valid"].implode()).alias("_ok__dbc_activity.parent_valid"),
        pl.lit(True).alias("_ok__dbc_activity.claim_id.references"),
    )
    activity = add_link_flags(LinkContext(contract.table("dbc_activity"), activity, valid_spells, parents))
    activity = validate_link(activity, "dbc_activity", bucket, report, staging)
    _finish_table(activity, "dbc_activity", bucket, store, report, reason_of, netted_dbc=dbc_facts["netted"])
    return report


def unrepresentable_amounts(frame: pl.DataFrame) -> tuple[Decimal, int]:
    """The exact euros of the rows' delivered amounts that are not whole cents, and how many
    amounts were not a number (see ``transforms.ingest.normalise``)."""
    if "amount" not in frame.columns or ISSUE not in frame.columns or frame.height == 0:
        return Decimal(0), 0
    texts = (
        frame.filter(pl.col(ISSUE).str.contains("(^|;)inexact_amount:amount(;|$)"))
        .select(pl.col(AS_DELIVERED).str.json_path_match("$.amount"))[AS_DELIVERED]
        .to_list()
    )
    nan = sum(not Decimal(t).is_finite() for t in texts)
    return exact_sum(texts), nan


def _finish_table(
    frame: pl.DataFrame,
    table: str,
    bucket: int,
    store: Path,
    report: BucketReport,
    reason_of: dict[str, str],
    netted_dbc: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Quarantine the failing rows, net the rest, write store / quarantine / corrections files and
    the table's books. Returns the stored (netted) rows."""
    books = TableBooks(rows_in=frame.height, cents_in=_cents(frame))
    books.unrepresentable_in, books.amounts_not_a_number = unrepresentable_amounts(frame)
    bad = frame.filter(pl.col(FAILED).list.len() > 0)
    good = frame.filter(pl.col(FAILED).list.len() == 0)
    books.rows_quarantined = bad.height
    books.cents_quarantined = _cents(bad)
    books.unrepresentable_quarantined = unrepresentable_amounts(bad)[0]
    if bad.height:
        bad = bad.with_columns(primary_reason(pl.col(FAILED), reason_of).alias("reason"))
        report.reasons[table] = dict(bad.group_by("reason").len().iter_rows())
        write_table(bad, table, bucket_dir(store / "quarantine", table, bucket), quarantine=True)
    merged = None
    if table in CLAIM_TABLES:
        good, merged = net_corrections(good)
        books.fully_credited = int(good["fully_credited"].sum())
    elif table == "dbc_activity":
        good, merged = rekey_activities(good, netted_dbc if netted_dbc is not None else _empty_netted())
    if merged is not None and merged.height:
        books.rows_merged = merged.height
        books.cents_merged_lines = _cents(merged)
        _write_merged(merged, table, bucket_dir(store / "corrections", table, bucket))
    books.rows_stored = good.height
    books.cents_stored = _cents(good)
    write_table(
        good.sort("patient_key", ORDER_DATE[table], "claim_id" if "claim_id" in good.columns else "enrolled_from"),
        table,
        bucket_dir(store, table, bucket),
    )
    report.books[table] = books
    return good


def validate_link(frame: pl.DataFrame, table: str, bucket: int, report: BucketReport, staging: Staging) -> pl.DataFrame:
    """Decide the table's link-stage checks on ``frame`` (their ``_ok__`` flags computed; a derived
    flag not computed passes): count the failures in ``report``, append each failing row's check ids
    to its failed list, write the verdicts for Great Expectations
    (``transforms.ingest.validation_stage``); the flags are dropped. Shared by the bucket stage and
    the small tables of ``transforms.ingest.run`` (``bucket`` -1)."""
    checks = suite_checks(table, "link")
    missing = [c.flag for c in checks if c.kind == "derived" and c.flag not in frame.columns]
    if missing:
        frame = frame.with_columns([pl.lit(True).alias(m) for m in missing])
    # rows come from many partitions, so they are known here by their bucket row number ``_i``
    renamed = frame.with_columns(pl.col("_i").cast(pl.Int64).alias("_row_i"))
    failing = failing_rows(renamed, checks, index="_row_i")
    failed = {check: rows for check, rows in failing.items() if len(rows)}
    if checks and frame.height:
        batch = (table, "link", f"bucket-{bucket:04d}" if bucket >= 0 else "all")
        report.verdicts.append(record_verdicts(renamed, checks, batch, staging.verdicts(*batch), failed, "_row_i"))
    for check, rows in failed.items():
        report.failed[check] += len(rows)
    pairs = [
        pl.DataFrame({"_row_i": rows, "_check": [check] * len(rows)}, schema={"_row_i": pl.Int64, "_check": pl.String})
        for check, rows in failed.items()
    ]
    if pairs:
        lists = pl.concat(pairs).group_by("_row_i").agg(pl.col("_check").sort().alias("_new"))
        # only the failing rows (few) get a longer list: appending an empty list to every other row
        # would rebuild the bucket's whole list column, some 15 times the cost of these two joins
        extended = (
            renamed.select("_row_i", FAILED)
            .join(lists, on="_row_i", how="inner")
            .select("_row_i", pl.concat_list(FAILED, "_new").alias("_new"))
        )
        renamed = renamed.join(extended, on="_row_i", how="left", maintain_order="left")
        renamed = renamed.with_columns(pl.coalesce("_new", FAILED).alias(FAILED)).drop("_new")
    return renamed.drop("_row_i", *[c for c in renamed.columns if c.startswith("_ok__")])


def _cents(frame: pl.DataFrame) -> int:
    return int(frame["amount"].fill_null(0).sum()) if "amount" in frame.columns and frame.height else 0


def _empty_staged(table: str) -> pl.DataFrame:
    spec = load_contract().table(table)
    schema = {c.name: (pl.Int64 if c.type == "money" else c.polars_type) for c in spec.columns}
    schema.update(
        {
            "_row": pl.Int64,
            ISSUE: pl.String,
            AS_DELIVERED: pl.String,
            FAILED: pl.List(pl.String),
            "_partition": pl.Int32,
            "patient_key": pl.Int64,
        }
    )
    return pl.DataFrame(schema=schema)


def _empty_netted() -> pl.DataFrame:
    return pl.DataFrame(schema={"claim_id": pl.String, "effective_claim_id": pl.String})


def store_schema(table: str, *, quarantine: bool = False) -> pa.Schema:
    """Arrow schema of a store (or quarantine) file: the contract's columns, then zorgpad's."""
    spec = load_contract().table(table)
    fields = [pa.field(c.name, c.arrow_type, nullable=c.nullable or quarantine) for c in spec.columns]
    if table in BUCKETED_TABLES:
        fields.append(pa.field("patient_key", pa.int64()))
    if table in CLAIM_TABLES and not quarantine:
        fields += [pa.field(name, t) for name, t in STORE_EXTRA["claims"]]
    if quarantine:
        fields += [
            pa.field("reason", pa.string()),
            pa.field("checks", pa.list_(pa.string())),
            pa.field("source_partition", pa.int32()),
            pa.field("source_row", pa.int64()),
            pa.field("as_delivered", pa.string()),
        ]
    from transforms.runtime import code_version

    return pa.schema(
        fields,
        metadata={
            "zorgpad.table": table,
            "zorgpad.contract_version": load_contract().version,
            "zorgpad.code_version": code_version(),
        },
    )


def quarantine_view(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Quarantined rows as they are written: a value passing the BSN eleven-test is masked in every
    text column (a rejected row is where a BSN delivered by mistake ends up; the row stays
    traceable by ``source_partition`` and ``source_row``), an amount that could not be converted
    is null (what was delivered is in ``as_delivered``, as text), and the bookkeeping columns get
    their published names."""
    spec = load_contract().table(table)
    changes = [masked_bsn(c.name) for c in spec.columns if c.type == "string" and c.name in frame.columns]
    if ISSUE in frame.columns:
        changes += [
            pl.when(pl.col(ISSUE).str.contains(f"(^|;)inexact_amount:{c}(;|$)").fill_null(False))
            .then(None)
            .otherwise(pl.col(c))
            .alias(c)
            for c in spec.money_columns
            if c in frame.columns
        ]
    frame = frame.with_columns(changes) if changes else frame
    return frame.rename(
        {
            FAILED: "checks",
            "_partition": "source_partition",
            "_row": "source_row",
            **({AS_DELIVERED: "as_delivered"} if AS_DELIVERED in frame.columns else {}),
        }
    )


def write_table(frame: pl.DataFrame, table: str, folder: Path, *, quarantine: bool = False) -> None:
    """Write ``frame`` as the store (or quarantine) file of ``table`` in ``folder``, with the
    contract's Arrow schema (:func:`store_schema`; money as decimals). Shared by the bucket stage and
    the small tables and orphans of ``transforms.ingest.run``."""
    schema = store_schema(table, quarantine=quarantine)
    if quarantine:
        frame = quarantine_view(frame, table)
    arrays = []
    for fld in schema:
        if fld.name not in frame.columns:
            arrays.append(pa.nulls(frame.height, fld.type))
        elif pa.types.is_decimal(fld.type):
            series = frame[fld.name]
            arrays.append(cents_to_decimal(series.fill_null(0).to_numpy(), series.is_null().to_numpy()))
        else:
            arrays.append(frame[fld.name].to_arrow().cast(fld.type))
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_arrays(arrays, schema=schema),
        folder / "part-0.parquet",
        compression="zstd",
        use_dictionary=[f.name for f in schema if f.name not in identifier_columns(table)],
    )


def identifier_columns(table: str) -> set[str]:
    """Pseudonyms, unique claim ids and the ids referring to them (and the keys zorgpad derives
    from them): about one value per row or patient, so Parquet dictionary pages only cost time and
    space there (the dictionary fills up and the writer falls back to plain encoding). Provider
    codes, though unique in their small table, repeat on thousands of claims and keep theirs."""
    contract = load_contract()
    unique = {f"{t}.{c.name}" for t in BUCKETED_TABLES for c in contract.table(t).columns if c.unique}
    spec = contract.table(table)
    names = {c.name for c in spec.columns if c.pseudonym or c.unique or c.references in unique}
    return names | ({"patient_key", "effective_claim_id"} if table in BUCKETED_TABLES else set())


def _write_merged(merged: pl.DataFrame, table: str, folder: Path) -> None:
    out = merged.with_columns(pl.col("amount").fill_null(0)) if "amount" in merged.columns else merged
    arrays = {name: out[name].to_arrow() for name in out.columns if name != "amount"}
    if "amount" in out.columns:
        arrays["amount"] = cents_to_decimal(out["amount"].to_numpy())
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), folder / "part-0.parquet", compression="zstd")

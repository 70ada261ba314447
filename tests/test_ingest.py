"""``zorgpad ingest``: exact quarantine of injected faults, netting to the cent, balanced books,
identical results on a Dask cluster and in one process, and clear errors for broken deliveries."""

from __future__ import annotations

import hashlib
import json
import shutil
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from data_docs_check import assert_data_docs_browsable
from flows.dask_cluster import dask_cluster, dask_mapper
from transforms.ingest.delivery import DeliveryError
from transforms.ingest.id_stage import later_copies, later_copies_in
from transforms.ingest.keys import fnv1a64
from transforms.ingest.netting import net_corrections
from transforms.ingest.pieces import read_piece, write_pieces
from transforms.ingest.run import ingest
from transforms.money import delivered_cents
from transforms.synth import FaultRates, SynthConfig, generate_delivery, truth_dir

# integration: a generated delivery ingested on a Dask cluster and through a Prefect flow
pytestmark = pytest.mark.integration

CLAIM_TABLES = ("dbc", "gp", "pharmacy", "paramedical", "maternity")
#: the reason code each injected fault must get (a truncated ATC code is also a format error)
EXPECTED_REASON = {
    "duplicate": {"duplicate_claim_id"},
    "invalid_code": {"code_not_valid_on_date", "bad_format", "invalid_value"},  # maternity: a value set
    "outside_enrolment": {"outside_enrolment"},
    "unknown_provider": {"unknown_provider"},
    "bsn_in_id": {"bsn_like_id"},
}
RATES = FaultRates(
    credit=0.02, duplicate=0.004, invalid_code=0.003, outside_enrolment=0.003, unknown_provider=0.002, bsn_in_id=0.001
)


@pytest.fixture(scope="session")
def faulty_delivery(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ingest") / "faulty"
    generate_delivery(SynthConfig(patients=3_000, seed=21, faults=RATES, block_size=1_000), out)
    return out


@pytest.fixture(scope="session")
def local_store(faulty_delivery, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("ingest") / "store-local"
    ingest(faulty_delivery, store, n_buckets=4)
    return store


@pytest.fixture(scope="session")
def dask_store(faulty_delivery, tmp_path_factory) -> Path:
    """The same delivery ingested on a real Dask distributed cluster of three worker processes, which
    are recycled after every 4 tasks each (so a step's tasks run on several generations of workers)."""
    store = tmp_path_factory.mktemp("ingest") / "store-dask"
    with dask_cluster(workers=3) as address:
        ingest(faulty_delivery, store, n_buckets=4, mapper=dask_mapper(address, recycle_after=4))
    return store


def read(store: Path, table: str, quarantine: bool = False) -> pl.DataFrame:
    root = store / "quarantine" / table if quarantine else store / table
    files = sorted(root.rglob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed") if files else pl.DataFrame()


# --------------------------------------------------------------------------------- quarantine
def test_exactly_the_injected_faulty_rows_are_quarantined_with_the_right_reason(faulty_delivery, local_store):
    faults = pl.read_parquet(truth_dir(faulty_delivery) / "faults" / "*.parquet")
    for table in CLAIM_TABLES:
        expected = faults.filter(pl.col("table") == table).select("claim_id", "fault")
        got = read(local_store, table, quarantine=True)
        got = (
            got.select("claim_id", "reason")
            if got.height
            else pl.DataFrame(schema={"claim_id": pl.String, "reason": pl.String})
        )
        assert got.height == expected.height, f"{table}: {got.height} quarantined, {expected.height} injected"
        joined = expected.join(got, on="claim_id", how="full", coalesce=True)
        assert joined["fault"].null_count() == 0, f"{table}: quarantined rows that were not injected"
        assert joined["reason"].null_count() == 0, f"{table}: injected rows that were not quarantined"
        for fault, reason in joined.select("fault", "reason").iter_rows():
            assert reason in EXPECTED_REASON[fault], (table, fault, reason)
    # care activities: the injected invalid codes, and the activities of quarantined subtrajecten
    activity = read(local_store, "dbc_activity", quarantine=True)
    injected = faults.filter(pl.col("table") == "dbc_activity")
    assert activity.filter(pl.col("reason") == "code_not_valid_on_date").height == injected.height
    bad_dbc = set(read(local_store, "dbc", quarantine=True)["claim_id"].to_list())
    parents = activity.filter(pl.col("reason") == "parent_quarantined")["claim_id"].unique().to_list()
    assert set(parents) <= bad_dbc and parents


def test_a_clean_delivery_quarantines_nothing(tmp_path):
    delivery = tmp_path / "clean"
    generate_delivery(SynthConfig(patients=800, seed=2, clean=True), delivery)
    result = ingest(delivery, tmp_path / "store", n_buckets=2, data_docs=False)
    assert sum(result.quarantined.values()) == 0, result.manifest["quarantine"]
    assert result.manifest["balanced"]
    assert all(b["rows_merged"] == 0 for b in result.manifest["books"].values())


# ----------------------------------------------------------------------------- books and netting
def test_books_balance_rows_and_euros_for_every_table(faulty_delivery, local_store):
    manifest = json.loads((local_store / "manifest.json").read_text())
    assert manifest["balanced"]
    for b in manifest["books"].values():
        assert b["rows_in"] == b["rows_in_delivery"] == b["rows_stored"] + b["rows_quarantined"] + b["rows_merged"]
    # euros in, from the delivery itself, with an independent reader
    for table in CLAIM_TABLES:
        delivered = pl.read_parquet(faulty_delivery / table / "*.parquet")["amount"].sum()
        stored = read(local_store, table)["amount"].sum()
        quarantined = read(local_store, table, quarantine=True)["amount"].sum() or Decimal(0)
        assert Decimal(delivered) == Decimal(stored) + Decimal(quarantined), table
        assert Decimal(str(manifest["books"][table]["euros_in"])) == Decimal(delivered)


def test_corrections_are_netted_to_the_cent(faulty_delivery, local_store):
    corrections = pl.read_parquet(truth_dir(faulty_delivery) / "corrections" / "*.parquet")
    assert corrections.height > 50
    for table in CLAIM_TABLES:
        expected = corrections.filter(pl.col("table") == table)
        if expected.height == 0:
            continue
        stored = read(local_store, table).select(
            "claim_id",
            (pl.col("amount") * 100).cast(pl.Int64).alias("net"),
            "n_corrections",
            "fully_credited",
            "effective_claim_id",
        )
        joined = expected.join(stored, left_on="original_claim_id", right_on="claim_id", how="left")
        assert joined["net"].null_count() == 0, f"{table}: corrected claims missing from the store"
        assert (joined["net"] == joined["net_cents"]).all(), table
        credited_only = joined.filter(
            pl.col("credit_claim_id").is_not_null() & pl.col("redeclaration_claim_id").is_null()
        )
        assert credited_only["fully_credited"].all()
        redeclared = joined.filter(pl.col("redeclaration_claim_id").is_not_null())
        assert (redeclared["effective_claim_id"] == redeclared["redeclaration_claim_id"]).all()
        # no credit or re-declaration line is left as a line of its own
        assert read(local_store, table)["claim_id"].str.contains(r"-[CR]$").sum() == 0


def test_netting_hand_computed_cases():
    lines = pl.DataFrame(
        {
            "claim_id": ["A", "A-C", "A-R", "B", "B-C", "C"],
            "corrects_claim_id": [None, "A", "A", None, "B", None],
            "amount": [10_000, -10_000, 9_500, 2_500, -2_500, 700],
            "declared_on": [1, 5, 6, 1, 3, 1],
            "specialism_cd": ["0305", "0305", "0306", "0301", "0301", "0320"],
        }
    )
    netted, merged = net_corrections(lines)
    by_id = {r["claim_id"]: r for r in netted.to_dicts()}
    assert set(by_id) == {"A", "B", "C"}
    assert by_id["A"]["amount"] == 9_500 and by_id["A"]["specialism_cd"] == "0306"  # re-declared attributes
    assert by_id["A"]["n_corrections"] == 2 and not by_id["A"]["fully_credited"]
    assert by_id["B"]["amount"] == 0 and by_id["B"]["fully_credited"]
    assert by_id["C"]["amount"] == 700 and by_id["C"]["n_corrections"] == 0
    assert sorted(merged["claim_id"].to_list()) == ["A", "A-C", "B-C"]
    assert netted["amount"].sum() + 0 == lines["amount"].sum()  # money conserved


def test_later_copies_of_an_id_part_read_from_piece_files_equal_later_copies_of_its_ids(tmp_path):
    """Each partition writes its claim ids as a piece per id-part; the two-pass reading of an
    id-part's pieces (hashes first, then candidate rows) finds exactly the duplicates that checking
    its ids in memory finds, within and across files."""
    rng = np.random.default_rng(3)
    ids = pl.DataFrame(
        {
            "claim_id": [f"C{v:06d}" for v in rng.integers(0, 40_000, 60_000)],
            "patient_key": rng.integers(0, 1_000, 60_000),
            "bucket": rng.integers(0, 4, 60_000).astype(np.int32),
            "_partition": np.repeat(np.arange(6, dtype=np.int32), 10_000),
            "_row": np.tile(np.arange(10_000, dtype=np.int64), 6),
        }
    ).with_columns((pl.col("claim_id").str.slice(-1).cast(pl.Int32) % 3).alias("_part"))
    for (partition,), rows in ids.partition_by("_partition", as_dict=True, maintain_order=True).items():
        write_pieces(rows, "_part", tmp_path / f"p{partition}.arrow")
    files = sorted(tmp_path.glob("*.arrow"))
    for part in range(3):
        own = ids.filter(pl.col("_part") == part).drop("_part")
        expected = later_copies(own)
        assert expected.height > 2_000  # many repeats, within and across files
        assert read_piece(files, part).equals(own)
        assert later_copies_in(files, part).equals(expected)
    assert read_piece(files, 3) is None and later_copies_in(files, 3) is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(["original", "credit", "redeclaration"]),
            st.integers(-5_000, 5_000),
            st.integers(1, 9),
        ),
        max_size=30,
    )
)
def test_netting_fast_path_equals_netting_every_line_as_a_group(rows):
    """Uncorrected claims skip the sort; the result equals running the group logic on every line."""
    from transforms.ingest.netting import net_groups

    claim_ids, corrects, amounts, declared = [], [], [], []
    for i, (root, kind, amount, day) in enumerate(rows):
        claim_ids.append(f"K{root}" if kind == "original" else f"K{root}-{i}")
        corrects.append(None if kind == "original" else f"K{root}")
        amounts.append(abs(amount) if kind != "credit" else -abs(amount) or -1)
        declared.append(day)
    lines = pl.DataFrame(
        {
            "claim_id": claim_ids,
            "corrects_claim_id": corrects,
            "amount": amounts,
            "declared_on": declared,
            "patient_key": [7] * len(rows),
        },
        schema={
            "claim_id": pl.String,
            "corrects_claim_id": pl.String,
            "amount": pl.Int64,
            "declared_on": pl.Int32,
            "patient_key": pl.Int64,
        },
    )
    lines = lines.unique("claim_id", keep="first", maintain_order=True)  # claim ids are unique by then
    fast, fast_merged = net_corrections(lines)
    slow, slow_merged = net_groups(lines)
    assert fast.sort("claim_id").equals(slow.sort("claim_id"))
    assert fast_merged.sort("claim_id").equals(slow_merged.sort("claim_id"))
    assert fast["amount"].sum() == lines["amount"].sum()


# --------------------------------------------------------------------------------- store layout
def test_store_is_bucketed_by_patient_and_ordered_by_patient_and_date(local_store):
    buckets_of_patient: dict[str, set[str]] = {}
    for table in ("insured", "dbc", "gp", "pharmacy"):
        for f in sorted((local_store / table).glob("bucket=*/*.parquet")):
            df = pl.read_parquet(f)
            bucket = f.parent.name
            for pid in df["patient_id"].unique().to_list():
                buckets_of_patient.setdefault(pid, set()).add(bucket)
            date_col = {"insured": "enrolled_from", "dbc": "start_date"}.get(table, "service_date")
            assert df.select("patient_key", date_col).equals(
                df.select("patient_key", date_col).sort("patient_key", date_col)
            )
    assert all(len(b) == 1 for b in buckets_of_patient.values()), "a patient is split over buckets"


def test_dask_cluster_and_single_process_give_identical_stores(local_store, dask_store):
    def digest(store: Path) -> dict[str, str]:
        return {
            str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*.parquet"))
            if "validation" not in p.parts
        }

    a, b = digest(local_store), digest(dask_store)
    assert len(a) > 20 and a == b


def test_manifest_and_validation_outputs(faulty_delivery, local_store):
    manifest = json.loads((local_store / "manifest.json").read_text())
    assert manifest["delivery_id"] == json.loads((faulty_delivery / "delivery.json").read_text())["delivery_id"]
    dbc_inputs = manifest["inputs"]["dbc"]
    assert len(dbc_inputs) == 3
    first = faulty_delivery / dbc_inputs[0]["path"]
    assert dbc_inputs[0]["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert manifest["code_version"] and manifest["contract_version"]
    assert (local_store / manifest["validation"]["data_docs"]).exists()
    summary = json.loads((local_store / "validation" / "summary.json").read_text())
    checks = {c["check"]: c for c in summary["tables"]["dbc"]["checks"]}
    assert checks["dbc.claim_id.unique"]["failed_rows"] == manifest["quarantine"]["dbc"]["duplicate_claim_id"]
    html = (local_store / manifest["validation"]["data_docs"]).read_text()
    assert "dbc.row" in html and "dbc.link" in html
    assert_data_docs_browsable(local_store / manifest["validation"]["data_docs"], min_pages=10)
    # one folded result per suite (table x row/link stage), not a page per partition and bucket
    pages = list((local_store / manifest["validation"]["data_docs"]).parent.joinpath("validations").rglob("*.html"))
    assert len(manifest["books"]) < len(pages) <= 2 * len(manifest["books"])


# ---------------------------------------------------------------------------------- normalising
def test_money_converts_exactly_to_cents():
    cents, null, problem = delivered_cents(pa.array([12.34, -0.1, 1e-3, None, float("nan"), 123456789.99]))
    assert cents.tolist()[:2] == [1234, -10] and cents[5] == 12345678999
    assert problem.tolist() == [False, False, True, False, True, False]
    assert null.tolist() == [False, False, False, True, False, False]
    dec = pa.array([Decimal("1.005"), Decimal("2.010"), Decimal("-3.100")], pa.decimal128(10, 3))
    cents, _, problem = delivered_cents(dec)
    assert cents.tolist()[1:] == [201, -310] and problem.tolist() == [True, False, False]


def test_patient_key_is_the_published_fnv1a_hash():
    assert fnv1a64(pa.array(["", "a", "foobar"])).tolist() == [
        0xCBF29CE484222325,
        0xAF63DC4C8601EC8C,
        0x85944171F73967E8,
    ]


# ----------------------------------------------------------------------------- broken deliveries
def _copy(delivery: Path, tmp_path: Path) -> Path:
    target = tmp_path / "broken"
    shutil.copytree(delivery, target)
    return target


def _rewrite(path: Path, change) -> None:
    table = pq.read_table(path)
    pq.write_table(change(table), path)


BROKEN = {
    "missing table": (lambda d: shutil.rmtree(d / "pharmacy"), "table pharmacy is missing"),
    "truncated file": (
        lambda d: (d / "dbc" / "part-00000.parquet").write_bytes(
            (d / "dbc" / "part-00000.parquet").read_bytes()[:5000]
        ),
        "not a readable parquet file",
    ),
    "renamed column": (
        lambda d: _rewrite(
            d / "gp" / "part-00001.parquet",
            lambda t: t.rename_columns(["claimid" if c == "claim_id" else c for c in t.column_names]),
        ),
        "column 'claim_id' is missing",
    ),
    "retyped column": (
        lambda d: _rewrite(
            d / "dbc" / "part-00002.parquet",
            lambda t: t.set_column(t.column_names.index("amount"), "amount", t.column("amount").cast(pa.string())),
        ),
        "column 'amount' has type string",
    ),
    "empty table": (
        lambda d: [(_rewrite(f, lambda t: t.slice(0, 0))) for f in (d / "maternity").glob("*.parquet")],
        "table maternity is empty",
    ),
    "missing delivery.json": (lambda d: (d / "delivery.json").unlink(), "delivery.json is missing"),
    "delivery.json contradicts the data": (
        lambda d: (d / "delivery.json").write_text(
            json.dumps(
                {
                    **json.loads((d / "delivery.json").read_text()),
                    "data_as_of": "2022-12-31",
                    "last_year": 2022,
                    "first_year": 2015,
                }
            ).replace('"2022-12-31"', '"2019-06-30"')
        ),
        "data_as_of",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_deliveries_give_one_clear_error_and_no_store(faulty_delivery, tmp_path, case):
    from flows import ingest_command  # noqa: F401  (registers the command)

    breaker, message = BROKEN[case]
    broken = _copy(faulty_delivery, tmp_path)
    breaker(broken)
    with pytest.raises(DeliveryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest(broken, tmp_path / "store", n_buckets=2, data_docs=False)
    assert not (tmp_path / "store").exists()
    assert not list(tmp_path.glob("store*")), "a failed run left files (a work folder, a lock) behind"


def test_a_check_failing_on_too_many_rows_stops_the_run(faulty_delivery, tmp_path):
    broken = _copy(faulty_delivery, tmp_path)
    path = broken / "gp" / "part-00000.parquet"
    table = pq.read_table(path)
    codes = np.array(table.column("service_cd").to_pylist(), dtype=object)
    codes[: len(codes) // 3] = "99999"
    _rewrite(
        path, lambda t: t.set_column(t.column_names.index("service_cd"), "service_cd", pa.array(codes, pa.string()))
    )
    with pytest.raises(DeliveryError) as error:
        ingest(broken, tmp_path / "store", n_buckets=2, data_docs=False)
    assert error.value.table == "gp" and "gp.service_cd.code_valid" in str(error.value)
    assert "examples" in str(error.value)
    assert not (tmp_path / "store").exists()


def test_cli_reports_a_broken_delivery_without_a_traceback(faulty_delivery, tmp_path):
    from flows import ingest_command  # noqa: F401
    from flows.cli import UserError, app

    broken = _copy(faulty_delivery, tmp_path)
    shutil.rmtree(broken / "providers")
    result = CliRunner().invoke(app, ["ingest", str(broken), "--store", str(tmp_path / "s"), "--workers", "1"])
    assert isinstance(result.exception, UserError)
    assert "table providers is missing" in str(result.exception)


def test_prefect_flow_runs_on_a_real_api_and_dask(faulty_delivery, tmp_path):
    """The Prefect flow against the ephemeral Prefect API, on a two-worker local Dask cluster."""
    from flows.ingest_flow import ingest_flow

    manifest = ingest_flow(str(faulty_delivery), str(tmp_path / "store"), buckets=2, workers=2, data_docs=False)
    assert manifest["balanced"] and (tmp_path / "store" / "manifest.json").exists()
    assert manifest["quarantine"]["dbc"]["duplicate_claim_id"] > 0


def test_relative_paths_work(faulty_delivery, tmp_path, monkeypatch):
    """A user typing relative paths (``zorgpad ingest delivery --store store``) gets a store too."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(faulty_delivery, tmp_path / "delivery")
    result = ingest(Path("delivery"), Path("store"), n_buckets=2)
    assert (tmp_path / "store" / "manifest.json").exists() and result.manifest["balanced"]
    assert (tmp_path / "store" / result.manifest["validation"]["data_docs"]).exists()


# ---------------------------------------------------------------------------------- uniqueness
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["A1", "A2", "B-7", "", "ééé", "A1 "]), st.integers(0, 3)), min_size=0, max_size=40
    )
)
def test_later_copies_are_every_copy_after_the_first_delivered(rows):
    """The hashed uniqueness check marks exactly what sorting all ids would: every line of a claim
    id except its first by (partition, row)."""
    ids = pl.DataFrame(
        {
            "claim_id": [c for c, _ in rows],
            "_partition": [p for _, p in rows],
            "_row": list(range(len(rows))),
            "bucket": [0] * len(rows),
        },
        schema={"claim_id": pl.String, "_partition": pl.Int32, "_row": pl.Int64, "bucket": pl.Int32},
    )
    first: dict[str, tuple[int, int]] = {}
    for claim, partition, row in sorted(
        zip(ids["claim_id"], ids["_partition"], ids["_row"]), key=lambda r: (r[1], r[2])
    ):
        first.setdefault(claim, (partition, row))
    expected = sorted((p, r) for c, p, r in zip(ids["claim_id"], ids["_partition"], ids["_row"]) if first[c] != (p, r))
    got = later_copies(ids)
    assert list(zip(got["_partition"], got["_row"])) == expected

"""Bad input that could lose money, double-count it or echo a BSN, each on a hand-written delivery
with a hand-computed outcome: what counts as the delivery, duplicate care activities, amounts as
delivered, uncorrected credits, chains and cycles of corrections, duplicate providers, text that is
not UTF-8, the years of ``delivery.json``, BSN masking and empty keys."""

from __future__ import annotations

import hashlib
import json
import shutil
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiny_delivery import HOSPITAL, TinyDelivery
from transforms.ingest.checks import BSN_MASK, is_bsn_like
from transforms.ingest.delivery import DeliveryError
from transforms.ingest.run import ingest

BSN = "123456782"  # nine digits passing the eleven-test
assert is_bsn_like(BSN)


def base(root: Path, **meta) -> TinyDelivery:
    """Two patients with a hip subtraject and some GP care, all valid."""
    delivery = TinyDelivery(root, **meta)
    for pid in ("P1", "P2"):
        delivery.patient(pid, spells=[("2015-01-01", None)])
        delivery.gp(f"G-{pid}-1", pid, "2016-02-01")
        delivery.gp(f"G-{pid}-2", pid, "2017-05-03", amount=21.25)
    delivery.dbc(
        "D1",
        "P1",
        "0305",
        "1701",
        "2016-03-01",
        "2016-03-20",
        9000.00,
        activities=[("190305", "2016-03-05", 1), ("190218", "2016-03-05", 3)],
    )
    delivery.pharmacy("F1", "P1", "2016-04-01", "A10BA02")
    delivery.physio("PH1", "P1", "2016-04-02")
    delivery.maternity("M1", "P2", "2016-05-01", "prenatal")
    return delivery


def read(store: Path, table: str, quarantine: bool = False) -> pl.DataFrame:
    root = store / "quarantine" / table if quarantine else store / table
    files = sorted(root.rglob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed") if files else pl.DataFrame()


def run(root: Path, tmp_path: Path, **kw):
    """Ingest a hand-written delivery; its few rows make any finding more than 5% of a table, so
    the critical share is 100% unless a test says otherwise."""
    return ingest(
        root,
        tmp_path / "store",
        n_buckets=kw.pop("n_buckets", 2),
        data_docs=kw.pop("data_docs", False),
        critical_share=kw.pop("critical_share", 1.0),
        **kw,
    )


def reasons(store: Path, table: str) -> dict[str, str]:
    q = read(store, table, quarantine=True)
    return dict(zip(q["claim_id"], q["reason"])) if q.height else {}


# ------------------------------------------------------------------ what counts as the delivery
def test_a_stale_copy_in_a_sub_folder_is_refused_not_read(tmp_path):
    root = base(tmp_path / "d").write()
    (root / "gp" / "old").mkdir()
    shutil.copy(root / "gp" / "part-0.parquet", root / "gp" / "old" / "part-0.parquet")
    with pytest.raises(DeliveryError, match=r"gp/old/part-0.parquet is in a sub-folder that is not a partition folder"):
        run(root, tmp_path)
    assert not (tmp_path / "store").exists()


def test_hive_partition_folders_are_read_and_other_files_ignored_and_reported(tmp_path):
    root = base(tmp_path / "d").write()
    (root / "gp" / "year=2016").mkdir()
    shutil.move(root / "gp" / "part-0.parquet", root / "gp" / "year=2016" / "part-0.parquet")
    (root / "gp" / "README.txt").write_text("notes")
    (root / "gp" / "_SUCCESS").write_text("")
    (root / "notes.md").write_text("x")
    result = run(root, tmp_path)
    assert result.manifest["books"]["gp"]["rows_in"] == 4 and result.manifest["balanced"]
    assert result.manifest["ignored_files"] == {
        "gp/README.txt": "not a .parquet file",
        "gp/_SUCCESS": "hidden file or folder",
        "notes.md": "not in a table folder",
    }


def _listed(root: Path) -> list[dict]:
    return [
        {
            "path": p.relative_to(root).as_posix(),
            "bytes": p.stat().st_size,
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        }
        for p in sorted(root.rglob("*.parquet"))
    ]


def test_the_file_list_of_delivery_json_is_what_is_read_and_checked(tmp_path):
    root = base(tmp_path / "d").write()
    meta = json.loads((root / "delivery.json").read_text())
    files = _listed(root)
    shutil.copy(root / "gp" / "part-0.parquet", root / "gp" / "part-9-stale.parquet")
    (root / "delivery.json").write_text(json.dumps({**meta, "files": files}))
    result = run(root, tmp_path)
    assert result.manifest["file_list_checked"] and result.manifest["books"]["gp"]["rows_in"] == 4
    assert result.manifest["ignored_files"] == {"gp/part-9-stale.parquet": "not listed in delivery.json"}
    assert not reasons(tmp_path / "store", "gp"), "the stale copy was not read, so nothing is a duplicate"

    wrong = [dict(f, sha256="0" * 64) if f["path"] == "dbc/part-0.parquet" else f for f in files]
    (root / "delivery.json").write_text(json.dumps({**meta, "files": wrong}))
    with pytest.raises(DeliveryError, match=r"the SHA-256 of dbc/part-0.parquet is .* delivery.json says 0000"):
        run(root, tmp_path / "again")
    short = [dict(f, bytes=f["bytes"] + 1) if f["path"] == "gp/part-0.parquet" else f for f in files]
    (root / "delivery.json").write_text(json.dumps({**meta, "files": short}))
    with pytest.raises(DeliveryError, match=r"gp/part-0.parquet has .* bytes, delivery.json says"):
        run(root, tmp_path / "again")
    missing = [*files, {"path": "gp/part-1.parquet"}]
    (root / "delivery.json").write_text(json.dumps({**meta, "files": missing}))
    with pytest.raises(DeliveryError, match=r"delivery.json lists gp/part-1.parquet, which is not in the delivery"):
        run(root, tmp_path / "again")


# ------------------------------------------------------------------ money: duplicates, as delivered
def test_a_care_activity_file_delivered_twice_is_counted_once(tmp_path):
    root = base(tmp_path / "d").write()
    shutil.copy(root / "dbc_activity" / "part-0.parquet", root / "dbc_activity" / "part-1.parquet")
    result = run(root, tmp_path)
    store = tmp_path / "store"
    stored = read(store, "dbc_activity")
    assert sorted(zip(stored["activity_cd"], stored["quantity"])) == [("190218", 3), ("190305", 1)]
    quarantined = read(store, "dbc_activity", quarantine=True)
    assert quarantined["reason"].to_list() == ["duplicate_key", "duplicate_key"]
    assert set(quarantined["source_partition"].to_list()) == {1}, "the later file's copies are the duplicates"
    assert result.manifest["balanced"]
    assert result.manifest["identical_files"] == [["dbc_activity/part-0.parquet", "dbc_activity/part-1.parquet"]]


def _float_amounts(path: Path, amounts: list[float]) -> None:
    table = pq.read_table(path)
    pq.write_table(
        table.set_column(table.column_names.index("amount"), "amount", pa.array(amounts, pa.float64())), path
    )


def test_amounts_that_are_not_whole_cents_are_quarantined_and_counted_as_delivered(tmp_path):
    delivery = base(tmp_path / "d")
    for claim in ("G-X-1", "G-X-2", "G-X-3"):
        delivery.gp(claim, "P1", "2018-01-10")
    root = delivery.write()
    _float_amounts(root / "gp" / "part-0.parquet", [9.5, 21.25, 9.5, 21.25, 0.123, 1e12, float("nan")])
    result = run(root, tmp_path)
    q = read(tmp_path / "store", "gp", quarantine=True).sort("claim_id")
    assert q["claim_id"].to_list() == ["G-X-1", "G-X-2", "G-X-3"]
    assert q["reason"].to_list() == ["inexact_value"] * 3
    assert q["amount"].null_count() == 3, "no converted value is shown for an amount that could not be converted"
    assert [json.loads(t)["amount"] for t in q["as_delivered"]] == ["0.123", "1000000000000.0", "nan"]
    books = result.manifest["books"]["gp"]
    delivered = Decimal("9.5") * 2 + Decimal("21.25") * 2 + Decimal("0.123") + Decimal("1000000000000.0")
    assert Decimal(books["euros_in_exact"]) == delivered == Decimal(books["euros_delivered_exact"])
    assert Decimal(books["euros_quarantined_exact"]) == Decimal("1000000000000.123")
    assert books["amounts_not_a_number"] == 1 and books["balanced"] and result.manifest["balanced"]


def test_a_negative_amount_without_the_claim_it_corrects_is_quarantined(tmp_path):
    delivery = base(tmp_path / "d")
    delivery.gp("G-NEG", "P1", "2018-01-10", amount=-9.5)
    result = run(delivery.write(), tmp_path)
    assert reasons(tmp_path / "store", "gp") == {"G-NEG": "credit_without_original"}
    assert "G-NEG" not in read(tmp_path / "store", "gp")["claim_id"].to_list() and result.manifest["balanced"]


# ------------------------------------------------------------------ chains and cycles of corrections
def test_a_credit_of_a_redeclaration_nets_the_whole_chain(tmp_path):
    delivery = base(tmp_path / "d")
    delivery.gp("A", "P1", "2018-01-10", amount=40.0)
    delivery.gp("A-C", "P1", "2018-01-10", amount=-40.0, corrects="A")
    delivery.gp("A-R", "P1", "2018-01-10", amount=35.0, corrects="A")
    delivery.gp("R-C", "P1", "2018-01-10", amount=-35.0, corrects="A-R")
    result = run(delivery.write(), tmp_path)
    stored = read(tmp_path / "store", "gp").filter(pl.col("claim_id").is_in(["A", "A-C", "A-R", "R-C"]))
    assert stored.height == 1
    line = stored.row(0, named=True)
    assert line["claim_id"] == "A" and line["amount"] == 0 and line["fully_credited"] and line["n_corrections"] == 3
    merged = read(tmp_path / "store" / "corrections", "gp")
    # every link withdrawn: the latest re-declaration's attributes are kept, the rest is merged
    assert line["effective_claim_id"] == "A-R"
    assert sorted(merged["claim_id"].to_list()) == ["A", "A-C", "R-C"] and set(merged["root_claim_id"]) == {"A"}
    assert result.manifest["books"]["gp"]["fully_credited"] == 1 and result.manifest["balanced"]


def test_a_chain_follows_its_quarantined_original_and_a_cycle_is_quarantined(tmp_path):
    delivery = base(tmp_path / "d")
    delivery.gp("B", "P1", "2014-06-01", amount=40.0)  # before the spell: outside enrolment
    delivery.gp("B-R", "P1", "2018-01-10", amount=35.0, corrects="B")
    delivery.gp("B-R-C", "P1", "2018-01-10", amount=-35.0, corrects="B-R")
    delivery.gp("X", "P2", "2018-01-10", amount=10.0, corrects="Y")
    delivery.gp("Y", "P2", "2018-01-10", amount=11.0, corrects="X")
    delivery.meta["first_year"] = 2014
    result = run(delivery.write(), tmp_path)
    assert reasons(tmp_path / "store", "gp") == {
        "B": "outside_enrolment",
        "B-R": "parent_quarantined",
        "B-R-C": "parent_quarantined",
        "X": "correction_cycle",
        "Y": "correction_cycle",
    }
    assert result.manifest["balanced"]


# ------------------------------------------------------------------ providers
def test_a_conflicting_provider_row_does_not_take_the_valid_one_with_it(tmp_path):
    delivery = base(tmp_path / "d")
    # first delivered: the same AGB as a GP practice, which its zorgsoort 06 contradicts
    delivery.rows["providers"].insert(0, {"provider_agb": HOSPITAL, "provider_type": "gp", "gemeente_code": "GM0363"})
    # and a later valid-looking copy in another gemeente: the first valid row is kept
    delivery.rows["providers"].append(
        {"provider_agb": HOSPITAL, "provider_type": "hospital", "gemeente_code": "GM0599"}
    )
    result = run(delivery.write(), tmp_path)
    providers = read(tmp_path / "store", "providers")
    assert providers.filter(pl.col("provider_agb") == HOSPITAL)["gemeente_code"].to_list() == ["GM0363"]
    quarantined = read(tmp_path / "store", "providers", quarantine=True).sort("source_row")
    assert quarantined["reason"].to_list() == ["invalid_value", "duplicate_key"]
    assert "D1" in read(tmp_path / "store", "dbc")["claim_id"].to_list(), "the hospital's claims are stored"
    assert result.manifest["balanced"]


# ------------------------------------------------------------------ text, years, keys, BSN
def test_text_that_is_not_utf8_is_quarantined_with_its_bytes_escaped(tmp_path):
    root = base(tmp_path / "d").write()
    path = root / "gp" / "part-0.parquet"
    table = pq.read_table(path)
    raw = [v.encode() for v in table.column("service_cd").to_pylist()]
    raw[1] = b"12\xff00"
    binary = pa.array(raw, pa.binary())
    broken = pa.Array.from_buffers(pa.string(), len(binary), binary.buffers())
    pq.write_table(table.set_column(table.column_names.index("service_cd"), "service_cd", broken), path)
    result = run(root, tmp_path)
    q = read(tmp_path / "store", "gp", quarantine=True)
    assert q["reason"].to_list() == ["bad_encoding"]
    assert q["service_cd"].to_list() == ["12\\xff00"]
    assert json.loads(q["as_delivered"][0]) == {"service_cd": "12\\xff00"}
    assert result.manifest["balanced"]


def test_claims_outside_the_years_of_delivery_json(tmp_path):
    delivery = base(tmp_path / "d", first_year=2016)
    delivery.gp("G-EARLY", "P2", "2015-12-31")
    result = run(delivery.write(), tmp_path)
    assert reasons(tmp_path / "store", "gp") == {"G-EARLY": "outside_delivery_years"}
    assert result.manifest["balanced"]
    # most claims outside the years: delivery.json is wrong, not the claims
    wrong = base(tmp_path / "w", first_year=2019)
    with pytest.raises(DeliveryError, match=r"delivery.json contradicts the data: .* outside the years 2019-2022"):
        run(wrong.write(), tmp_path / "w-store", critical_share=0.05)


def test_an_empty_patient_id_is_a_missing_key(tmp_path):
    delivery = base(tmp_path / "d")
    delivery.gp("G-EMPTY", "", "2018-01-10")
    delivery.gp("G-BLANK", "  ", "2018-01-10")
    result = run(delivery.write(), tmp_path)
    assert reasons(tmp_path / "store", "gp") == {"G-EMPTY": "missing_key", "G-BLANK": "missing_key"}
    assert result.manifest["blank_to_null"]["gp"] == {"patient_id": 2}


def test_a_bsn_like_value_is_never_echoed(tmp_path):
    delivery = base(tmp_path / "d")
    delivery.patient(BSN, spells=[("2015-01-01", None)])
    delivery.gp("G-BSN", BSN, "2018-01-10")
    delivery.first_line("gp", "G-AGB", "P1", "2018-01-10", 9.5, BSN, service_cd="12000", referral_specialism_cd=None)
    root = delivery.write()
    result = run(root, tmp_path, data_docs=True)
    store = tmp_path / "store"
    assert reasons(store, "gp")["G-BSN"] == "bsn_like_id" and reasons(store, "gp")["G-AGB"] == "bad_format"
    q = read(store, "gp", quarantine=True)
    assert q.filter(pl.col("claim_id") == "G-BSN")["patient_id"].to_list() == [BSN_MASK]
    assert read(store, "insured", quarantine=True)["patient_id"].to_list() == [BSN_MASK]
    # nowhere in the store, its reports or its Data Docs
    for path in store.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            if path.suffix == ".parquet":
                text = json.dumps(pl.read_parquet(path).to_dicts(), default=str).encode()
            assert BSN.encode() not in text, f"{path.relative_to(store)} shows a BSN-like value"
    assert BSN not in json.dumps(result.manifest)

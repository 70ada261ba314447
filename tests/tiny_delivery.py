"""A tiny, hand-written delivery for hand-computed test cases.

    d = TinyDelivery(tmp_path)
    d.patient("P1", birth_year=1950, sex="V", spells=[("2015-01-01", None)])
    d.dbc("D1", "P1", "0305", "1701", "2016-03-01", "2016-03-20", 9000.00,
          activities=[("190305", "2016-03-05", 1), ("190218", "2016-03-05", 3)])
    root = d.write()

Every table of the contract is written (with the contract's Arrow schema), so the folder is a valid
delivery for ``zorgpad ingest``. The episode engine reads only stores: ``d.store()`` writes the
delivery and ingests it (one bucket by default, no data docs) into a store beside it::

    store = d.store()
    build_episodes(store, tmp_path / "out", bundles=["hip_oa"])
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.contract import load_contract

HOSPITAL = "06000001"
GP = "01000001"
PHARMACY = "02000001"
PHYSIO = "04000001"
MIDWIFE = "08000001"
INSURER = "3311"
#: The patient whose lines fill the tables a hand-written case leaves empty (see ``fill_empty_tables``).
FILLER = "FILLER"


def d(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


class TinyDelivery:
    def __init__(self, root: Path, data_as_of: str = "2023-03-31", first_year: int = 2015, last_year: int = 2022):
        self.root = Path(root)
        self.meta = {
            "delivery_id": "tiny",
            "data_as_of": data_as_of,
            "first_year": first_year,
            "last_year": last_year,
            "producer": "tests",
        }
        self.rows: dict[str, list[dict]] = {t: [] for t in load_contract().tables}
        self.rows["providers"] = [
            {"provider_agb": HOSPITAL, "provider_type": "hospital", "gemeente_code": "GM0363"},
            {"provider_agb": "06000002", "provider_type": "hospital", "gemeente_code": "GM0599"},
            {"provider_agb": GP, "provider_type": "gp", "gemeente_code": "GM0363"},
            {"provider_agb": PHARMACY, "provider_type": "pharmacy", "gemeente_code": "GM0363"},
            {"provider_agb": PHYSIO, "provider_type": "physiotherapy", "gemeente_code": "GM0363"},
            {"provider_agb": MIDWIFE, "provider_type": "midwife", "gemeente_code": "GM0363"},
        ]
        self.rows["contracts"] = [
            {
                "contract_id": "C1",
                "bundle_id": "hip_oa",
                "provider_agb": "06000002",
                "insurer_uzovi": None,
                "start_date": d("2018-01-01"),
                "end_date": None,
                "model": "shared_savings",
                "parameters": "{}",
            }
        ]

    def patient(
        self,
        pid: str,
        birth_year: int = 1950,
        sex: str = "V",
        spells=(("2015-01-01", None),),
        death: str | None = None,
        postcode3: str = "101",
        gemeente: str = "GM0363",
    ) -> None:
        for start, end in spells:
            self.rows["insured"].append(
                {
                    "patient_id": pid,
                    "insurer_uzovi": INSURER,
                    "enrolled_from": d(start),
                    "enrolled_to": d(end),
                    "birth_year": birth_year,
                    "sex": sex,
                    "postcode3": postcode3,
                    "gemeente_code": gemeente,
                    "death_date": d(death),
                }
            )

    def dbc(
        self,
        claim: str,
        pid: str,
        specialism: str,
        diagnosis: str,
        start: str,
        end: str,
        amount: float,
        activities=(),
        product: str = "131999051",
        provider: str = HOSPITAL,
        care_type: str = "11",
        clinical: bool = False,
        corrects: str | None = None,
        declared_on: str | None = None,
    ) -> None:
        self.rows["dbc"].append(
            {
                "claim_id": claim,
                "patient_id": pid,
                "provider_agb": provider,
                "insurer_uzovi": INSURER,
                "specialism_cd": specialism,
                "diagnosis_cd": diagnosis,
                "product_cd": product,
                "care_type_cd": care_type,
                "start_date": d(start),
                "end_date": d(end),
                "clinical": clinical,
                "amount": Decimal(str(amount)),
                "declared_on": d(declared_on or end),
                "corrects_claim_id": corrects,
            }
        )
        for code, when, quantity in activities:
            self.rows["dbc_activity"].append(
                {"claim_id": claim, "activity_cd": code, "activity_date": d(when), "quantity": quantity, "amount": None}
            )

    def first_line(
        self,
        table: str,
        claim: str,
        pid: str,
        when: str,
        amount: float,
        provider: str,
        corrects: str | None = None,
        **extra,
    ) -> None:
        self.rows[table].append(
            {
                "claim_id": claim,
                "patient_id": pid,
                "provider_agb": provider,
                "insurer_uzovi": INSURER,
                "service_date": d(when),
                "amount": Decimal(str(amount)),
                "declared_on": d(when),
                "corrects_claim_id": corrects,
                **extra,
            }
        )

    def gp(self, claim, pid, when, amount=9.5, service="12000", referral=None, **kw):
        self.first_line("gp", claim, pid, when, amount, GP, service_cd=service, referral_specialism_cd=referral, **kw)

    def pharmacy(self, claim, pid, when, atc, amount=12.0, ddd=30.0, **kw):
        self.first_line("pharmacy", claim, pid, when, amount, PHARMACY, atc_cd=atc, ddd=ddd, prescriber_agb=GP, **kw)

    def physio(self, claim, pid, when, amount=31.0, discipline="physiotherapy", service="1000", **kw):
        self.first_line(
            "paramedical", claim, pid, when, amount, PHYSIO, discipline=discipline, service_cd=service, **kw
        )

    def maternity(self, claim, pid, when, service, amount=500.0, quantity=None, **kw):
        self.first_line("maternity", claim, pid, when, amount, MIDWIFE, service_cd=service, quantity=quantity, **kw)

    def write(self) -> Path:
        contract = load_contract()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "delivery.json").write_text(json.dumps(self.meta))
        for name, table in contract.tables.items():
            schema = table.arrow_schema()
            rows = [{c: r.get(c) for c in schema.names} for r in self.rows[name]]
            arrow = pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()
            (self.root / name).mkdir(exist_ok=True)
            pq.write_table(arrow, self.root / name / "part-0.parquet")
        return self.root

    def store(self, n_buckets: int = 1, critical_share: float = 1.0) -> Path:
        """Write the delivery and ingest it into ``<root>-store`` (replaced if there); the store.

        ``critical_share=1.0``: a hand-written case is never rejected as a whole; a row ingest
        quarantines is not in the store, as in production."""
        self.fill_empty_tables()
        return ingest_tiny(self.write(), self.root.with_name(f"{self.root.name}-store"), n_buckets, critical_share)

    def fill_empty_tables(self) -> None:
        """Ingest refuses a delivery with an empty table (a national delivery never has one): one
        line in each empty claim table (a DBC with one activity when there is no activity) for a
        patient of its own (``FILLER``), who has no trigger of any bundle and shares no DBC product with anyone, so no episode, price or
        covariate of the case changes."""
        fill = {
            "gp": lambda: self.gp("FILL-G", FILLER, self.filler_date),
            "pharmacy": lambda: self.pharmacy("FILL-F", FILLER, self.filler_date, "A10BA02"),
            "paramedical": lambda: self.physio("FILL-P", FILLER, self.filler_date),
            "maternity": lambda: self.maternity("FILL-K", FILLER, self.filler_date, "postnatal"),
        }
        empty = [table for table in fill if not self.rows[table]]
        if not self.rows["dbc_activity"]:  # a surgery DBC with an activity: no bundle's trigger
            empty.append("dbc_activity")
            fill["dbc_activity"] = lambda: self.dbc(
                "FILL-D", FILLER, "0302", "02", self.filler_date, self.filler_date, 300.0,
                activities=[("190003", self.filler_date, 1)], product="020107001",
            )  # fmt: skip
        if not empty:
            return
        if not any(r["patient_id"] == FILLER for r in self.rows["insured"]):
            self.patient(FILLER, birth_year=1960, spells=[(f"{self.meta['first_year']}-01-01", None)])
        for table in empty:
            fill[table]()

    @property
    def filler_date(self) -> str:
        return f"{self.meta['first_year']}-02-01"


def ingest_tiny(delivery: Path, store: Path, n_buckets: int = 1, critical_share: float = 1.0) -> Path:
    """Ingest a small delivery into ``store`` the way the pipeline does (``zorgpad ingest``'s
    steps without Prefect, no data docs); returns ``store``."""
    from transforms.ingest.run import ingest

    ingest(delivery, store, n_buckets=n_buckets, data_docs=False, critical_share=critical_share)
    return Path(store)

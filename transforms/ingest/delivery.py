"""Open a delivery and decide whether it can be read at all: ``delivery.json``, the files of every
table, their readability, their schemas against the contract.

Everything found here is *critical*: a missing or empty table, an unreadable or truncated file, a
renamed or retyped column, a missing or malformed ``delivery.json``. Each raises
:class:`DeliveryError` with a message that names the table, the file, the column and what was
expected, so a data team can go back to the producer without reading a traceback.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.contract import Column, Contract, load_contract

#: Rows per partition: a file larger than this is split along its row groups.
PARTITION_ROWS = 1_000_000


class DeliveryError(Exception):
    """A critical problem with a delivery: nothing downstream is written."""

    def __init__(self, message: str, *, table: str | None = None, check: str = "delivery",
                 details: dict | None = None) -> None:
        super().__init__(message)
        self.table = table
        self.check = check
        self.details = details or {}


@dataclass(frozen=True)
class DeliveryMeta:
    delivery_id: str
    data_as_of: date
    first_year: int
    last_year: int
    producer: str

    def as_dict(self) -> dict:
        return {"delivery_id": self.delivery_id, "data_as_of": self.data_as_of.isoformat(),
                "first_year": self.first_year, "last_year": self.last_year, "producer": self.producer}


@dataclass(frozen=True)
class InputFile:
    table: str
    path: str
    size: int
    sha256: str
    rows: int
    row_groups: int


@dataclass(frozen=True)
class Partition:
    """A unit of parallel work: some row groups of one input file."""

    table: str
    path: str
    row_groups: tuple[int, ...]
    rows: int
    index: int  # partition number within the table

    @property
    def name(self) -> str:
        return f"{self.table}-{self.index:05d}"


@dataclass
class DeliveryPlan:
    root: str
    meta: DeliveryMeta
    files: dict[str, list[InputFile]]
    partitions: dict[str, list[Partition]]
    extra_columns: dict[str, list[str]] = field(default_factory=dict)
    input_types: dict[str, dict[str, str]] = field(default_factory=dict)

    def rows_in(self, table: str) -> int:
        return sum(f.rows for f in self.files[table])


def read_delivery_meta(root: Path) -> DeliveryMeta:
    path = Path(root) / "delivery.json"
    if not path.exists():
        raise DeliveryError(f"delivery.json is missing in {root}: it must give delivery_id, data_as_of, "
                            "first_year, last_year and producer", check="delivery_json")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeliveryError(f"delivery.json in {root} is not valid JSON: {exc}", check="delivery_json") from None
    if not isinstance(raw, dict):
        raise DeliveryError("delivery.json must hold one JSON object", check="delivery_json")
    missing = [k for k in ("delivery_id", "data_as_of", "first_year", "last_year", "producer") if k not in raw]
    if missing:
        raise DeliveryError(f"delivery.json lacks {', '.join(missing)}", check="delivery_json")
    try:
        meta = DeliveryMeta(
            delivery_id=str(raw["delivery_id"]),
            data_as_of=date.fromisoformat(str(raw["data_as_of"])),
            first_year=int(raw["first_year"]),
            last_year=int(raw["last_year"]),
            producer=str(raw["producer"]),
        )
    except (TypeError, ValueError) as exc:
        raise DeliveryError(f"delivery.json has a malformed value: {exc} (data_as_of must be YYYY-MM-DD, "
                            "years integers)", check="delivery_json") from None
    if meta.first_year > meta.last_year:
        raise DeliveryError(f"delivery.json: first_year {meta.first_year} is after last_year {meta.last_year}",
                            check="delivery_json")
    if meta.data_as_of.year < meta.last_year:
        raise DeliveryError(f"delivery.json: data_as_of {meta.data_as_of} is before the last year {meta.last_year}",
                            check="delivery_json")
    return meta


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def accepts(column: Column, arrow_type: pa.DataType) -> bool:
    """Can a delivered column of ``arrow_type`` be converted to the contract type without guessing?"""
    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    kind = column.type
    if kind == "string":
        return pa.types.is_string(t) or pa.types.is_large_string(t) or (
            column.length is not None and pa.types.is_integer(t))  # codes that lost their zeros
    if kind in ("int16", "int32"):
        return pa.types.is_integer(t)
    if kind == "float64":
        return pa.types.is_floating(t) or pa.types.is_integer(t)
    if kind == "bool":
        return pa.types.is_boolean(t)
    if kind == "date":
        return pa.types.is_date(t) or pa.types.is_timestamp(t)
    if kind == "money":
        return pa.types.is_decimal(t) or pa.types.is_float64(t)
    return False


def _expected(column: Column) -> str:
    return {"money": "decimal128(12, 2) or float64 euros", "date": "date32", "string": "string"}.get(
        column.type, column.type)


def inspect_delivery(root: Path | str, contract: Contract | None = None,
                     partition_rows: int = PARTITION_ROWS) -> DeliveryPlan:
    """Check that the delivery can be read and plan its partitions (raises :class:`DeliveryError`)."""
    root = Path(root)
    if not root.is_dir():
        raise DeliveryError(f"the delivery folder {root} does not exist")
    contract = contract or load_contract()
    meta = read_delivery_meta(root)
    files: dict[str, list[InputFile]] = {}
    partitions: dict[str, list[Partition]] = {}
    extra_columns: dict[str, list[str]] = {}
    input_types: dict[str, dict[str, str]] = {}
    for name, table in contract.tables.items():
        paths = sorted((root / name).rglob("*.parquet")) if (root / name).is_dir() else []
        if not paths:
            raise DeliveryError(f"table {name} is missing: no parquet files under {root / name}", table=name,
                                check="table_present")
        found: list[InputFile] = []
        extra: set[str] = set()
        types: dict[str, str] = {}
        parts: list[Partition] = []
        for path in paths:
            try:
                pf = pq.ParquetFile(path)
                schema = pf.schema_arrow
                rows = pf.metadata.num_rows
                n_groups = pf.metadata.num_row_groups
            except Exception as exc:  # pyarrow raises several types for broken files
                raise DeliveryError(f"table {name}: file {path.relative_to(root)} is not a readable parquet file "
                                    f"(truncated or corrupt?): {exc}", table=name, check="file_readable") from None
            for col in table.columns:
                if col.name not in schema.names:
                    close = difflib.get_close_matches(col.name, schema.names, n=1, cutoff=0.6)
                    hint = f"; did it get renamed to {close[0]!r}?" if close else ""
                    raise DeliveryError(
                        f"table {name}: column {col.name!r} is missing in {path.relative_to(root)}{hint} "
                        f"(columns found: {', '.join(schema.names)})", table=name, check="schema")
                arrow_type = schema.field(col.name).type
                if not accepts(col, arrow_type):
                    raise DeliveryError(
                        f"table {name}: column {col.name!r} has type {arrow_type} in {path.relative_to(root)}; "
                        f"the contract says {_expected(col)}", table=name, check="schema")
                types.setdefault(col.name, str(arrow_type))
            extra |= set(schema.names) - set(table.column_names)
            found.append(InputFile(name, str(path), path.stat().st_size, _sha256(path), rows, n_groups))
            # split large files along row groups
            group_rows = [pf.metadata.row_group(i).num_rows for i in range(n_groups)]
            current: list[int] = []
            current_rows = 0
            for i, r in enumerate(group_rows):
                current.append(i)
                current_rows += r
                if current_rows >= partition_rows:
                    parts.append(Partition(name, str(path), tuple(current), current_rows, len(parts)))
                    current, current_rows = [], 0
            if current or not group_rows:
                parts.append(Partition(name, str(path), tuple(current), current_rows, len(parts)))
        if sum(f.rows for f in found) == 0:
            raise DeliveryError(f"table {name} is empty: its {len(found)} file(s) hold no rows", table=name,
                                check="table_not_empty")
        files[name] = found
        partitions[name] = parts
        extra_columns[name] = sorted(extra)
        input_types[name] = types
    return DeliveryPlan(root=str(root), meta=meta, files=files, partitions=partitions,
                        extra_columns=extra_columns, input_types=input_types)

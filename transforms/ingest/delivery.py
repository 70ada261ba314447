"""Open a delivery and decide whether it can be read at all: ``delivery.json``, the files of every
table, their readability, their schemas against the contract.

Everything found here is *critical*: a missing or empty table, an unreadable or truncated file, a
renamed or retyped column, a missing or malformed ``delivery.json``, a file list that does not
match. Each raises :class:`DeliveryError` with a message that names the table, the file, the
column and what was expected, so a data team can go back to the producer without reading a
traceback.

**What counts as the delivery.** When ``delivery.json`` lists its ``files`` (path, and optionally
``bytes`` and ``sha256``), exactly those are read, each checked against its size and hash, and any
other file is ignored. Otherwise a table is the parquet files directly in its folder and in Hive
partition folders below it (``dbc/year=2019/part-0.parquet``); a parquet file in any other
sub-folder (``pharmacy/old/``) is an error, because a stale copy left there would be read as
current lines. Files a reader would not read (hidden files, ``_SUCCESS``, a README) are ignored.
Every ignored file is reported in the manifest.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from transforms.contract import Column, Contract, load_contract
from transforms.errors import UserFacingError
from transforms.hashing import file_sha256
from transforms.manifests import DeliveryMeta, ListedFile, describe

#: Rows per partition: a file larger than this is split along its row groups.
PARTITION_ROWS = 1_000_000


class DeliveryError(UserFacingError):
    """A critical problem with a delivery: nothing downstream is written."""

    def __init__(
        self, message: str, *, table: str | None = None, check: str = "delivery", details: dict | None = None
    ) -> None:
        super().__init__(message)
        self.table = table
        self.check = check
        self.details = details or {}


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
    #: files in the delivery folder that are not read, with the reason (relative path -> reason)
    ignored: dict[str, str] = field(default_factory=dict)
    #: groups of input files of one table with identical contents (a file delivered twice)
    identical_files: list[list[str]] = field(default_factory=list)
    #: the file list of ``delivery.json`` was given and checked
    file_list_checked: bool = False

    def rows_in(self, table: str) -> int:
        return sum(f.rows for f in self.files[table])


def _read_delivery_json(root: Path) -> dict:
    path = Path(root) / "delivery.json"
    if not path.exists():
        raise DeliveryError(
            f"delivery.json is missing in {root}: it must give delivery_id, data_as_of, "
            "first_year, last_year and producer",
            check="delivery_json",
        )
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeliveryError(f"delivery.json in {root} is not valid JSON: {exc}", check="delivery_json") from None
    if not isinstance(raw, dict):
        raise DeliveryError("delivery.json must hold one JSON object", check="delivery_json")
    return raw


def read_delivery_meta(root: Path, raw: dict | None = None) -> DeliveryMeta:
    raw = _read_delivery_json(root) if raw is None else raw
    missing = [k for k in ("delivery_id", "data_as_of", "first_year", "last_year", "producer") if k not in raw]
    if missing:
        raise DeliveryError(f"delivery.json lacks {', '.join(missing)}", check="delivery_json")
    try:
        meta = DeliveryMeta.model_validate({k: raw[k] for k in DeliveryMeta.model_fields})
    except ValidationError as exc:
        raise DeliveryError(
            f"delivery.json has a malformed value: {describe(exc)} (data_as_of must be YYYY-MM-DD, years integers)",
            check="delivery_json",
        ) from None
    if not 1990 <= meta.first_year <= 2100 or not 1990 <= meta.last_year <= 2100:
        raise DeliveryError(
            f"delivery.json: the years {meta.first_year}-{meta.last_year} are not plausible "
            "(claims data start in 1990)",
            check="delivery_json",
        )
    if meta.first_year > meta.last_year:
        raise DeliveryError(
            f"delivery.json: first_year {meta.first_year} is after last_year {meta.last_year}", check="delivery_json"
        )
    if meta.data_as_of.year < meta.last_year:
        raise DeliveryError(
            f"delivery.json: data_as_of {meta.data_as_of} is before the last year {meta.last_year}",
            check="delivery_json",
        )
    return meta


def _file_list(raw: dict, contract: Contract) -> list[ListedFile] | None:
    """The ``files`` of ``delivery.json`` (None when it has none), checked for form."""
    if "files" not in raw:
        return None
    entries = raw["files"]
    if not isinstance(entries, list) or not entries:
        raise DeliveryError(
            'delivery.json: files must be a non-empty list of {"path": ..., "bytes": ..., "sha256": ...} entries',
            check="file_list",
        )
    listed: list[ListedFile] = []
    for i, entry in enumerate(entries):
        try:
            parsed = ListedFile.model_validate({"path": entry} if isinstance(entry, str) else entry)
        except ValidationError as exc:
            if isinstance(entry, dict) and all(e["loc"][:1] in (("bytes",), ("sha256",)) for e in exc.errors()):
                raise DeliveryError(
                    f"delivery.json: files[{i}] ({entry['path']}): bytes must be a whole number and "
                    "sha256 64 hexadecimal characters",
                    check="file_list",
                ) from None
            raise DeliveryError(
                f'delivery.json: files[{i}] must be {{"path": str, "bytes": int, "sha256": str}} '
                f"(bytes and sha256 optional), not {json.dumps(entry, default=str)[:120]}",
                check="file_list",
            ) from None
        path = Path(parsed.path)
        if path.is_absolute() or ".." in path.parts or len(path.parts) < 2 or path.parts[0] not in contract.tables:
            raise DeliveryError(
                f"delivery.json: files[{i}] path {parsed.path!r} must be relative to the delivery "
                f"and start with a table folder ({', '.join(contract.tables)})",
                check="file_list",
            )
        listed.append(
            parsed.model_copy(
                update={"path": path.as_posix(), "sha256": parsed.sha256.lower() if parsed.sha256 else None}
            )
        )
    paths = [f.path for f in listed]
    repeated = sorted({p for p in paths if paths.count(p) > 1})
    if repeated:
        raise DeliveryError(f"delivery.json lists {', '.join(repeated)} more than once", check="file_list")
    return listed


def _hidden(part: str) -> bool:
    return part.startswith((".", "_"))


def _is_partition_folder(part: str) -> bool:
    key, sep, value = part.partition("=")
    return bool(sep and key and value)


def discover_files(
    root: Path, contract: Contract, listed: list[ListedFile] | None
) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """The files to read per table and the files of the folder that are ignored (relative path ->
    reason); see the module docstring for the rules."""
    tables = {name: [] for name in contract.tables}
    ignored: dict[str, str] = {}
    wanted = {f.path for f in listed} if listed is not None else None
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(root)
        name = rel.as_posix()
        if name == "delivery.json":
            continue
        if wanted is not None:
            if name not in wanted:
                ignored[name] = "not listed in delivery.json"
            continue
        table = rel.parts[0] if len(rel.parts) > 1 else None
        if table not in tables:
            ignored[name] = "not in a table folder"
        elif any(_hidden(part) for part in rel.parts[1:]):
            ignored[name] = "hidden file or folder"
        elif path.suffix != ".parquet":
            ignored[name] = "not a .parquet file"
        elif not all(_is_partition_folder(part) for part in rel.parts[1:-1]):
            raise DeliveryError(
                f"table {table}: {name} is in a sub-folder that is not a partition folder (name=value); zorgpad "
                f"reads the parquet files directly in {table}/ and in partition folders such as {table}/year=2019/, "
                f"so a stale copy in a sub-folder would be read as current lines: move or remove "
                f"{'/'.join(rel.parts[:-1])}/, or list the files to read in delivery.json",
                table=table,
                check="file_list",
            )
        else:
            tables[table].append(path)
    if wanted is not None:
        for entry in listed:
            path = root / entry.path
            if not path.is_file():
                raise DeliveryError(
                    f"delivery.json lists {entry.path}, which is not in the delivery",
                    table=Path(entry.path).parts[0],
                    check="file_list",
                )
            tables[Path(entry.path).parts[0]].append(path)
        for files in tables.values():
            files.sort()
    return tables, ignored


def accepts(column: Column, arrow_type: pa.DataType) -> bool:
    """Can a delivered column of ``arrow_type`` be converted to the contract type without guessing?"""
    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    kind = column.type
    if kind == "string":
        return (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or (column.length is not None and pa.types.is_integer(t))
        )  # codes that lost their zeros
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
        column.type, column.type
    )


def inspect_delivery(
    root: Path | str, contract: Contract | None = None, partition_rows: int = PARTITION_ROWS, *, hash_files: bool = True
) -> DeliveryPlan:
    """Check that the delivery can be read and plan its partitions (raises :class:`DeliveryError`).
    ``hash_files=False`` skips the SHA-256 of every file (a quick check before a run starts; the
    hashes listed in ``delivery.json`` are then checked by the run)."""
    root = Path(root)
    if not root.is_dir():
        raise DeliveryError(
            f"the delivery folder {root} does not exist"
            if not root.exists()
            else f"the delivery {root} is a file, not a folder"
        )
    contract = contract or load_contract()
    raw = _read_delivery_json(root)
    meta = read_delivery_meta(root, raw)
    listed = _file_list(raw, contract)
    expected = {f.path: f for f in listed or ()}
    table_paths, ignored = discover_files(root, contract, listed)
    files: dict[str, list[InputFile]] = {}
    partitions: dict[str, list[Partition]] = {}
    extra_columns: dict[str, list[str]] = {}
    input_types: dict[str, dict[str, str]] = {}
    for name, table in contract.tables.items():
        paths = table_paths[name]
        if not paths:
            where = "delivery.json lists no file of it" if listed is not None else f"no parquet files in {root / name}"
            raise DeliveryError(f"table {name} is missing: {where}", table=name, check="table_present")
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
                raise DeliveryError(
                    f"table {name}: file {path.relative_to(root)} is not a readable parquet file "
                    f"(truncated or corrupt?): {exc}",
                    table=name,
                    check="file_readable",
                ) from None
            for col in table.columns:
                if col.name not in schema.names:
                    close = difflib.get_close_matches(col.name, schema.names, n=1, cutoff=0.6)
                    hint = f"; did it get renamed to {close[0]!r}?" if close else ""
                    raise DeliveryError(
                        f"table {name}: column {col.name!r} is missing in {path.relative_to(root)}{hint} "
                        f"(columns found: {', '.join(schema.names)})",
                        table=name,
                        check="schema",
                    )
                arrow_type = schema.field(col.name).type
                if not accepts(col, arrow_type):
                    raise DeliveryError(
                        f"table {name}: column {col.name!r} has type {arrow_type} in {path.relative_to(root)}; "
                        f"the contract says {_expected(col)}",
                        table=name,
                        check="schema",
                    )
                types.setdefault(col.name, str(arrow_type))
            extra |= set(schema.names) - set(table.column_names)
            rel = path.relative_to(root).as_posix()
            size = path.stat().st_size
            entry = expected.get(rel)
            if entry is not None and entry.bytes is not None and entry.bytes != size:
                raise DeliveryError(
                    f"table {name}: {rel} has {size:,} bytes, delivery.json says {entry.bytes:,}: "
                    "the file is not the one that was delivered (truncated or replaced?)",
                    table=name,
                    check="file_list",
                )
            digest = file_sha256(path) if hash_files else ""
            if entry is not None and entry.sha256 is not None and hash_files and entry.sha256 != digest:
                raise DeliveryError(
                    f"table {name}: the SHA-256 of {rel} is {digest}, delivery.json says {entry.sha256}: "
                    "the file is not the one that was delivered",
                    table=name,
                    check="file_list",
                )
            found.append(InputFile(name, str(path), size, digest, rows, n_groups))
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
            raise DeliveryError(
                f"table {name} is empty: its {len(found)} file(s) hold no rows", table=name, check="table_not_empty"
            )
        files[name] = found
        partitions[name] = parts
        extra_columns[name] = sorted(extra)
        input_types[name] = types
    identical: list[list[str]] = []
    if hash_files:
        for found in files.values():
            by_digest: dict[tuple[str, int], list[str]] = {}
            for f in found:
                if f.rows:  # two empty files are alike without anything being delivered twice
                    by_digest.setdefault((f.sha256, f.size), []).append(Path(f.path).relative_to(root).as_posix())
            identical += [group for group in by_digest.values() if len(group) > 1]
    return DeliveryPlan(
        root=str(root),
        meta=meta,
        files=files,
        partitions=partitions,
        extra_columns=extra_columns,
        input_types=input_types,
        ignored=ignored,
        identical_files=identical,
        file_list_checked=listed is not None,
    )

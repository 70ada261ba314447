"""The input contract in code: the single machine-readable definition of a claims delivery.

One YAML file per table (``tables/*.yml``) states the grain, the columns with their Arrow types,
which are keys, code lists, plausibility bounds and references, and the row rules a valid delivery
keeps. The generator (``transforms.synth``), the Great Expectations suites (``expectations/``) and
the data dictionary (``docs/contract.md``) are all derived from this one definition, so they cannot
drift apart: a test regenerates the dictionary and fails on any diff.

Usage::

    from transforms.contract import load_contract
    contract = load_contract()
    contract.tables["dbc"].arrow_schema()
"""

from __future__ import annotations

import re
from datetime import date
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import reference

CONTRACT_DIR = Path(__file__).resolve().parent
CONTRACT_VERSION = "1.0.0"

TABLE_ORDER = (
    "insured",
    "providers",
    "dbc",
    "dbc_activity",
    "gp",
    "pharmacy",
    "paramedical",
    "maternity",
    "contracts",
)

ColumnType = Literal["string", "int16", "int32", "float64", "bool", "date", "money"]

#: Money is exact: decimal128(12, 2) euros. float64 is accepted on input and converted to cents.
MONEY = pa.decimal128(12, 2)

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "money": MONEY,
}

POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "int16": pl.Int16(),
    "int32": pl.Int32(),
    "float64": pl.Float64(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "money": pl.Decimal(12, 2),
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Column(_Frozen):
    """One column of a delivery table."""

    name: str
    type: ColumnType
    description: str
    key: bool = Field(False, description="key columns are non-null")
    unique: bool = False
    length: int | None = Field(None, description="exact length in characters (codes)")
    pattern: str | None = None
    allowed: tuple[str, ...] | None = None
    code_list: str | None = None
    scope: str | None = Field(None, description="column the code is nested in (diagnosis in specialism)")
    valid_on: str | None = Field(None, description="date column on which the code must be valid")
    min: float | None = None
    max: float | None = None
    references: str | None = Field(None, description="table.column this column points to")
    pseudonym: bool = Field(False, description="holds a pseudonym: a BSN-like value is a finding")
    json_: bool = Field(False, alias="json", description="holds a JSON document")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]

    @property
    def polars_type(self) -> pl.DataType:
        return POLARS_TYPES[self.type]

    @property
    def nullable(self) -> bool:
        return not self.key


class RuleKind(_Frozen):
    """One kind of rule (``schema/rule_kinds.yml``): decided per row or across rows (``link``), the
    fields of a rule it reads, and how the data dictionary states it."""

    stage: Literal["row", "link"]
    requires: tuple[str, ...]
    text: str


#: The declared rule kinds; a row kind's function is registered in ``transforms.ingest.checks``.
RULE_KINDS_FILE = CONTRACT_DIR / "schema" / "rule_kinds.yml"


def rule_kinds() -> dict[str, RuleKind]:
    """The rule kinds of :data:`RULE_KINDS_FILE`, by name: what a contract table may declare."""
    return _rule_kinds(RULE_KINDS_FILE)


@lru_cache(maxsize=4)
def _rule_kinds(path: Path) -> dict[str, RuleKind]:
    raw = yaml.safe_load(Path(path).read_text())
    return {name: RuleKind.model_validate(spec) for name, spec in raw.items()}


def rule_kinds_of_stage(stage: str) -> frozenset[str]:
    """The names of the rule kinds decided at ``stage`` (``row`` or ``link``)."""
    return frozenset(name for name, kind in rule_kinds().items() if kind.stage == stage)


class Rule(_Frozen):
    """A row rule a valid delivery keeps; a row breaking it is quarantined with ``reason``."""

    id: str
    kind: str
    reason: str
    description: str
    left: str | None = None
    right: str | None = None
    start: str | None = None
    end: str | None = None
    max_days: int | None = None
    columns: tuple[str, ...] | None = None
    year_column: str | None = None
    date_column: str | None = None
    group: tuple[str, ...] | None = None
    grace_days: int | None = None
    parent: str | None = None
    parent_start: str | None = None
    parent_end: str | None = None
    column: str | None = None
    by: str | None = None
    prefixes: dict[str, tuple[str, ...]] | None = None
    when: dict[str, tuple[str, ...]] | None = None
    amount: str | None = None

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> Rule:
        kinds = rule_kinds()
        if self.kind not in kinds:
            raise ValueError(f"rule {self.id}: unknown kind {self.kind!r}; known: {', '.join(kinds)}")
        missing = [f for f in kinds[self.kind].requires if getattr(self, f) is None]
        if missing:
            raise ValueError(f"rule {self.id}: a {self.kind} rule needs {', '.join(missing)}")
        return self


class Period(_Frozen):
    """The dates a claim line covers: ``start`` and ``end`` (the same column for a one-day service)."""

    start: str
    end: str


#: What a table is to the pipeline. ``person``: enrolment spells, bucketed by patient; ``claim``:
#: money lines of a patient, bucketed and the input of episodes, spending and maturity;
#: ``claim_detail``: lines inside a claim (DBC activities), bucketed with their claim;
#: ``reference``: small tables read whole (providers, contracts).
TableRole = Literal["person", "claim", "claim_detail", "reference"]


class Table(_Frozen):
    """One delivery table: its grain, role, dates, columns and rules."""

    table: str
    grain: str
    role: TableRole
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]
    rules: tuple[Rule, ...] = ()
    #: the dates of a claim line (claims only)
    period: Period | None = None
    #: the date a bucketed table's rows are ordered by after the patient (a claim's: its period start)
    order_by: str | None = None

    @property
    def order_date(self) -> str | None:
        """The date the rows are ordered by inside a patient bucket (None: not bucketed)."""
        return self.period.start if self.period is not None else self.order_by

    @model_validator(mode="after")
    def _consistent(self) -> Table:
        names = [c.name for c in self.columns]
        if (self.role == "claim") != (self.period is not None):
            raise ValueError(f"table {self.table}: a claim table, and only a claim table, has a period")
        if self.role in ("person", "claim_detail") and self.order_by is None:
            raise ValueError(f"table {self.table}: a bucketed {self.role} table needs order_by")
        for ref in (*((self.period.start, self.period.end) if self.period else ()), self.order_by):
            if ref is not None and ref not in names:
                raise ValueError(f"table {self.table}: refers to unknown column {ref!r}")
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"table {self.table}: duplicate columns {sorted(dupes)}")
        for key in self.primary_key:
            if key not in names:
                raise ValueError(f"table {self.table}: primary key column {key!r} is not a column")
        for col in self.columns:
            for ref in (col.scope, col.valid_on):
                if ref is not None and ref not in names:
                    raise ValueError(f"table {self.table}.{col.name}: refers to unknown column {ref!r}")
        return self

    @property
    def name(self) -> str:
        return self.table

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.table} has no column {name!r}")

    @property
    def key_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.key]

    @property
    def money_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.type == "money"]

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of the table, with descriptions as field metadata."""
        return pa.schema(
            [
                pa.field(c.name, c.arrow_type, nullable=c.nullable, metadata={"description": c.description})
                for c in self.columns
            ],
            metadata={"zorgpad.table": self.table, "zorgpad.contract_version": CONTRACT_VERSION},
        )

    def polars_schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.polars_type for c in self.columns}


class CodeList(_Frozen):
    """A list of codes with validity periods, from bundled reference data or a project list."""

    name: str
    source: str
    code: str
    description: str
    scope: str | None = None
    pattern: str | None = None
    extensions: str | None = Field(None, description="project list of documented additions to the source")

    def frame(self) -> pl.DataFrame:
        """code [, scope], valid_from, valid_to (dates; null valid_from = always, null valid_to = open)."""
        frame = _code_list_frame(self.source, self.code, self.scope)
        if self.extensions is not None:
            frame = pl.concat([frame, _code_list_frame(self.extensions, self.code, self.scope)])
        return frame

    @cached_property
    def codes(self) -> frozenset[str]:
        return frozenset(self.frame()[self.code].to_list())

    def is_valid(self, code: str, on: date | None = None, scope: str | None = None) -> bool:
        """Is ``code`` (within ``scope``) valid on date ``on``? (Pattern lists accept any well-formed code.)"""
        if self.pattern is not None:
            return re.fullmatch(self.pattern, code) is not None
        df = self.frame().filter(pl.col(self.code) == code)
        if self.scope is not None and scope is not None:
            df = df.filter(pl.col(self.scope) == scope)
        if on is not None:
            df = df.filter(
                (pl.col("valid_from").is_null() | (pl.col("valid_from") <= on))
                & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= on))
            )
        return df.height > 0

    model_config = ConfigDict(frozen=True, extra="forbid", ignored_types=(cached_property,))


@lru_cache(maxsize=32)
def _code_list_frame(source: str, code: str, scope: str | None) -> pl.DataFrame:
    kind, _, rel = source.partition(":")
    if kind == "reference":
        df = reference.table(rel)
    elif kind == "project":
        df = pl.read_csv(CONTRACT_DIR / "code_lists" / rel, infer_schema=False)
        df = df.with_columns(
            pl.col("valid_from").str.to_date("%Y-%m-%d", strict=True),
            pl.col("valid_to").str.to_date("%Y-%m-%d", strict=True),
        )
    else:
        raise ValueError(f"code list source must start with 'reference:' or 'project:', got {source!r}")
    for bound in ("valid_from", "valid_to"):
        if bound not in df.columns:  # a list without validity periods is valid throughout
            df = df.with_columns(pl.lit(None, pl.Date).alias(bound))
    keep = [code, *([scope] if scope else []), "valid_from", "valid_to"]
    return df.select(keep)


class Contract(_Frozen):
    """All tables and code lists of the delivery contract."""

    version: str
    tables: dict[str, Table]
    code_lists: dict[str, CodeList]

    @model_validator(mode="after")
    def _references_resolve(self) -> Contract:
        for table in self.tables.values():
            for col in table.columns:
                if col.code_list is not None and col.code_list not in self.code_lists:
                    raise ValueError(f"{table.table}.{col.name}: unknown code list {col.code_list!r}")
                if col.references is not None:
                    ref_table, _, ref_col = col.references.partition(".")
                    if ref_table not in self.tables or ref_col not in self.tables[ref_table].column_names:
                        raise ValueError(f"{table.table}.{col.name}: unknown reference {col.references!r}")
        return self

    def tables_of_role(self, *roles: str) -> tuple[str, ...]:
        """The names of the tables with one of ``roles``, in :data:`TABLE_ORDER`."""
        return tuple(name for name, table in self.tables.items() if table.role in roles)

    @property
    def claim_tables(self) -> tuple[str, ...]:
        """The tables of money lines of patients (dbc, gp, pharmacy, ...)."""
        return self.tables_of_role("claim")

    @property
    def bucketed_tables(self) -> tuple[str, ...]:
        """The tables stored in patient buckets: persons, claims and their detail lines."""
        return self.tables_of_role("person", "claim", "claim_detail")

    def table(self, name: str) -> Table:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"the contract has no table {name!r}; tables: {', '.join(self.tables)}") from None


def _load_table(path: Path, fragments: dict[str, dict[str, Any]]) -> Table:
    raw = yaml.safe_load(path.read_text())
    include = raw.pop("include", None)
    if include is not None:
        fragment = fragments[include]
        name = raw["table"]

        def subst(item: Any) -> Any:
            if isinstance(item, str):
                return item.replace("{table}", name)
            if isinstance(item, dict):
                return {k: subst(v) for k, v in item.items()}
            if isinstance(item, list):
                return [subst(v) for v in item]
            return item

        raw["columns"] = subst(fragment.get("columns", [])) + raw.get("columns", [])
        raw["rules"] = subst(fragment.get("rules", [])) + raw.get("rules", [])
    return Table.model_validate(raw)


@lru_cache(maxsize=1)
def load_contract() -> Contract:
    """Load and validate the contract from the YAML next to this module."""
    fragments = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((CONTRACT_DIR / "fragments").glob("*.yml"))}
    tables = {name: _load_table(CONTRACT_DIR / "tables" / f"{name}.yml", fragments) for name in TABLE_ORDER}
    extra = {p.stem for p in (CONTRACT_DIR / "tables").glob("*.yml")} - set(TABLE_ORDER)
    if extra:
        raise ValueError(f"contract tables not in TABLE_ORDER: {sorted(extra)}")
    lists_raw = yaml.safe_load((CONTRACT_DIR / "code_lists.yml").read_text())
    code_lists = {name: CodeList.model_validate({"name": name, **spec}) for name, spec in lists_raw.items()}
    return Contract(version=CONTRACT_VERSION, tables=tables, code_lists=code_lists)


__all__ = [
    "CONTRACT_VERSION",
    "MONEY",
    "TABLE_ORDER",
    "CodeList",
    "Column",
    "Contract",
    "Rule",
    "Table",
    "load_contract",
]

"""Output tables declared as data: one YAML file per table with its grain, key, Hive partitions, sort
order and columns (type and description), from which the parquet schema, the writing and the data
dictionary are all derived, so what an analyst reads in ``docs/`` is what the files hold.

    table: benchmark
    description: ...
    grain: one row per bundle, anchor year, cost basis, level and unit
    key: [bundle_id, year, cost_basis, level, unit]
    partition_by: [bundle_id, year]
    sort_by: [cost_basis, level, unit]
    columns:
      - {name: bundle_id, type: string, description: the bundle}

Writing checks the declaration against the data: every declared column is there with its type (a
missing or extra column is an error, never silently filled), the key is unique, and rows are sorted
by partition, then ``sort_by``, then the key, so that the same input always gives the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, model_validator

ColumnType = Literal["string", "int32", "int64", "float64", "bool", "date", "int32_list"]

POLARS = {
    "string": pl.String,
    "int32": pl.Int32,
    "int64": pl.Int64,
    "float64": pl.Float64,
    "bool": pl.Boolean,
    "date": pl.Date,
    "int32_list": pl.List(pl.Int32),
}
ARROW = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "int32_list": pa.list_(pa.int32()),
}
#: The file written into every Hive partition folder.
PART_FILE = "part-0.parquet"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OutputColumn(_Frozen):
    name: str
    type: ColumnType
    description: str


class OutputTable(_Frozen):
    """One declared output table."""

    table: str
    description: str
    grain: str
    key: tuple[str, ...]
    partition_by: tuple[str, ...] = ()
    sort_by: tuple[str, ...] = ()
    columns: tuple[OutputColumn, ...]

    @model_validator(mode="after")
    def _consistent(self) -> OutputTable:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.table}: a column is declared twice")
        for group, listed in (("key", self.key), ("partition_by", self.partition_by), ("sort_by", self.sort_by)):
            unknown = [c for c in listed if c not in names]
            if unknown:
                raise ValueError(f"table {self.table}: {group} names undeclared columns {unknown}")
        return self

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def polars_schema(self) -> dict[str, pl.DataType]:
        return {c.name: POLARS[c.type] for c in self.columns}

    def file_schema(self) -> pa.Schema:
        """The schema of a file inside a partition: the partition columns live in the folder names."""
        return pa.schema(
            [
                pa.field(c.name, ARROW[c.type], metadata={"description": c.description})
                for c in self.columns
                if c.name not in self.partition_by
            ],
            metadata={"zorgpad.table": self.table, "zorgpad.grain": self.grain, "zorgpad.key": ",".join(self.key)},
        )

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with exactly the declared columns, types and order, sorted; raises when a column
        is missing or undeclared, or the key is not unique."""
        missing = [c for c in self.column_names if c not in frame.columns]
        extra = [c for c in frame.columns if c not in self.column_names]
        if missing or extra:
            raise ValueError(f"table {self.table}: missing columns {missing}, undeclared columns {extra}")
        frame = frame.select([pl.col(c.name).cast(POLARS[c.type], strict=True) for c in self.columns])
        if frame.height and frame.select(self.key).is_duplicated().any():
            raise ValueError(f"table {self.table}: the key {list(self.key)} is not unique")
        order = list(dict.fromkeys([*self.partition_by, *self.sort_by, *self.key]))
        return frame.sort(order, nulls_last=True, maintain_order=True)

    def write(self, frame: pl.DataFrame, root: Path) -> list[Path]:
        """Write ``frame`` as Hive partitions under ``root / table`` (one file per partition, zstd,
        no timestamps: the same rows give the same bytes); returns the files written."""
        frame = self.conform(frame)
        folder = Path(root) / self.table
        written = []
        if not self.partition_by:
            groups = {(): frame}
        else:
            groups = frame.partition_by(list(self.partition_by), as_dict=True, maintain_order=True)
        for values, part in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
            path = folder.joinpath(*(f"{c}={v}" for c, v in zip(self.partition_by, values))) / PART_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            arrow = part.drop(list(self.partition_by)).to_arrow().cast(self.file_schema())
            # written under another name and renamed: a reader (another bundle's task reading its
            # own partition, an analyst) never finds a half-written part file
            unfinished = path.with_name(f".{path.name}.writing")
            pq.write_table(arrow, unfinished, compression="zstd", write_statistics=True)
            os.replace(unfinished, path)
            written.append(path)
        return written

    def read(self, root: Path, partition: Mapping[str, object] | None = None) -> pl.DataFrame:
        """Read the table back from ``root / table`` with its partition columns; with ``partition``
        (e.g. ``{"bundle_id": "hip_oa"}``) only the part files in those partitions, so that a task
        reads its own bundle while other tasks are still writing theirs."""
        folder = Path(root) / self.table
        unknown = [c for c in partition or {} if c not in self.partition_by]
        if unknown:
            raise ValueError(f"{self.table} is not partitioned by {unknown}; its partitions: {self.partition_by}")
        wanted = {f"{c}={v}" for c, v in (partition or {}).items()}
        files = [f for f in sorted(folder.rglob("*.parquet")) if wanted <= set(f.relative_to(folder).parts[:-1])]
        if not files:
            return pl.DataFrame(schema=self.polars_schema())
        frame = pl.read_parquet(files, hive_partitioning=bool(self.partition_by))
        return frame.select([pl.col(c.name).cast(POLARS[c.type]) for c in self.columns])

    def markdown(self) -> list[str]:
        """The table's entry in a data dictionary."""
        lines = [
            f"## `{self.table}`",
            "",
            self.description,
            "",
            f"Grain: {self.grain}. Key: {', '.join(f'`{k}`' for k in self.key)}.",
        ]
        if self.partition_by:
            path = "/".join(f"{c}=<{c}>" for c in self.partition_by)
            lines.append(f"Files: `{self.table}/{path}/{PART_FILE}` (Hive partitions).")
        lines += ["", "| column | type | meaning |", "|---|---|---|"]
        lines += [f"| `{c.name}` | {c.type} | {c.description} |" for c in self.columns]
        return [*lines, ""]


@lru_cache(maxsize=8)
def load_tables(folder: str) -> dict[str, OutputTable]:
    """Every ``*.yml`` table declaration in ``folder``, by table name (in file-name order)."""
    tables = {}
    for path in sorted(Path(folder).glob("*.yml")):
        table = OutputTable.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        if table.table != path.stem:
            raise ValueError(f"{path}: declares table {table.table!r}; the file must be named {table.table}.yml")
        tables[table.table] = table
    return tables


__all__ = ["OutputColumn", "OutputTable", "load_tables"]

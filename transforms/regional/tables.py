"""The regional panel's output tables, declared in ``transforms/regional/tables/*.yml`` (see
``transforms.output_tables``): the one place their grain, key, partitions and columns are stated."""

from __future__ import annotations

from pathlib import Path

from transforms.output_tables import OutputTable, load_tables

TABLES_DIR = Path(__file__).resolve().parent / "tables"
REGIONAL_TABLES: dict[str, OutputTable] = load_tables(str(TABLES_DIR))


def table(name: str) -> OutputTable:
    return REGIONAL_TABLES[name]

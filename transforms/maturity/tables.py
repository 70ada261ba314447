"""The maturity output tables, declared in ``transforms/maturity/tables/*.yml`` (see
``transforms.output_tables``): the one place their grain, key, partitions and columns are stated."""

from __future__ import annotations

from pathlib import Path

from transforms.output_tables import OutputTable, load_tables

TABLES_DIR = Path(__file__).resolve().parent / "tables"
MATURITY_TABLES: dict[str, OutputTable] = load_tables(str(TABLES_DIR))
#: The order they are built and listed in.
ORDER = ("triangle", "development_factors", "completion", "completion_period")


def table(name: str) -> OutputTable:
    return MATURITY_TABLES[name]

"""Write and read the harmonised Vektis table as a Hive-partitioned parquet dataset.

Layout: ``<root>/year=YYYY/part-0.parquet`` (zstd). The ``year`` column lives only in the folder
name, as the Hive convention expects; files that *also* contain it make pyarrow/pandas refuse the
dataset (the file's Int16 and the path's inferred integer type cannot be merged). A query for one
year reads one folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from transforms.vektis.harmonise import LONG_SCHEMA

PARTITION_FILE = "part-0.parquet"


def write_long_partitioned(long: pl.DataFrame, root: Path | str) -> Path:
    """Replace ``root`` with the long table partitioned by year.

    The whole folder is replaced so a run never leaves partitions of years from an earlier run
    behind (the reports and the validation of a run describe exactly what is in the folder).
    """
    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for (year,), part in long.partition_by("year", as_dict=True, maintain_order=True).items():
        folder = root / f"year={year}"
        folder.mkdir()
        part.drop("year").write_parquet(folder / PARTITION_FILE, compression="zstd", statistics=True)
    return root


def read_long(root: Path | str) -> pl.DataFrame:
    """Read the partitioned dataset back with the exact harmonised schema and column order."""
    root = Path(root)
    if not any(root.glob("year=*/*.parquet")):
        raise FileNotFoundError(f"no harmonised Vektis partitions under {root}")
    frame = pl.read_parquet(
        root / "year=*" / "*.parquet",
        hive_partitioning=True,
        hive_schema={"year": pl.Int16},
    )
    return frame.select([pl.col(name).cast(dtype) for name, dtype in LONG_SCHEMA.items()]).sort(
        "year", maintain_order=True
    )

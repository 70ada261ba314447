"""``transforms.output_tables.OutputTable``: writing never leaves a half-written part file where a
reader looks, and a task can read its own partitions while others are still being written (the
panels' bundle tasks read their own benchmark partition while other bundles write theirs)."""

from __future__ import annotations

import polars as pl
import pytest

from transforms.output_tables import OutputTable

SPEC = OutputTable(
    table="cost",
    description="a test table",
    grain="one row per bundle, year and unit",
    key=("bundle_id", "year", "unit"),
    partition_by=("bundle_id", "year"),
    columns=(
        {"name": "bundle_id", "type": "string", "description": "the bundle"},
        {"name": "year", "type": "int32", "description": "the year"},
        {"name": "unit", "type": "string", "description": "the unit"},
        {"name": "cents", "type": "int64", "description": "money"},
    ),
)


def rows(bundle: str, years: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "bundle_id": [bundle] * len(years),
            "year": years,
            "unit": ["a"] * len(years),
            "cents": list(range(len(years))),
        }
    )


def test_a_partition_is_read_alone_whatever_the_other_partitions_hold(tmp_path):
    SPEC.write(rows("hip_oa", [2020, 2021]), tmp_path)
    SPEC.write(rows("cataract", [2020]), tmp_path)
    other = tmp_path / "cost" / "bundle_id=knee_oa" / "year=2020" / "part-0.parquet"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"PAR1 half written")  # another task's file, not finished
    hip = SPEC.read(tmp_path, partition={"bundle_id": "hip_oa"})
    assert hip.columns == SPEC.column_names
    assert hip.sort("year").to_dicts() == rows("hip_oa", [2020, 2021]).to_dicts()
    assert SPEC.read(tmp_path, partition={"bundle_id": "cataract", "year": 2020}).height == 1
    assert SPEC.read(tmp_path, partition={"bundle_id": "none"}).height == 0
    with pytest.raises(ValueError, match="not partitioned by"):
        SPEC.read(tmp_path, partition={"unit": "a"})


def test_writing_leaves_only_finished_part_files(tmp_path):
    written = SPEC.write(rows("hip_oa", [2020, 2021]), tmp_path)
    assert sorted(p.name for p in (tmp_path / "cost").rglob("*") if p.is_file()) == ["part-0.parquet"] * 2
    assert all(p.is_file() for p in written)
    assert SPEC.read(tmp_path).height == 2

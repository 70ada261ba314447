"""Piece files (transforms.ingest.pieces): what a destination reads back is exactly the rows every
writer sent it, in writer and row order, with their types."""

from __future__ import annotations

from datetime import date

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.ingest.pieces import piece_files, read_piece, write_pieces

ROW = st.tuples(
    st.integers(0, 5),  # destination
    st.text(max_size=6),
    st.none() | st.integers(-(2**62), 2**62),
    st.lists(st.sampled_from(["a.b.unique", "a.c.in_range"]), max_size=2),
    st.none() | st.dates(date(1990, 1, 1), date(2030, 12, 31)),
)


def frame_of(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "_bucket": pl.Int32,
            "claim_id": pl.String,
            "amount": pl.Int64,
            "_failed": pl.List(pl.String),
            "period_start": pl.Date,
        },
        orient="row",
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(ROW, max_size=30), min_size=1, max_size=4))
def test_each_destination_reads_exactly_its_rows_in_order(tmp_path_factory, writers):
    folder = tmp_path_factory.mktemp("pieces")
    frames = [frame_of(rows).with_row_index("_row") for rows in writers]
    for index, frame in enumerate(frames):
        counts = write_pieces(frame, "_bucket", folder / f"p{index:03d}.arrow")
        assert counts == dict(sorted(frame.group_by("_bucket").len().iter_rows()))
    files = piece_files(folder)
    assert [f.name for f in files] == [f"p{i:03d}.arrow" for i, f in enumerate(frames) if f.height]
    assert not list(folder.glob("*.writing"))
    everything = pl.concat(frames)
    for destination in range(7):
        expected = everything.filter(pl.col("_bucket") == destination).drop("_bucket")
        got = read_piece(files, destination)
        if expected.height == 0:
            assert got is None
        else:
            assert got.equals(expected), destination
            assert got.schema == expected.schema


def test_files_with_different_columns_are_concatenated_by_name(tmp_path):
    """A column that one partition lacks (or holds only nulls of another type) is null there, as
    a folder of Parquet files read by name would give."""
    first = pl.DataFrame({"_bucket": [1, 2], "claim_id": ["A", "B"], "note": ["x", "y"]})
    second = pl.DataFrame({"_bucket": [2, 1], "claim_id": ["C", "D"], "note": [None, None]})
    third = pl.DataFrame({"_bucket": [1], "claim_id": ["E"]})
    for name, frame in (("a", first), ("b", second), ("c", third)):
        write_pieces(frame, "_bucket", tmp_path / f"{name}.arrow")
    got = read_piece(piece_files(tmp_path), 1)
    assert got.to_dict(as_series=False) == {"claim_id": ["A", "D", "E"], "note": ["x", None, None]}


def test_an_empty_frame_writes_no_file(tmp_path):
    assert write_pieces(pl.DataFrame({"_bucket": [], "x": []}), "_bucket", tmp_path / "p.arrow") == {}
    assert piece_files(tmp_path) == [] and piece_files(tmp_path / "absent") == []

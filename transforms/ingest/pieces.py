"""Staging files that hold one writer's rows for many readers: a piece per destination.

The ingest shuffle sends every partition's rows to every patient bucket (and its claim ids to
every id-part). One file per (partition, destination) makes the number of staging files grow with
the square of the delivery, as both the partitions and the buckets grow with it, and a small file
costs about a millisecond to write and another to read, whatever it holds. Here a writer writes
one Arrow IPC file with the rows of each destination as their own record batches, and the file's
schema metadata says which batches belong to which destination; a reader opens every writer's
file and reads only its own batches (the IPC footer is a list of offsets: no row of another
destination is decoded). Arrow IPC rather than Parquet because the pieces are read once, whole,
by the next stage: decoding and statistics would be spent for nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa

#: Schema metadata key: ``{"destination": [first batch, end batch]}`` as JSON.
PIECES_KEY = b"zorgpad.pieces"
SUFFIX = ".arrow"
_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


def write_pieces(frame: pl.DataFrame, destination: str, path: Path) -> dict[int, int]:
    """Write ``frame`` to ``path`` as one piece per value of its integer column ``destination``
    (which is not written), rows in their order in ``frame``; returns the rows per destination.

    The frame is sorted by destination once (stably) and converted to Arrow once; each piece is a
    zero-copy slice of it, which the IPC writer truncates to the slice's own bytes. Written under a
    temporary name and renamed, so a reader never sees a half-written file (a task re-run after a
    worker's death rewrites it whole). Nothing is written for an empty frame."""
    if frame.height == 0:
        return {}
    ordered = frame.sort(destination, maintain_order=True)
    counts = dict(ordered.group_by(destination, maintain_order=True).len().iter_rows())
    table = ordered.drop(destination).to_arrow()
    ranges: dict[str, list[int]] = {}
    batches: list[pa.RecordBatch] = []
    offset = 0
    for key, rows in counts.items():
        piece = table.slice(offset, rows).to_batches()
        ranges[str(key)] = [len(batches), len(batches) + len(piece)]
        batches.extend(piece)
        offset += rows
    schema = table.schema.with_metadata({PIECES_KEY: json.dumps(ranges).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    writing = path.with_name(path.name + ".writing")
    with pa.OSFile(str(writing), "wb") as sink, pa.ipc.new_file(sink, schema, options=_OPTIONS) as writer:
        for batch in batches:
            writer.write_batch(batch)
    os.replace(writing, path)
    return {int(key): rows for key, rows in counts.items()}


def piece_files(folder: Path) -> list[Path]:
    """The piece files in ``folder``, in name order (the order their rows are concatenated in)."""
    return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def iter_tables(files: Iterable[Path], destination: int) -> Iterator[pa.Table]:
    """The rows that each of ``files`` holds for ``destination``, one Arrow table per file that
    has any; only that file's footer and the piece's own batches are read."""
    for path in files:
        with pa.OSFile(str(path), "rb") as source:
            reader = pa.ipc.open_file(source)
            ranges = json.loads(reader.schema.metadata[PIECES_KEY])
            if str(destination) not in ranges:
                continue
            first, end = ranges[str(destination)]
            schema = reader.schema.remove_metadata()
            yield pa.Table.from_batches([reader.get_batch(i) for i in range(first, end)], schema)


def iter_piece(files: Iterable[Path], destination: int) -> Iterator[pl.DataFrame]:
    """:func:`iter_tables` as polars frames (for a reader that holds one file's piece at a time)."""
    for table in iter_tables(files, destination):
        yield pl.from_arrow(table)


def read_piece(files: Iterable[Path], destination: int) -> pl.DataFrame | None:
    """The rows that ``files`` hold for ``destination``, file after file, or None if none does.
    Files whose columns differ (a column absent or all null in one partition) are concatenated by
    column name, as Parquet files of a folder would be. Concatenated as Arrow and converted once:
    a conversion per piece would cost more than reading it."""
    tables = list(iter_tables(files, destination))
    if not tables:
        return None
    return pl.from_arrow(pa.concat_tables(tables, promote_options="permissive"))

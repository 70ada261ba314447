"""What the ingest shuffle costs per partition as the number of patient buckets grows.

    python -m bench.staging_fanout DELIVERY [--buckets 16 152] [--table pharmacy] [--partitions 3]

The number of partitions grows with the delivery and so does the number of buckets (about 2 M
rows each). Written as one staging file per (partition, bucket), as ingest did before piece files,
the files grow with the square of the delivery: about 2.3 thousand at 100k patients, 213 thousand
at 1M. This probe takes real partitions of a delivery, splits their rows over ``--buckets`` random
buckets and times, in this process (one thread), both layouts: ``files``, one lz4 Parquet file per
bucket without statistics, every file read back; ``pieces``, one piece file per partition
(``transforms.ingest.pieces``, what the partition step writes), every bucket's piece read back.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from transforms.ingest.pieces import piece_files, read_piece, write_pieces


def fanout_seconds(frames: list[pl.DataFrame], buckets: int, folder: Path, layout: str) -> dict[str, float]:
    """Write each of ``frames`` (a partition) split over ``buckets`` random buckets into
    ``folder`` in ``layout``, then read every bucket's rows of all partitions back, as a bucket
    task does; seconds per partition."""
    rng = np.random.default_rng(0)
    splits = [f.with_columns(pl.Series("_bucket", rng.integers(0, buckets, f.height), dtype=pl.Int32)) for f in frames]
    cpu, wall = time.process_time(), time.perf_counter()
    for index, split in enumerate(splits):
        if layout == "pieces":
            write_pieces(split, "_bucket", folder / f"p{index:05d}.arrow")
            continue
        for (bucket,), rows in split.partition_by("_bucket", as_dict=True, maintain_order=True).items():
            path = folder / f"bucket={bucket}" / f"p{index:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            rows.drop("_bucket").write_parquet(path, compression="lz4", statistics=False)
    written = {"write_cpu_s": time.process_time() - cpu, "write_wall_s": time.perf_counter() - wall}
    cpu, wall = time.process_time(), time.perf_counter()
    files = piece_files(folder)
    for bucket in range(buckets):
        if layout == "pieces":
            read_piece(files, bucket)
        else:
            parts = sorted((folder / f"bucket={bucket}").glob("*.parquet"))
            pl.concat([pl.read_parquet(f) for f in parts], how="diagonal_relaxed")
    read = {"read_cpu_s": time.process_time() - cpu, "read_wall_s": time.perf_counter() - wall}
    return {key: value / len(frames) for key, value in (written | read).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("delivery", type=Path)
    parser.add_argument("--table", default="pharmacy")
    parser.add_argument("--buckets", type=int, nargs="+", default=[16, 152])
    parser.add_argument(
        "--partitions", type=int, default=4, help="partitions of the table to write and read (the first ones)"
    )
    args = parser.parse_args()
    files = sorted((args.delivery / args.table).rglob("*.parquet"))[: args.partitions]
    if not files:
        raise SystemExit(f"error: no parquet files under {args.delivery / args.table}")
    frames = [pl.read_parquet(file) for file in files]
    rows = sum(f.height for f in frames) // len(frames)
    print(f"{len(frames)} partition(s) of {args.table}, {rows:,} rows each on average; seconds per partition")
    print(f"{'layout':>7} {'buckets':>8} {'write cpu':>10} {'write wall':>11} {'read cpu':>9} {'read wall':>10}")
    for layout, buckets in itertools.product(("files", "pieces"), args.buckets):
        folder = Path(tempfile.mkdtemp(prefix="zorgpad-fanout-"))
        try:
            s = fanout_seconds(frames, buckets, folder, layout)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(
            f"{layout:>7} {buckets:>8} {s['write_cpu_s']:>9.3f}s {s['write_wall_s']:>10.3f}s "
            f"{s['read_cpu_s']:>8.3f}s {s['read_wall_s']:>9.3f}s"
        )


if __name__ == "__main__":
    main()

"""What the ingest shuffle costs per partition as the number of patient buckets grows.

    python -m bench.staging_fanout DELIVERY [--buckets 16 152] [--table pharmacy] [--partitions 3]

The partition step writes one staging file per (partition, bucket) that receives rows
(``transforms.ingest.partition_stage``), and each bucket task reads one file per partition. The
number of partitions grows with the delivery and so does the number of buckets (about 2 M rows
each), so the staging files grow with the square of the delivery: about 2.3 thousand at 100k
patients, 213 thousand at 1M. This probe takes real partitions of a delivery, splits their rows
over ``--buckets`` random buckets and times, in this process (one thread), writing the files the
way the partition step does (lz4 Parquet, no statistics, one folder per bucket) and reading them
all back: the cost per partition that does not depend on its rows but on the fan-out.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def fanout_seconds(frame: pl.DataFrame, buckets: int, folder: Path) -> dict[str, float]:
    """Write ``frame`` split over ``buckets`` random buckets into ``folder``, read it back; seconds."""
    split = frame.with_columns(pl.Series("_bucket", np.random.default_rng(0).integers(0, buckets, frame.height)))
    cpu, wall = time.process_time(), time.perf_counter()
    for (bucket,), rows in split.partition_by("_bucket", as_dict=True, maintain_order=True).items():
        path = folder / f"bucket={bucket}" / "part.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows.drop("_bucket").write_parquet(path, compression="lz4", statistics=False)
    written = {"write_cpu_s": time.process_time() - cpu, "write_wall_s": time.perf_counter() - wall}
    cpu, wall = time.process_time(), time.perf_counter()
    for path in folder.rglob("*.parquet"):
        pl.read_parquet(path)
    return written | {"read_cpu_s": time.process_time() - cpu, "read_wall_s": time.perf_counter() - wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("delivery", type=Path)
    parser.add_argument("--table", default="pharmacy")
    parser.add_argument("--buckets", type=int, nargs="+", default=[16, 152])
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the table to time (the first ones)")
    args = parser.parse_args()
    files = sorted((args.delivery / args.table).rglob("*.parquet"))[: args.partitions]
    if not files:
        raise SystemExit(f"error: no parquet files under {args.delivery / args.table}")
    print(f"{'buckets':>8} {'rows':>9} {'write cpu':>10} {'write wall':>11} {'read cpu':>9} {'read wall':>10}")
    for buckets in args.buckets:
        for file in files:
            frame = pl.read_parquet(file)
            folder = Path(tempfile.mkdtemp(prefix="zorgpad-fanout-"))
            try:
                s = fanout_seconds(frame, buckets, folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            print(
                f"{buckets:>8} {frame.height:>9,} {s['write_cpu_s']:>9.3f}s {s['write_wall_s']:>10.3f}s "
                f"{s['read_cpu_s']:>8.3f}s {s['read_wall_s']:>9.3f}s"
            )


if __name__ == "__main__":
    main()

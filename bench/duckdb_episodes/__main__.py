"""python -m bench.duckdb_episodes ROOT [--bundles hip_oa,cataract] [--data-as-of YYYY-MM-DD]
[--runout-months 12] [--threads N] [--repeat K] [--out DIR]

Builds the episodes with the DuckDB SQL peer and prints counts and the wall-clock time.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl

from . import BUNDLES, build_episodes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.duckdb_episodes", description=__doc__.split("\n\n")[-1].strip()
    )
    parser.add_argument("root", type=Path, help="delivery or store: one folder per table")
    parser.add_argument("--bundles", default="hip_oa,cataract", help=f"comma-separated, from {sorted(BUNDLES)}")
    parser.add_argument(
        "--data-as-of", type=date.fromisoformat, default=None, help="default: data_as_of in ROOT/delivery.json"
    )
    parser.add_argument("--runout-months", type=int, default=12)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="run K times, report each time")
    parser.add_argument("--out", type=Path, default=None, help="write episodes.parquet and episode_lines.parquet here")
    args = parser.parse_args(argv)

    bundles = tuple(b.strip() for b in args.bundles.split(",") if b.strip())
    times = []
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        episodes, lines = build_episodes(
            args.root,
            bundles=bundles,
            data_as_of=args.data_as_of,
            runout_months=args.runout_months,
            threads=args.threads,
        )
        times.append(time.perf_counter() - t0)

    with pl.Config(tbl_rows=50, tbl_hide_dataframe_shape=True):
        print(episodes.group_by("bundle_id", "status").len().sort("bundle_id", "status"))
        print(
            lines.group_by("bundle_id", "component")
            .agg(pl.len().alias("lines"), pl.col("allocated_cents").sum(), pl.col("allocated_standardised_cents").sum())
            .sort("bundle_id", "component")
        )
    print(f"episodes: {episodes.height}  episode_lines: {lines.height}")
    print("seconds: " + ", ".join(f"{t:.3f}" for t in times) + (f"  (best {min(times):.3f})" if len(times) > 1 else ""))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        episodes.write_parquet(args.out / "episodes.parquet")
        lines.write_parquet(args.out / "episode_lines.parquet")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

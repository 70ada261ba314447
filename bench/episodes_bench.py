"""Benchmark the episode engine against the independent DuckDB implementation on the same store.

    python -m bench.episodes_bench STORE --workers 1 2 --bundles hip_oa,cataract --repeat 3

For each worker count it runs the polars engine on a local Dask cluster of that many worker
processes (one thread each) and the DuckDB peer with that many threads, both writing their episodes
and episode lines as Hive-partitioned parquet to a temporary folder, measuring wall time and
the peak memory of the process tree. Reported: claim lines in the store, claim lines per second
per core, the engine/DuckDB time ratio, and the engine's speed-up from 1 to 2 workers, next to the
machine's own ceiling for that speed-up (:mod:`bench.machine_scaling`, measured at the start of the
run) and the CPU other processes used during each run. Results are appended to
``bench/results/episodes.jsonl``; ``python -m bench.report`` turns them into tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from bench.machine_scaling import scaling_ceiling
from bench.memory import TreeMemorySampler
from bench.report import RESULTS, append_result, machine_info

CLAIM_TABLES = ("dbc", "gp", "pharmacy", "paramedical", "maternity")


def claim_lines(store: Path) -> int:
    return sum(pl.scan_parquet(store / t / "**" / "*.parquet").select(pl.len()).collect().item() for t in CLAIM_TABLES)


def _warm_worker() -> bool:
    """Import the engine and load the bundle definitions once per worker process, as a long-running
    cluster would have them (measured separately as the warm-up)."""
    from transforms.bundles import load_bundles
    from transforms.episodes import build  # noqa: F401

    load_bundles()
    return True


def run_engine(store: Path, bundles: list[str], workers: int) -> dict:
    from distributed import Client

    from flows.dask_cluster import dask_cluster, dask_mapper
    from transforms.episodes.run import build_episodes

    out = Path(tempfile.mkdtemp(prefix="zorgpad-episodes-bench-")) / "out"
    with dask_cluster(workers=workers) as address:
        warm_started = time.perf_counter()
        with Client(address, set_as_default=False) as client:
            client.run(_warm_worker)
        warm_up = time.perf_counter() - warm_started
        sampler = TreeMemorySampler()
        with sampler:
            started = time.perf_counter()
            manifest = build_episodes(store, out, bundles=bundles, mapper=dask_mapper(address), workers=workers)
            wall = time.perf_counter() - started
    shutil.rmtree(out.parent, ignore_errors=True)
    memory = sampler.summary()
    return {
        "wall_s": round(wall, 2),
        "warm_up_s": round(warm_up, 2),
        "episodes": manifest["episodes"],
        "timing": manifest["timing_seconds"],
        "peak_tree_rss_mb": round(memory["peak_tree_rss_mb"], 1),
        "peak_worker_rss_mb": round(memory["peak_worker_rss_mb"], 1),
        "cpu_seconds_other": memory["cpu_seconds_other"],
    }


def _duckdb_once(store: str, bundles: list[str], threads: int) -> tuple[float, dict]:
    """One timed DuckDB build (in a child process: see :func:`run_duckdb`)."""
    from bench.duckdb_episodes import build_episodes as duckdb_episodes
    from transforms.episodes.run import data_as_of_of

    out = Path(tempfile.mkdtemp(prefix="zorgpad-duckdb-bench-")) / "out"
    try:
        started = time.perf_counter()
        # writes the same Hive-partitioned outputs as the engine, so both do the same work
        episodes, _ = duckdb_episodes(
            Path(store), tuple(bundles), data_as_of=data_as_of_of(Path(store)), threads=threads, out=out
        )
        wall = time.perf_counter() - started
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    return wall, dict(episodes.group_by("bundle_id").len().iter_rows())


def run_duckdb(store: Path, bundles: list[str], threads: int) -> dict:
    """The DuckDB peer in a child process of its own: its memory (gigabytes of buffer pool at 1M
    patients) is measured as its own and is not left behind in this process, whose RSS counts in the
    engine's next measurement."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    sampler = TreeMemorySampler()
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        pool.submit(int, 0).result()  # the process is started before the measurement
        with sampler:
            wall, counts = pool.submit(_duckdb_once, str(store), bundles, threads).result()
    memory = sampler.summary()
    return {
        "wall_s": round(wall, 2),
        "episodes": counts,
        "peak_tree_rss_mb": round(memory["peak_tree_rss_mb"], 1),
        "cpu_seconds_other": memory["cpu_seconds_other"],
    }


def _median_run(runs: list[dict]) -> dict:
    """The run with the median wall time, with every wall time and the highest memory of all runs."""
    ordered = sorted(runs, key=lambda r: r["wall_s"])
    median = dict(ordered[(len(ordered) - 1) // 2])
    median["walls_s"] = [r["wall_s"] for r in runs]
    for key in ("peak_tree_rss_mb", "peak_worker_rss_mb"):
        if key in median:
            median[key] = max(r[key] for r in runs)
    median["cpu_seconds_other"] = round(sum(r.get("cpu_seconds_other") or 0 for r in runs) / len(runs), 1)
    return median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--bundles", default="hip_oa,cataract")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each engine per worker count (median reported)")
    parser.add_argument("--label", default=None, help="free text stored with the result")
    parser.add_argument("--ceiling-rounds", type=int, default=5, help="rounds of the machine's 1->2 process probe")
    parser.add_argument("--results", type=Path, default=RESULTS / "episodes.jsonl", help="JSON-lines file to append to")
    args = parser.parse_args(argv)
    bundles = [b.strip() for b in args.bundles.split(",")]
    machine = machine_info()  # at the start: the date and commit of the code measured
    ceiling = scaling_ceiling(rounds=args.ceiling_rounds)
    print(f"machine: two CPU-bound processes run {ceiling['speedup_1_to_2']}x faster than one", file=sys.stderr)
    lines = claim_lines(args.store)
    patients = (
        pl.scan_parquet(args.store / "insured" / "**" / "*.parquet")
        .select(pl.col("patient_id").n_unique())
        .collect()
        .item()
    )
    runs = []
    for n in args.workers:
        engines, peers = [], []
        for _ in range(max(1, args.repeat)):  # taking turns, so a slow minute of the machine hits both
            engines.append(run_engine(args.store, bundles, n))
            peers.append(run_duckdb(args.store, bundles, n))
        engine, peer = _median_run(engines), _median_run(peers)
        runs.append(
            {
                "workers": n,
                "engine": engine,
                "duckdb": peer,
                "engine_lines_per_s_per_core": round(lines / engine["wall_s"] / n, 1),
                "duckdb_lines_per_s_per_core": round(lines / peer["wall_s"] / n, 1),
                "ratio_engine_to_duckdb": round(engine["wall_s"] / peer["wall_s"], 2),
            }
        )
        print(
            f"{n} worker(s): engine {engine['wall_s']} s ({engine['peak_tree_rss_mb']:.0f} MB), "
            f"DuckDB {peer['wall_s']} s ({peer['peak_tree_rss_mb']:.0f} MB), ratio {runs[-1]['ratio_engine_to_duckdb']}",
            file=sys.stderr,
        )
    by_workers = {r["workers"]: r for r in runs}
    result = {
        "benchmark": "episodes",
        "label": args.label,
        "store": str(args.store),
        "bundles": bundles,
        "patients": patients,
        "claim_lines": lines,
        "repeat": max(1, args.repeat),
        "runs": runs,
        "engine_speedup_1_to_2": round(by_workers[1]["engine"]["wall_s"] / by_workers[2]["engine"]["wall_s"], 2)
        if 1 in by_workers and 2 in by_workers
        else None,
        "machine_speedup_1_to_2": ceiling,
        "started_utc": machine["date"],
        "machine": machine,
    }
    append_result(args.results, result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

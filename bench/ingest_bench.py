"""Benchmark ``zorgpad ingest``: wall time per step, rows in, rows/s (per core), peak memory of the
process tree including the Dask worker processes.

    python -m bench.ingest_bench DELIVERY --store /tmp/bench/store100k --workers 2

Runs :func:`transforms.ingest.run.ingest` with ``mapper=dask_mapper(address)`` inside
``flows.dask_cluster.dask_cluster(workers=N)`` (a local cluster of N worker processes, as the
flow uses), while :class:`bench.memory.TreeMemorySampler` samples the RSS of this process (which
also hosts the scheduler and the nannies) and all descendants every 0.2 s.

The step functions of ``transforms.ingest.run`` are wrapped (in this process only, nothing is
changed in the package) to record when each step starts and ends, so the peak memory of each step
can be reported; the step durations themselves are the manifest's ``timing_seconds``.

``--max-minutes`` stops a run that takes too long (the run is interrupted, its temporary folder is
removed by ingest itself) and records it with ``status: timeout`` and the step it was in.
Appends one JSON line to ``bench/results/ingest.jsonl`` and prints a summary.
"""

from __future__ import annotations

import _thread
import argparse
import functools
import json
import shutil
import sys
import threading
import time
from pathlib import Path

from bench.memory import MB, TreeMemorySampler
from bench.report import RESULTS, append_result, folder_bytes, human_bytes, machine_info
from flows.dask_cluster import RECYCLE_WORKERS_AFTER

STEPS = ("plan_run", "run_partitions", "run_id_parts", "run_buckets", "close_books", "publish")


class StepClock:
    """Wraps the step functions of ``transforms.ingest.run`` to record [step, start, end] seconds."""

    def __init__(self, sampler: TreeMemorySampler):
        self.sampler = sampler
        self.spans: list[list] = []
        self.current: str | None = None
        self._saved: dict = {}

    def __enter__(self) -> StepClock:
        from transforms.ingest import run as module

        for name in STEPS:
            original = getattr(module, name)
            self._saved[name] = original

            @functools.wraps(original)
            def wrapper(*args, __name=name, __original=original, **kwargs):
                start = time.perf_counter() - self.sampler.started
                self.current = __name
                try:
                    return __original(*args, **kwargs)
                finally:
                    self.spans.append([__name, round(start, 2), round(time.perf_counter() - self.sampler.started, 2)])
                    self.current = None

            setattr(module, name, wrapper)
        return self

    def __exit__(self, *exc) -> None:
        from transforms.ingest import run as module

        for name, original in self._saved.items():
            setattr(module, name, original)


def _heartbeat(
    stop: threading.Event,
    sampler: TreeMemorySampler,
    clock: StepClock,
    store: Path,
    every: float,
    max_seconds: float | None,
    timed_out: list,
) -> None:
    while not stop.wait(every):
        elapsed = time.perf_counter() - sampler.started
        tmp = sorted(store.parent.glob(f"{store.name}.tmp-*"))
        size = sum(folder_bytes(t) for t in tmp)
        print(
            f"  {elapsed / 60:6.1f} min  step {clock.current or '-':15s} tree RSS {sampler.current_total() / MB:7.0f} MB"
            f"  (peak {sampler.peak_total / MB:7.0f} MB)  work folder {human_bytes(size)}",
            file=sys.stderr,
            flush=True,
        )
        if max_seconds is not None and elapsed > max_seconds and not timed_out:
            timed_out.append(clock.current)
            print(f"  stopping: more than {max_seconds / 60:.0f} minutes", file=sys.stderr, flush=True)
            _thread.interrupt_main()


def run(
    delivery: Path,
    store: Path,
    workers: int,
    *,
    buckets: int | None = None,
    data_docs: bool = True,
    interval: float = 0.2,
    max_minutes: float | None = None,
    heartbeat: float = 60.0,
    label: str | None = None,
    recycle_after: int | None = None,
) -> dict:
    from flows.dask_cluster import dask_cluster, dask_mapper
    from transforms.ingest.run import ingest

    machine = machine_info()  # at the start: the date and commit of the code measured
    sampler = TreeMemorySampler(interval=interval)
    clock = StepClock(sampler)
    stop, timed_out = threading.Event(), []
    status, error, manifest = "ok", None, None
    cluster_start = ingest_wall = None
    with sampler, clock:
        beat = threading.Thread(
            target=_heartbeat,
            daemon=True,
            args=(stop, sampler, clock, store, heartbeat, max_minutes * 60 if max_minutes else None, timed_out),
        )
        beat.start()
        t0 = time.perf_counter()
        try:
            with dask_cluster(workers=workers) as address:
                cluster_start = time.perf_counter() - t0
                t1 = time.perf_counter()
                try:
                    result = ingest(
                        delivery,
                        store,
                        n_buckets=buckets,
                        mapper=dask_mapper(address, recycle_after),
                        data_docs=data_docs,
                    )
                    manifest = result.manifest
                finally:
                    ingest_wall = time.perf_counter() - t1
        except KeyboardInterrupt:
            if not timed_out:
                raise
            status = f"timeout after {max_minutes:.0f} min in {timed_out[0]}"
        except Exception as exc:  # record a failed run too (e.g. a worker killed by the memory limit)
            status, error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
        finally:
            total_wall = time.perf_counter() - t0
            stop.set()
    memory = sampler.summary()
    step_peaks = {name: round(sampler.peak_between(a, b) / MB, 1) for name, a, b in clock.spans}
    if clock.current and status != "ok":
        last = clock.spans[-1][2] if clock.spans else 0
        step_peaks[clock.current] = round(sampler.peak_between(last, 1e12) / MB, 1)
    cores = min(workers, machine["cpu_count"])
    out = {
        "benchmark": "ingest",
        "label": label,
        "recycle_workers_after": recycle_after,
        "status": status,
        "error": error,
        "params": {
            "delivery": str(delivery),
            "store": str(store),
            "workers": workers,
            "buckets": buckets,
            "data_docs": data_docs,
        },
        "delivery_id": json.loads((delivery / "delivery.json").read_text()).get("delivery_id"),
        "delivery_bytes": folder_bytes(delivery),
        "cluster_start_s": round(cluster_start, 2) if cluster_start is not None else None,
        "wall_s": round(ingest_wall if ingest_wall is not None else total_wall, 2),
        "total_wall_s": round(total_wall, 2),
        "steps": clock.spans,
        "step_peak_tree_rss_mb": step_peaks,
        "cores": cores,
        "memory": {k: v for k, v in memory.items() if k != "wall_s"},
        "memory_timeline_mb": sampler.compact_timeline(),
        "started_utc": machine["date"],
        "machine": machine,
    }
    if manifest is not None:
        rows_in = sum(b["rows_in"] for b in manifest["books"].values())
        out |= {
            "buckets": manifest["buckets"],
            "id_parts": manifest.get("id_parts"),
            "timing_seconds": manifest["timing_seconds"],
            "rows_in": rows_in,
            "rows_in_by_table": {t: b["rows_in"] for t, b in manifest["books"].items()},
            "rows_stored": sum(b["rows_stored"] for b in manifest["books"].values()),
            "rows_quarantined": sum(b["rows_quarantined"] for b in manifest["books"].values()),
            "balanced": manifest["balanced"],
            "rows_per_s": round(rows_in / out["wall_s"], 1),
            "rows_per_s_per_core": round(rows_in / out["wall_s"] / cores, 1),
            "bytes_on_disk": folder_bytes(store),
        }
    return out


def print_summary(r: dict) -> None:
    p, m = r["params"], r["memory"]
    print(
        f"ingest {r['delivery_id']} ({human_bytes(r['delivery_bytes'])}), {p['workers']} Dask workers, "
        f"buckets {r.get('buckets') or p['buckets'] or 'auto'}, id-parts {r.get('id_parts') or 'auto'}: {r['status']}"
    )
    if r.get("error"):
        print(f"  error              {r['error'][:500]}")
    print(
        f"  wall time          {r['wall_s']:,.1f} s ({r['wall_s'] / 60:.1f} min) in ingest, "
        f"cluster start {r['cluster_start_s'] or 0:.1f} s, total {r['total_wall_s']:,.1f} s"
    )
    if r.get("timing_seconds"):
        print("  steps (manifest)   " + ", ".join(f"{k} {v:,.1f} s" for k, v in r["timing_seconds"].items()))
    print("  step peak RSS      " + ", ".join(f"{k} {v:,.0f} MB" for k, v in r["step_peak_tree_rss_mb"].items()))
    if r.get("rows_in") is not None:
        print(
            f"  rows in            {r['rows_in']:,} (stored {r['rows_stored']:,}, quarantined {r['rows_quarantined']:,}, "
            f"books balanced: {r['balanced']})"
        )
        print(f"  rows/s             {r['rows_per_s']:,.0f}   per core ({r['cores']}): {r['rows_per_s_per_core']:,.0f}")
        print(f"  store on disk      {human_bytes(r['bytes_on_disk'])}")
    print(
        f"  peak memory tree   {m['peak_tree_rss_mb']:,.0f} MB (at {m['peak_tree_rss_at_s']:.0f} s; {m['samples']} samples)"
    )
    print(
        f"  peak main process  {m['peak_main_rss_mb']:,.0f} MB (scheduler, nannies, driver);  peak per worker "
        f"{m['peak_worker_rss_mb']:,.0f} MB ({m['worker_processes_seen']} worker processes seen)"
    )
    if r.get("duckdb_floor"):
        f = r["duckdb_floor"]
        print(
            f"  DuckDB floor       {f['seconds']:,.1f} s ({f['threads']} threads, {f['buckets']} buckets): "
            f"ingest / floor = {r['ingest_to_floor_ratio']:.2f}"
        )
    print(
        f"  CPU seconds        ours {m['cpu_seconds_tree']:,.0f}, other processes on the machine {m['cpu_seconds_other']:,.0f} "
        f"(utilisation of {r['cores']} cores: {m['cpu_seconds_tree'] / r['total_wall_s'] / r['cores']:.0%})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("delivery", type=Path, help="a delivery folder (with delivery.json)")
    parser.add_argument("--store", type=Path, required=True, help="where the store is written (replaced)")
    parser.add_argument("--workers", type=int, default=2, help="local Dask worker processes")
    parser.add_argument("--buckets", type=int, default=None, help="patient buckets (default: ingest's choice)")
    parser.add_argument("--no-data-docs", action="store_true", help="skip building the GX Data Docs")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (and record a timeout) after this")
    parser.add_argument("--heartbeat", type=float, default=60.0, help="seconds between progress lines on stderr")
    parser.add_argument("--interval", type=float, default=0.2, help="memory sampling interval in seconds")
    parser.add_argument(
        "--recycle-after",
        type=int,
        default=RECYCLE_WORKERS_AFTER,
        help="restart the workers after this many tasks each, as the ingest flow does (0: never)",
    )
    parser.add_argument("--label", help="free text stored with the result")
    parser.add_argument("--results", type=Path, default=RESULTS / "ingest.jsonl")
    parser.add_argument("--no-record", action="store_true", help="do not append to the results file")
    parser.add_argument("--delete", action="store_true", help="delete the store afterwards")
    parser.add_argument(
        "--duckdb-floor",
        action="store_true",
        help="then measure the DuckDB floor (bench/ingest_floor.py) on the same delivery, bucket "
        "count and number of threads, and record the ratio ingest / floor",
    )
    args = parser.parse_args(argv)

    result = run(
        args.delivery,
        args.store,
        args.workers,
        buckets=args.buckets,
        data_docs=not args.no_data_docs,
        interval=args.interval,
        max_minutes=args.max_minutes,
        heartbeat=args.heartbeat,
        label=args.label,
        recycle_after=args.recycle_after or None,
    )
    if args.duckdb_floor and result["status"] == "ok":
        from bench.ingest_floor import measure

        floor = measure(
            args.delivery, args.store.with_name(args.store.name + "-duckdb-floor"), result["buckets"], args.workers
        )
        result["duckdb_floor"] = floor
        result["ingest_to_floor_ratio"] = round(result["wall_s"] / floor["seconds"], 2)
    print_summary(result)
    if not args.no_record:
        append_result(args.results, result)
        print(f"  appended to        {args.results}")
    if args.delete:
        shutil.rmtree(args.store, ignore_errors=True)
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())

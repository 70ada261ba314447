"""Benchmark ``zorgpad synth``: wall time, rows, rows/s (per core), bytes, peak memory of the tree.

    python -m bench.synth_bench --patients 100000 --years 2015-2022 --workers 2 --out /tmp/bench/synth100k

Runs :func:`transforms.synth.generate_delivery` in this process (with ``workers`` spawned worker
processes) while :class:`bench.memory.TreeMemorySampler` samples the RSS of this process and its
workers every 0.2 s. Appends one JSON line to ``bench/results/synth.jsonl`` and prints a summary.
The delivery is kept (the ingest benchmark reads it); ``--delete`` removes it afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from bench.memory import MB, TreeMemorySampler
from bench.report import RESULTS, append_result, folder_bytes, human_bytes, machine_info


def _years(value: str) -> tuple[int, int]:
    first, _, last = value.partition("-")
    return int(first), int(last or first)


def run(
    patients: int,
    years: tuple[int, int],
    workers: int,
    out: Path,
    *,
    block_size: int | None = None,
    seed: int = 7,
    interval: float = 0.2,
    label: str | None = None,
) -> dict:
    from transforms.synth import SynthConfig, generate_delivery, truth_dir

    machine = machine_info()  # at the start: the date and commit of the code measured
    # only what the benchmark varies; everything else (block size, faults, effects) is the generator's default
    config = SynthConfig(
        patients=patients,
        first_year=years[0],
        last_year=years[1],
        seed=seed,
        **({"block_size": block_size} if block_size else {}),
    )
    blocks: list[list[float]] = []  # [seconds, blocks done, tree RSS MB] at each finished block
    sampler = TreeMemorySampler(interval=interval)

    def progress(done: int, total: int) -> None:
        t = time.perf_counter() - sampler.started
        blocks.append([round(t, 1), done, round(sampler.current_total() / MB, 1)])
        if done == total or done % max(1, total // 20) == 0:
            print(
                f"  block {done}/{total} at {t:7.1f} s, tree RSS {sampler.current_total() / MB:7.0f} MB",
                file=sys.stderr,
                flush=True,
            )

    with sampler:
        started = time.perf_counter()
        summary = generate_delivery(config, out, workers=workers, progress=progress)
        wall = time.perf_counter() - started
    memory = sampler.summary()
    rows = summary["rows"]
    total_rows = sum(rows.values())
    cores = min(workers, machine["cpu_count"])
    return {
        "benchmark": "synth",
        "label": label,
        "params": {
            "patients": patients,
            "first_year": years[0],
            "last_year": years[1],
            "workers": workers,
            "block_size": config.block_size,
            "blocks": config.n_blocks,
            "seed": seed,
            "out": str(out),
        },
        "wall_s": round(wall, 2),
        "generator_seconds": summary.get("seconds"),
        "patients_generated": summary.get("patients"),
        "rows": total_rows,
        "rows_by_table": rows,
        "rows_per_s": round(total_rows / wall, 1),
        "cores": cores,
        "rows_per_s_per_core": round(total_rows / wall / cores, 1),
        "bytes_on_disk": folder_bytes(out),
        "truth_bytes_on_disk": folder_bytes(truth_dir(out)),
        "memory": {k: v for k, v in memory.items() if k != "wall_s"},
        "memory_timeline_mb": sampler.compact_timeline(),
        "blocks_timeline": blocks,
        "started_utc": machine["date"],
        "machine": machine,
    }


def print_summary(result: dict) -> None:
    p, m = result["params"], result["memory"]
    print(
        f"synth {p['patients']:,} patients x {p['last_year'] - p['first_year'] + 1} years "
        f"({p['first_year']}-{p['last_year']}), {p['workers']} workers, {p['blocks']} blocks of {p['block_size']:,}"
    )
    print(f"  wall time          {result['wall_s']:,.1f} s ({result['wall_s'] / 60:.1f} min)")
    print(
        f"  rows written       {result['rows']:,}  "
        + ", ".join(f"{t} {n:,}" for t, n in result["rows_by_table"].items())
    )
    print(
        f"  rows/s             {result['rows_per_s']:,.0f}   per core ({result['cores']}): {result['rows_per_s_per_core']:,.0f}"
    )
    print(
        f"  on disk            {human_bytes(result['bytes_on_disk'])} delivery, {human_bytes(result['truth_bytes_on_disk'])} truth"
    )
    print(
        f"  peak memory tree   {m['peak_tree_rss_mb']:,.0f} MB (at {m['peak_tree_rss_at_s']:.0f} s; {m['samples']} samples)"
    )
    print(
        f"  peak main process  {m['peak_main_rss_mb']:,.0f} MB;  peak per worker {m['peak_worker_rss_mb']:,.0f} MB "
        f"({m['worker_processes_seen']} worker processes)"
    )
    print(
        f"  CPU seconds        ours {m['cpu_seconds_tree']:,.0f}, other processes on the machine {m['cpu_seconds_other']:,.0f} "
        f"(utilisation of {result['cores']} cores: {m['cpu_seconds_tree'] / result['wall_s'] / result['cores']:.0%})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.synth_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--years", default="2015-2022", help="first-last, e.g. 2015-2022")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="delivery folder (replaced); truth in OUT.truth")
    parser.add_argument("--block-size", type=int, default=None, help="patients per block (default: the generator's)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--interval", type=float, default=0.2, help="memory sampling interval in seconds")
    parser.add_argument("--label", help="free text stored with the result")
    parser.add_argument("--results", type=Path, default=RESULTS / "synth.jsonl")
    parser.add_argument("--no-record", action="store_true", help="do not append to the results file")
    parser.add_argument("--delete", action="store_true", help="delete the delivery and its truth afterwards")
    args = parser.parse_args(argv)

    result = run(
        args.patients,
        _years(args.years),
        args.workers,
        args.out,
        block_size=args.block_size,
        seed=args.seed,
        interval=args.interval,
        label=args.label,
    )
    print_summary(result)
    if not args.no_record:
        append_result(args.results, result)
        print(f"  appended to        {args.results}")
    if args.delete:
        from transforms.synth import truth_dir

        shutil.rmtree(args.out, ignore_errors=True)
        shutil.rmtree(truth_dir(args.out), ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

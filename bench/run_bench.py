"""End-to-end benchmark: ``zorgpad run`` on generated deliveries of growing size, then ``docs/benchmarks.md``.

    python -m bench.run_bench --patients 100000 1000000 --years 2015-2022 --work /tmp/bench/run

For every size it generates the delivery once (``bench.synth_bench``, kept in ``WORK`` and reused
when a delivery of the same size, years and seed is there), then runs the command a user runs,
``zorgpad run --delivery D --out R --workers N --specs bench/specs``, as a child process on a fresh
run folder, with every process of the tree (the CLI, its Prefect API, the Dask scheduler, nannies
and workers) sampled by :class:`bench.memory.TreeMemorySampler`. The run's own manifest gives each
stage's seconds; the sampler's timeline gives each stage's peak memory. The 1->2 worker speed-up is
measured at the smallest size (``--speedup-at``), next to the machine's own ceiling for it
(``bench.machine_scaling``), because on a virtual machine two vCPUs are often less than two cores.

One JSON line per run goes to ``bench/results/run.jsonl``; ``docs/benchmarks.md`` is rewritten from
all lines of that file (``python -m bench.run_bench --report-only`` rewrites it without running).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from bench.memory import MB, TreeMemorySampler
from bench.report import RESULTS, ROOT, append_result, folder_bytes, load, machine_info

SPECS = Path(__file__).resolve().parent / "specs"
DOC = ROOT / "docs" / "benchmarks.md"
#: The claim tables: what "claim lines" counts (reference tables insured, providers and contracts
#: and the DBC activity detail are rows of the delivery but not claim lines).
CLAIM_TABLES = ("dbc", "gp", "pharmacy", "paramedical", "maternity")
#: A national year: 18 million insured, about 700 million claim lines (docs/benchmarks.md).
NATIONAL_LINES = 700_000_000
TARGET_LINES_PER_S = 150_000
TARGET_PEAK_GB = 8


def _years(value: str) -> tuple[int, int]:
    first, _, last = value.partition("-")
    return int(first), int(last or first)


def delivery_for(
    patients: int, years: tuple[int, int], work: Path, seed: int, workers: int, record: bool = True
) -> Path:
    """The generated delivery of that size in ``work``, made once (the synth benchmark records it)."""
    from bench import synth_bench

    out = work / f"delivery-{patients}-{years[0]}-{years[1]}-s{seed}"
    done = out / "bench-params.json"
    params = {"patients": patients, "years": list(years), "seed": seed}
    if done.exists() and json.loads(done.read_text()) == params:
        return out
    shutil.rmtree(out, ignore_errors=True)
    print(f"generating {patients:,} patients {years[0]}-{years[1]} into {out}", file=sys.stderr, flush=True)
    result = synth_bench.run(patients, years, workers, out, seed=seed, label="for run_bench")
    if record:
        append_result(RESULTS / "synth.jsonl", result)
    done.write_text(json.dumps(params))
    return out


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def run_once(
    delivery: Path, run: Path, workers: int, *, specs: Path = SPECS, interval: float = 0.5, label: str | None = None
) -> dict:
    """One ``zorgpad run`` on a fresh ``run`` folder, measured."""
    machine = machine_info()
    shutil.rmtree(run, ignore_errors=True)
    env = os.environ | {"PREFECT_HOME": str(run.parent / f"{run.name}-prefect-home")}
    env.pop("PREFECT_API_URL", None)
    command = [
        str(Path(sys.executable).with_name("zorgpad")),
        "run",
        "--delivery",
        str(delivery),
        "--out",
        str(run),
        "--workers",
        str(workers),
        "--specs",
        str(specs),
    ]
    sampler = TreeMemorySampler(interval=interval, count_root=False)  # the run's tree, not this harness
    with sampler:
        started_epoch = time.time()
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    memory = sampler.summary()
    result: dict = {
        "benchmark": "run",
        "label": label,
        "status": "ok" if done.returncode == 0 else "failed",
        "params": {"delivery": str(delivery), "run": str(run), "workers": workers, "specs": str(specs)},
        "command": " ".join(["zorgpad", *command[1:]]),
        "wall_s": round(wall, 2),
        "cores": min(workers, machine["cpu_count"]),
        "memory": {k: v for k, v in memory.items() if k not in ("wall_s", "processes")},
        "memory_timeline_mb": sampler.compact_timeline(),
        "printed_lines": len(done.stdout.splitlines()),
        "started_utc": machine["date"],
        "machine": machine,
    }
    if done.returncode != 0:
        result["error"] = (done.stdout + done.stderr)[-3000:]
        return result
    params = (
        json.loads((delivery / "bench-params.json").read_text()) if (delivery / "bench-params.json").exists() else {}
    )
    store = json.loads((run / "store" / "manifest.json").read_text())
    rows_by_table = {t: b["rows_in"] for t, b in store["books"].items()}
    rows = sum(rows_by_table.values())
    lines = sum(rows_by_table.get(t, 0) for t in CLAIM_TABLES)
    manifest = json.loads((run / "manifest.json").read_text())
    stages = {}
    for name, entry in manifest["stages"].items():
        end = _epoch(entry["finished"]) - started_epoch + 1.0  # ISO seconds: the stage ended within that second
        begin = max(end - entry["seconds"] - 1.0, 0.0)
        stages[name] = {
            "seconds": entry["seconds"],
            "outcome": entry.get("outcome"),
            "peak_tree_rss_mb": round(sampler.peak_between(begin, end) / MB, 1),
            "rows_per_s_per_core": round(rows / entry["seconds"] / result["cores"], 1) if entry["seconds"] else None,
        }
    result |= {
        "patients": params.get("patients"),
        "years": params.get("years"),
        "rows": rows,
        "claim_lines": lines,
        "rows_by_table": rows_by_table,
        "rows_per_s": round(rows / wall, 1),
        "rows_per_s_per_core": round(rows / wall / result["cores"], 1),
        "claim_lines_per_s": round(lines / wall, 1),
        "stages": stages,
        "run_bytes": folder_bytes(run),
        "delivery_bytes": folder_bytes(delivery),
        "balanced": store.get("balanced"),
    }
    return result


def print_summary(r: dict) -> None:
    if r["status"] != "ok":
        print(f"run FAILED after {r['wall_s']:.0f} s:\n{r.get('error', '')}")
        return
    print(
        f"{r['patients']:,} patients, {r['rows']:,} rows ({r['claim_lines']:,} claim lines), "
        f"{r['params']['workers']} workers: {r['wall_s']:.0f} s, {r['claim_lines_per_s']:,.0f} claim lines/s, "
        f"peak {r['memory']['peak_tree_rss_mb'] / 1024:.1f} GB"
    )
    for name, s in r["stages"].items():
        print(f"  {name:28s} {s['seconds']:8.1f} s  peak {s['peak_tree_rss_mb']:8.0f} MB")


# -- docs/benchmarks.md ---------------------------------------------------------------------------------
def _latest(results: list[dict]) -> dict[tuple[int, int], dict]:
    """The newest successful run per (patients, workers)."""
    out: dict[tuple[int, int], dict] = {}
    for r in results:
        if r.get("status") == "ok" and r.get("patients"):
            out[(r["patients"], r["params"]["workers"])] = r
    return out


def newest_pair(results: list[dict]) -> tuple[dict, dict] | None:
    """The newest successful 2-worker run that has a 1-worker run of the same size and commit on
    a clean tree, with that run: a speed-up across code versions would measure the code change."""
    ok = [r for r in results if r.get("status") == "ok" and r.get("patients") and not r["machine"].get("git_dirty")]
    for two in sorted((r for r in ok if r["params"]["workers"] == 2), key=lambda r: r["started_utc"], reverse=True):
        ones = [
            r
            for r in ok
            if r["params"]["workers"] == 1
            and r["patients"] == two["patients"]
            and r["machine"]["git_commit"] == two["machine"]["git_commit"]
        ]
        if ones:
            return max(ones, key=lambda r: r["started_utc"]), two
    return None


def _stage_order(name: str) -> tuple[int, str]:
    """Stages in the order a run takes them: ingest, episodes, panels, the DiD specs, the report."""
    order = {"ingest": 0, "episodes": 1, "panels": 2, "report": 9}
    return (order.get(name, 3 if name.startswith("did:") else 8), name)


def _gb(mb: float) -> str:
    return f"{mb / 1024:.1f}"


def report(results: list[dict], scaling: dict | None = None) -> str:
    latest = _latest(results)
    if not latest:
        return "# Benchmarks\n\nNo `zorgpad run` benchmark has been recorded yet: run `python -m bench.run_bench`.\n"
    newest = max(latest.values(), key=lambda r: r["started_utc"])
    m = newest["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench.run_bench` from `bench/results/run.jsonl`; every number below was",
        "measured by it (nothing typed by hand). To measure again:",
        "",
        "```bash",
        'pip install -e ".[bench]"',
        "python -m bench.run_bench --patients 100000 1000000 --years 2015-2022 --work /tmp/bench/run",
        "```",
        "",
        "Each run is the command a user runs, `zorgpad run --delivery D --out R --workers N --specs bench/specs`,",
        "on a fresh run folder (no stage cached): ingest with Great Expectations validation and Data Docs,",
        "all nine bundles' episodes, every panel, one DiD panel with its estimates, and the report. Memory",
        "is the peak resident set of the whole process tree (CLI, Prefect API, Dask scheduler, nannies and",
        "workers), sampled every 0.5 s.",
        "",
        f"Machine of the newest run: {m['cpu_count']} vCPU ({m['cpu_model']}), {m['memory_gb']} GB, "
        f"{m['platform']}, Python {m['python']}, commit `{m['git_commit']}`.",
        "",
        "## End to end",
        "",
        "| patients | years | workers | rows | claim lines | wall | claim lines/s | rows/s per core | peak memory (GB) | other load (CPU s) | date |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (patients, workers), r in sorted(latest.items()):
        years = "-".join(str(y) for y in r.get("years") or [])
        lines.append(
            f"| {patients:,} | {years} | {workers} | {r['rows']:,} | {r['claim_lines']:,} | {r['wall_s'] / 60:.1f} min | "
            f"{r['claim_lines_per_s']:,.0f} | {r['rows_per_s_per_core']:,.0f} | {_gb(r['memory']['peak_tree_rss_mb'])} | "
            f"{r['memory'].get('cpu_seconds_other') or 0:,.0f} | {r['started_utc'][:16]} |"
        )
    lines += [
        "",
        "## Per stage",
        "",
        "Rows per second per core: the delivery's rows over the stage's seconds and the run's cores.",
        "",
        "| patients | workers | stage | seconds | share | rows/s per core | peak memory (GB) |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for (patients, workers), r in sorted(latest.items()):
        for name, s in sorted(r["stages"].items(), key=lambda item: _stage_order(item[0])):
            lines.append(
                f"| {patients:,} | {workers} | {name} | {s['seconds']:,.1f} | {s['seconds'] / r['wall_s']:.0%} | "
                f"{s['rows_per_s_per_core'] or 0:,.0f} | {_gb(s['peak_tree_rss_mb'])} |"
            )
    lines += [
        "",
        "The rest of the wall time is the CLI's start, the Prefect API, the Dask cluster and the content",
        "digests of the inputs.",
        "",
    ]

    # speed-up: a 1-worker and a 2-worker run of the same code, never two versions of it
    speedup = None
    pair = newest_pair(results)
    if pair is not None:
        one, two = pair
        patients, commit = two["patients"], two["machine"]["git_commit"]
        speedup = one["wall_s"] / two["wall_s"]
        newest = max(latest.values(), key=lambda r: r["started_utc"])
        lines += [
            "## 1 -> 2 workers",
            "",
            f"At {patients:,} patients, commit `{commit}`: {one['wall_s']:,.0f} s with one worker, "
            f"{two['wall_s']:,.0f} s with two: a speed-up of **{speedup:.2f}**."
            + (
                ""
                if newest["machine"]["git_commit"] == commit
                else f" (The newest run, commit `{newest['machine']['git_commit']}`, has no 1-worker run to pair with.)"
            ),
        ]
        for name in sorted(one["stages"], key=_stage_order):
            if name in two["stages"] and two["stages"][name]["seconds"]:
                lines.append(f"- {name}: {one['stages'][name]['seconds'] / two['stages'][name]['seconds']:.2f}")
        scaling = two.get("machine_scaling") or scaling
        if scaling:
            lines.append(
                f"\nThe machine's own ceiling for two CPU-bound processes against one (`python -m "
                f"bench.machine_scaling`, measured at the start of the same benchmark): "
                f"{scaling['speedup_1_to_2']:.2f}."
            )
        lines.append("")

    # memory flatness
    two_worker = [(p, r) for (p, w), r in sorted(latest.items()) if w == max(w2 for p2, w2 in latest if p2 == p)]
    if len(two_worker) >= 2:
        (p0, r0), (p1, r1) = two_worker[0], two_worker[-1]
        lines += [
            "## Memory from the smallest to the largest delivery",
            "",
            f"Peak tree memory {_gb(r0['memory']['peak_tree_rss_mb'])} GB at {p0:,} patients and "
            f"{_gb(r1['memory']['peak_tree_rss_mb'])} GB at {p1:,} patients ({p1 / p0:.0f}x the data, "
            f"{r1['memory']['peak_tree_rss_mb'] / r0['memory']['peak_tree_rss_mb']:.2f}x the memory); "
            f"largest single worker {_gb(r0['memory']['peak_worker_rss_mb'])} GB and "
            f"{_gb(r1['memory']['peak_worker_rss_mb'])} GB.",
            "",
        ]
        for p, r in ((p0, r0), (p1, r1)):
            if r["memory"].get("root_counted", True) and (r["memory"].get("peak_main_rss_mb") or 0) >= 100:
                lines += [
                    f"The {p:,}-patient peak includes the benchmark process itself, up to "
                    f"{_gb(r['memory']['peak_main_rss_mb'])} GB (it generates the delivery in the same process); "
                    "runs recorded since the sampler leaves it out (`count_root=False`) do not.",
                    "",
                ]

    # targets and extrapolation
    big = max(latest.values(), key=lambda r: (r["patients"], r["params"]["workers"]))
    cores = big["cores"]
    per_core = big["claim_lines_per_s"] / cores
    efficiency = (speedup / 2) if speedup else 1.0
    lines += [
        "## Targets",
        "",
        f"On {cores} cores at {big['patients']:,} patients: {big['claim_lines_per_s']:,.0f} claim lines per second "
        f"end to end (target {TARGET_LINES_PER_S:,}: "
        f"{'met' if big['claim_lines_per_s'] >= TARGET_LINES_PER_S else 'not met'}); peak memory "
        f"{_gb(big['memory']['peak_tree_rss_mb'])} GB (target under {TARGET_PEAK_GB} GB: "
        f"{'met' if big['memory']['peak_tree_rss_mb'] / 1024 < TARGET_PEAK_GB else 'not met'}).",
        "",
        "## A national year",
        "",
        f"A national year is about {NATIONAL_LINES / 1e6:,.0f} million claim lines (18 million insured). At the "
        f"measured {per_core:,.0f} claim lines per second per core (the {big['patients']:,}-patient run) and "
        f"a parallel efficiency of {efficiency:.2f} per added worker (the measured 1 -> 2 speed-up over 2"
        f"{'' if speedup else '; not measured, so 1.0 is assumed'}), an N-worker cluster of one core per "
        "worker needs:",
        "",
        "| workers | hours |",
        "|---:|---:|",
    ]
    for n in (2, 8, 16, 32, 64):
        rate = per_core * (1 + (n - 1) * efficiency)
        lines.append(f"| {n} | {NATIONAL_LINES / rate / 3600:,.1f} |")
    lines += [
        "",
        "This is a linear extrapolation: it assumes the shuffle into patient buckets and the writes scale",
        "with the workers as they did from one to two on this machine, and a shared file system as fast as",
        "the local disk here. Memory per worker does not grow with the delivery (partitions and buckets",
        "have a fixed size), so each worker needs what the largest worker above needed.",
        "",
    ]
    return "\n".join(lines)


def write_report(scaling: dict | None = None, results: Path = RESULTS, doc: Path = DOC) -> Path:
    doc.write_text(report(load("run", results), scaling))
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--years", type=_years, default=(2015, 2022))
    parser.add_argument("--workers", type=int, default=2, help="workers of every run")
    parser.add_argument(
        "--speedup-at",
        type=int,
        default=None,
        help="also run this size with one worker (default: the smallest size); 0: not",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench/run"))
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    parser.add_argument("--label", default=None)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="a trial: results and the report go to WORK, not to bench/results and docs/",
    )
    args = parser.parse_args(argv)
    results, doc = (args.work / "results", args.work / "benchmarks.md") if args.no_record else (RESULTS, DOC)
    if args.report_only:
        print(write_report(results=results, doc=doc).read_text())
        return 0
    from bench.machine_scaling import scaling_ceiling

    scaling = scaling_ceiling()
    args.work.mkdir(parents=True, exist_ok=True)
    speedup_at = min(args.patients) if args.speedup_at is None else args.speedup_at
    failed = False
    for patients in sorted(args.patients):
        delivery = delivery_for(patients, args.years, args.work, args.seed, args.workers, record=not args.no_record)
        counts = [1, args.workers] if patients == speedup_at and args.workers > 1 else [args.workers]
        for workers in counts:
            run = args.work / f"run-{patients}-w{workers}"
            result = run_once(delivery, run, workers, label=args.label)
            result["machine_scaling"] = scaling
            append_result(results / "run.jsonl", result)
            print_summary(result)
            failed |= result["status"] != "ok"
            if not args.keep:
                shutil.rmtree(run, ignore_errors=True)
    print(f"wrote {write_report(scaling, results, doc)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark results: machine description, JSON-lines files, and a markdown report.

    python -m bench.report                  # markdown tables from bench/results/*.jsonl
    python -m bench.report --update-readme  # also replace the generated part of bench/README.md

Every number in the tables comes from a result line written by a benchmark run
(``bench/synth_bench.py``, ``bench/ingest_bench.py``, ``bench/episodes_bench.py``); nothing is typed
by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
README = BENCH / "README.md"
BEGIN, END = "<!-- bench.report:begin -->", "<!-- bench.report:end -->"
_MEASURED = ("transforms", "flows", "expectations")  # code whose changes change the numbers


# -- writing results -------------------------------------------------------------------------------
def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
    except Exception:
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("polars", "pyarrow", "numpy", "dask", "distributed", "great_expectations", "psutil"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def machine_info() -> dict:
    """What the numbers depend on: CPUs, memory, platform, versions, date and code commit."""
    dirty = _git("status", "--porcelain", "--", *_MEASURED)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": _versions(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": sorted(line[3:] for line in dirty.splitlines()) if dirty else [],
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def append_result(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(result, sort_keys=True, default=str) + "\n")


def folder_bytes(folder: Path) -> int:
    folder = Path(folder)
    if not folder.exists():
        return 0
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit in ("B", "KB") else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"


# -- reading and reporting ---------------------------------------------------------------------------
def load(name: str, results: Path = RESULTS) -> list[dict]:
    path = results / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _n(x: float | None, digits: int = 0) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


def _min(seconds: float) -> str:
    return f"{seconds:,.0f} s ({seconds / 60:.1f} min)"


def _start(r: dict) -> tuple[datetime, bool]:
    """Start of the run and whether it is derived. Records written before ``started_utc`` existed
    carry only the machine date and commit taken at the *end* of the run: their start is the end
    minus the wall time."""
    if r.get("started_utc"):
        return datetime.fromisoformat(r["started_utc"]), False
    end = datetime.fromisoformat(r["machine"]["date"])
    wall = (
        r.get("total_wall_s")
        or r.get("wall_s")
        or sum(  # episodes: the measured runs
            run["engine"]["wall_s"] + run["duckdb"]["wall_s"] for run in r.get("runs", [])
        )
    )
    return end - timedelta(seconds=wall), True


def _date(r: dict) -> str:
    start, derived = _start(r)
    return start.strftime("%Y-%m-%d %H:%M") + ("*" if derived else "")


def _commit(r: dict) -> str:
    """The commit the run measured: HEAD at its start (for old records: from ``git log``)."""
    start, derived = _start(r)
    if not derived:
        return r["machine"]["git_commit"]
    commit = _git("rev-list", "-1", f"--before={start.isoformat()}", "HEAD")
    return (commit[:7] if commit else "?") + "*"


def _noise(m: dict, wall: float) -> str:
    other = m.get("cpu_seconds_other")
    return "" if other is None or not wall else f"{other / wall:.2f}"


def synth_table(rows: list[dict]) -> str:
    head = (
        "| date (UTC) | commit | patients | years | workers | block | wall | rows | rows/s | rows/s/core | delivery on disk "
        "| peak tree RSS | peak per worker | peak main | CPU use | other load | status |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        p, m = r["params"], r["memory"]
        status = r.get("status", "ok")
        util = m["cpu_seconds_tree"] / r["wall_s"] / r["cores"] if r.get("wall_s") else None
        lines.append(
            f"| {_date(r)} | {_commit(r)} | {p['patients']:,} "
            f"| {p['first_year']}-{p['last_year']} | {p['workers']} | {p['block_size']:,} | {_min(r['wall_s'])} | {r['rows']:,} "
            f"| {_n(r['rows_per_s'])} | {_n(r['rows_per_s_per_core'])} | {human_bytes(r['bytes_on_disk'])} "
            f"| {_n(m['peak_tree_rss_mb'])} MB | {_n(m['peak_worker_rss_mb'])} MB | {_n(m['peak_main_rss_mb'])} MB "
            f"| {util:.0%} | {_noise(m, r['wall_s'])} | {status} |"
        )
    return "\n".join(lines)


def ingest_table(rows: list[dict]) -> str:
    steps = ("inspect", "partitions", "partitions_gx", "ids", "buckets", "buckets_gx", "validation_docs", "total")
    head = (
        "| date (UTC) | commit | delivery | workers | buckets / id-parts | wall | "
        + " | ".join(steps)
        + " | rows in | rows/s | rows/s/core | store on disk | peak tree RSS | peak per worker | peak main "
        "| CPU use | other load | DuckDB floor | ingest / floor | status |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        p, m = r["params"], r["memory"]
        timing = r.get("timing_seconds") or {}
        floor = r.get("duckdb_floor") or {}
        util = m["cpu_seconds_tree"] / r["wall_s"] / r["cores"] if r.get("wall_s") else None
        lines.append(
            f"| {_date(r)} | {_commit(r)} | {r.get('delivery_id') or p['delivery']} "
            f"| {p['workers']} | {r.get('buckets') or ''} / {r.get('id_parts') or r.get('buckets') or ''} | {_min(r['wall_s'])} | "
            + " | ".join(_n(timing.get(s), 1) for s in steps)
            + f" | {_n(r.get('rows_in'))} | {_n(r.get('rows_per_s'))} | {_n(r.get('rows_per_s_per_core'))} "
            f"| {human_bytes(r.get('bytes_on_disk') or 0)} | {_n(m['peak_tree_rss_mb'])} MB "
            f"| {_n(m['peak_worker_rss_mb'])} MB | {_n(m['peak_main_rss_mb'])} MB "
            f"| {'' if util is None else f'{util:.0%}'} | {_noise(m, r['wall_s'])} "
            f"| {_n(floor.get('seconds'), 1)} | {_n(r.get('ingest_to_floor_ratio'), 2)} | {r.get('status', 'ok')} |"
        )
    return "\n".join(lines)


def episodes_table(rows: list[dict]) -> str:
    head = (
        "| date (UTC) | commit | patients | claim lines | bundles | workers | engine wall | DuckDB wall "
        "| runs | engine / DuckDB | engine lines/s/core | DuckDB lines/s/core | engine peak tree RSS | engine peak per worker "
        "| DuckDB peak tree RSS | engine speed-up 1→2 | machine ceiling 1→2 | other load | label |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        probe = r.get("machine_speedup_1_to_2") or {}
        # from the raw times, as bench/machine_scaling.py computes it now (early records stored the
        # best per-round ratio, which drifted above 2)
        ceiling = (2 * min(probe["one_job_s"]) / min(probe["two_jobs_s"])) if probe.get("one_job_s") else None
        for i, run in enumerate(r["runs"]):
            engine, duck = run["engine"], run["duckdb"]
            other = engine.get("cpu_seconds_other")
            other_load = "" if other is None else f"{other / engine['wall_s']:.2f}"
            first = i == 0
            lines.append(
                f"| {_date(r) if first else ''} | {_commit(r) if first else ''} | {r['patients']:,} "
                f"| {r['claim_lines']:,} | {', '.join(r['bundles'])} | {run['workers']} | {engine['wall_s']:,.1f} s "
                f"| {duck['wall_s']:,.1f} s | {r.get('repeat', 1)} | {run['ratio_engine_to_duckdb']:.2f} "
                f"| {_n(run['engine_lines_per_s_per_core'])} | {_n(run['duckdb_lines_per_s_per_core'])} "
                f"| {_n(engine['peak_tree_rss_mb'])} MB | {_n(engine.get('peak_worker_rss_mb'))}{' MB' if engine.get('peak_worker_rss_mb') else ''} "
                f"| {_n(duck['peak_tree_rss_mb'])} MB "
                f"| {_n(r.get('engine_speedup_1_to_2'), 2) if first else ''} | {_n(ceiling, 2) if first else ''} "
                f"| {other_load} | {(r.get('label') or '') if first else ''} |"
            )
    return "\n".join(lines)


def machines(rows: list[dict]) -> str:
    seen = {}
    for r in rows:
        m = r["machine"]
        key = (m["cpu_count"], m["cpu_model"], m["memory_gb"], m["platform"], m["python"])
        seen.setdefault(key, m)
    out = []
    for m in seen.values():
        v = m.get("versions", {})
        out.append(
            f"- {m['cpu_count']} logical CPUs ({m['cpu_model']}), {m['memory_gb']} GB RAM, {m['platform']}, "
            f"Python {m['python']}; " + ", ".join(f"{k} {v[k]}" for k in sorted(v))
        )
    return "\n".join(out)


def report(results: Path = RESULTS) -> str:
    synth, ingest = load("synth", results), load("ingest", results)
    episodes = [r for r in load("episodes", results) if r.get("label") != "smoke"]
    parts = ["Generated by `python -m bench.report` from `bench/results/*.jsonl`; do not edit by hand.", ""]
    if synth or ingest or episodes:
        parts += ["Machine(s):", "", machines(synth + ingest + episodes), ""]
    if synth:
        parts += ["### synth", "", synth_table(synth), ""]
    if ingest:
        parts += [
            "### ingest",
            "",
            "Step times in seconds from the manifest's `timing_seconds`; *partitions_gx* and *buckets_gx* are "
            "Great Expectations validating the verdict files of the step (in earlier rows, when GX ran inside "
            "the partition and bucket tasks, part of *partitions* and *buckets*).",
            "",
            ingest_table(ingest),
            "",
        ]
    if episodes:
        parts += [
            "### episodes",
            "",
            "The engine on a local Dask cluster of *workers* single-threaded processes, DuckDB with "
            "*workers* threads, on the same store (`python -m bench.episodes_bench STORE --workers 1 2`). "
            "*machine ceiling* is the speed-up of two CPU-bound processes over one on the same machine at the "
            "start of the run (`bench/machine_scaling.py`); *other load* is the CPU other processes used "
            "during the engine run, in cores; with *runs* above 1 the walls are medians of that many runs of each, "
            "taking turns (`--repeat`).",
            "",
            episodes_table(episodes),
            "",
        ]
    parts += [
        "Columns: *date* and *commit* marked * come from records written by an earlier version of the "
        "benchmarks that took them at the end of the run: the start is the end minus the wall time and the "
        "commit is HEAD at that start (`git log`). ",
        "*wall* is the wall-clock time of the measured call; *rows/s/core* divides by the "
        "worker processes used (`min(workers, CPUs)`); *date* is the start of the run (UTC); memory is in MiB (1 MiB = 2^20 bytes); *peak tree RSS* is the highest sampled sum of "
        "RSS over the benchmark process and all its descendants (0.2 s samples); *peak per worker* "
        "is the largest peak RSS of a single worker process (kernel high-water mark); *CPU use* is "
        "the CPU seconds of the process tree / (wall x cores); *other load* is the CPU seconds used "
        "by other processes on the machine per wall second during the run (noise from other users; "
        "1.0 = one core busy).",
    ]
    return "\n".join(parts)


def update_readme(text: str, readme: Path = README) -> None:
    body = readme.read_text()
    if BEGIN not in body or END not in body:
        raise SystemExit(f"{readme} has no {BEGIN} ... {END} markers")
    head, rest = body.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--update-readme", action="store_true", help=f"replace the generated part of {README.name}")
    args = parser.parse_args(argv)
    text = report(args.results)
    print(text)
    if args.update_readme:
        update_readme(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

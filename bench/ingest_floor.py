"""The floor for ingest: DuckDB reading the same delivery, hashing every patient to a bucket and
writing the ordered, bucketed copy, with no validation, no quarantine and no netting.

    python -m bench.ingest_floor DELIVERY OUT --buckets 16 --threads 2

It is what any engine must at least do to turn a delivery into a patient-bucketed store, so the ratio
ingest / floor says how much of the ingest is the work zorgpad adds (Great Expectations, books,
netting, quarantine) and its overheads. ``bench.ingest_bench --duckdb-floor`` measures it in the same
run as the ingest, in a child process of its own (its buffer pool is not left in the benchmark
process), on the ingest's bucket count and as many threads as the ingest has workers.

``dbc_activity`` has no patient column: its rows take the patient of their DBC (a join on
``claim_id``), as the ingest routes them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from transforms.ingest.layout import BUCKETED_TABLES, ORDER_DATE, SMALL_TABLES


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def bucketed_copy(delivery: Path, out: Path, buckets: int, threads: int) -> dict:
    """Write ``out/<table>/bucket=N/*.parquet`` ordered by patient and date; seconds per table."""
    import duckdb

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"SET temp_directory = {_quoted(out / '_spill')}")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    for table in SMALL_TABLES:
        t0 = time.perf_counter()
        (out / table).mkdir()
        con.execute(
            f"COPY (SELECT * FROM read_parquet({_quoted(delivery / table / '*.parquet')})) "
            f"TO {_quoted(out / table / 'part-0.parquet')} (FORMAT parquet)"
        )
        seconds[table] = round(time.perf_counter() - t0, 2)
    for table in BUCKETED_TABLES:
        t0 = time.perf_counter()
        source = f"read_parquet({_quoted(delivery / table / '*.parquet')})"
        if table == "dbc_activity":
            dbc = f"read_parquet({_quoted(delivery / 'dbc' / '*.parquet')})"
            rows = (
                f"SELECT a.*, d.patient_id AS _patient FROM {source} a LEFT JOIN "
                f"(SELECT claim_id, any_value(patient_id) AS patient_id FROM {dbc} GROUP BY claim_id) d USING (claim_id)"
            )
        else:
            rows = f"SELECT *, patient_id AS _patient FROM {source}"
        con.execute(
            f"COPY (SELECT * EXCLUDE (_patient), hash(_patient) % {int(buckets)} AS bucket FROM ({rows}) "
            f"ORDER BY bucket, _patient, {ORDER_DATE[table]}) "
            f"TO {_quoted(out / table)} (FORMAT parquet, PARTITION_BY (bucket))"
        )
        seconds[table] = round(time.perf_counter() - t0, 2)
    shutil.rmtree(out / "_spill", ignore_errors=True)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "seconds_by_table": seconds,
        "buckets": buckets,
        "threads": threads,
    }


def measure(delivery: Path, out: Path, buckets: int, threads: int) -> dict:
    """The floor in a child process (``python -m bench.ingest_floor``); its result line."""
    command = [
        sys.executable,
        "-m",
        "bench.ingest_floor",
        str(delivery),
        str(out),
        "--buckets",
        str(buckets),
        "--threads",
        str(threads),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"the DuckDB floor failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(time.perf_counter() - started, 2)  # with the child's start and imports
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("delivery", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--buckets", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the bucketed copy")
    args = parser.parse_args(argv)
    result = bucketed_copy(args.delivery, args.out, args.buckets, args.threads)
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How much faster this machine runs two CPU-bound processes than one: the ceiling for any
"speed-up from 1 to 2 worker processes" measured here.

    python -m bench.machine_scaling

A virtual machine's two vCPUs are not always two free cores: the hypervisor, a noisy neighbour or
shared caches can make two busy processes slower each than one alone. The probe times a fixed
pure-Python loop (no I/O, no memory traffic, no library threads) once in one process, then twice
at the same time in two processes, a few rounds, and reports
``2 x fastest time(one job) / fastest time(two jobs at once)`` (the fastest of each: a vCPU's speed
drifts between rounds, and a ratio taken within one round can land above 2). 2.0 means two real cores; the episode benchmark
records the probe next to its own speed-up, so the two can be compared on the same machine and
minute.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

_LOOP = 30_000_000


def _cpu_job(_: int) -> float:
    """A fixed amount of pure-Python work; returns its own duration in seconds."""
    started = time.perf_counter()
    total = 0
    for i in range(_LOOP):
        total += i
    return time.perf_counter() - started


def scaling_ceiling(rounds: int = 5) -> dict:
    """Speed-up of two simultaneous CPU-bound processes over one, from the fastest of ``rounds``."""
    context = multiprocessing.get_context("spawn")
    speedups, singles, pairs = [], [], []
    with context.Pool(2) as pool:
        pool.map(_cpu_job, [0, 1], chunksize=1)  # both processes started and warm
        for _ in range(rounds):
            started = time.perf_counter()
            pool.map(_cpu_job, [0], chunksize=1)
            single = time.perf_counter() - started
            started = time.perf_counter()
            pool.map(_cpu_job, [0, 1], chunksize=1)
            pair = time.perf_counter() - started
            singles.append(single)
            pairs.append(pair)
            speedups.append(2 * single / pair)
    return {
        "speedup_1_to_2": round(2 * min(singles) / min(pairs), 2),
        "speedups": [round(s, 2) for s in speedups],
        "one_job_s": [round(s, 3) for s in singles],
        "two_jobs_s": [round(s, 3) for s in pairs],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.machine_scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    result = scaling_ceiling(args.rounds)
    print(
        f"two CPU-bound processes vs one: speed-up {result['speedup_1_to_2']} "
        f"(per round {result['speedups']}; one job {result['one_job_s']} s, two jobs {result['two_jobs_s']} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The Dask mapper the flows run their steps with: results in order, each folded as it arrives, and
worker processes recycled after a number of tasks (a real local cluster of worker processes)."""

from __future__ import annotations

import os

from flows.dask_cluster import dask_cluster, dask_mapper


def _square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_results_come_back_in_order_and_workers_are_recycled_after_their_tasks():
    with dask_cluster(workers=2) as address:
        folded: list[int] = []

        def fold(result):
            folded.append(result[0])
            return result

        first = dask_mapper(address)(_square_and_pid, [(i,) for i in range(6)])
        recycled = dask_mapper(address, recycle_after=2)(_square_and_pid, [(i,) for i in range(12)], fold)

    assert [r[0] for r in first] == [i * i for i in range(6)]
    assert [r[0] for r in recycled] == [i * i for i in range(12)]
    assert sorted(folded) == [i * i for i in range(12)]
    # waves of 2 tasks per worker: 6 tasks were run before, so the workers are replaced before the
    # first wave and after each of the next two; no process runs tasks of two waves
    waves = [{pid for _, pid in recycled[start:start + 4]} for start in range(0, 12, 4)]
    assert not {pid for _, pid in first} & waves[0]
    for earlier, later in zip(waves, waves[1:]):
        assert not earlier & later

"""The Dask mapper the flows run their steps with: results in order, each folded as it arrives, and
worker processes recycled after a number of tasks (a real local cluster of worker processes)."""

from __future__ import annotations

import os
from itertools import pairwise

import pytest

from flows.dask_cluster import SINGLE_THREADED, dask_cluster, dask_mapper, oversubscribed_hosts


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
    waves = [{pid for _, pid in recycled[start : start + 4]} for start in range(0, 12, 4)]
    assert not {pid for _, pid in first} & waves[0]
    for earlier, later in pairwise(waves):
        assert not earlier & later


def _polars_threads(_: int) -> int:
    import polars as pl

    return pl.thread_pool_size()


def _initial_environment(_: int) -> dict[str, str]:
    """The environment this process was started with (not what it set later)."""
    raw = open(f"/proc/{os.getpid()}/environ", "rb").read().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="reads /proc (Linux)")
def test_workers_start_single_threaded_and_leave_this_process_environment_alone():
    before = {name: os.environ.get(name) for name in SINGLE_THREADED}
    with dask_cluster(workers=2) as address:
        started_with = dask_mapper(address)(_initial_environment, [(i,) for i in range(4)])
        pools = dask_mapper(address)(_polars_threads, [(i,) for i in range(4)])
        warnings = oversubscribed_hosts(address)
    # set before the process starts, so polars (sized at import, possibly while the worker
    # unpickles the parent's __main__) sees it; a variable set after start-up would not show here
    for environment in started_with:
        assert {name: environment.get(name) for name in SINGLE_THREADED} == SINGLE_THREADED
        # Dask's default would set it, and with it switch off glibc's adaptive mmap threshold
        assert "MALLOC_TRIM_THRESHOLD_" not in environment
    assert set(pools) == {1}
    assert warnings == []
    assert {name: os.environ.get(name) for name in SINGLE_THREADED} == before


def test_a_cluster_of_multithreaded_workers_is_reported():
    """Workers started without the single-threaded environment (a pool per core in each): the flows'
    warning names the host."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        host="127.0.0.1",
        env={"POLARS_MAX_THREADS": str(max(2, os.cpu_count() or 2))},
    ) as cluster:
        warnings = oversubscribed_hosts(cluster.scheduler_address)
    assert len(warnings) == 1 and "127.0.0.1" in warnings[0] and "POLARS_MAX_THREADS=1" in warnings[0]


def test_a_mapper_on_a_cluster_without_workers_runs_the_tasks_itself(monkeypatch):
    """A scheduler whose workers are all gone (killed, never restarted) must not leave a flow
    waiting for ever: after ``NO_WORKERS_TIMEOUT`` the mapper runs what is left in this process."""
    from distributed import LocalCluster

    import flows.dask_cluster as module

    monkeypatch.setattr(module, "WATCH_SECONDS", 0.5)
    monkeypatch.setattr(module, "NO_WORKERS_TIMEOUT", 2.0)
    with LocalCluster(n_workers=0, processes=True, dashboard_address=":0", host="127.0.0.1") as cluster:
        results = dask_mapper(cluster.scheduler_address)(_square_and_pid, [(1,), (2,), (3,)])
    assert [r[0] for r in results] == [1, 4, 9] and {r[1] for r in results} == {os.getpid()}


def test_workers_that_do_not_come_back_after_a_restart_leave_the_rest_to_this_process(monkeypatch):
    """Workers without a nanny are shut down by a restart and never return (as nannies that failed
    to restart theirs): the first wave ran on the cluster, the rest runs here, in order."""
    from distributed import LocalCluster

    import flows.dask_cluster as module

    monkeypatch.setattr(module, "RESTART_TIMEOUT", 3.0)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0", protocol="tcp") as cluster:
        results = dask_mapper(cluster.scheduler_address, recycle_after=2)(_square_and_pid, [(i,) for i in range(5)])
    assert [r[0] for r in results] == [i * i for i in range(5)]


@pytest.mark.parametrize("scheduler", ["{{ $ZORGPAD_DASK_SCHEDULER }}", "localhost:8786", "tcp://"])
def test_a_scheduler_that_is_not_an_address_is_refused_before_connecting(scheduler):
    from transforms.errors import UserFacingError

    with pytest.raises(UserFacingError, match="not a Dask scheduler address"):
        with dask_cluster(scheduler):
            pass


def test_a_scheduler_address_is_used_as_given():
    with dask_cluster(" tcp://10.0.0.5:8786 ") as address:
        assert address == "tcp://10.0.0.5:8786"


def test_workers_whose_nannies_gave_up_are_replaced_and_start_single_threaded():
    """A nanny that could not start its worker closes for good (an overloaded machine); the local
    cluster this process started gets new ones, so later steps do not wait for workers that never come."""
    import time

    from distributed import Client

    import flows.dask_cluster as module

    with dask_cluster(workers=2) as address:
        cluster = module.own_cluster(address)
        for nanny in list(cluster.workers.values()):
            cluster.sync(nanny.close)
        with Client(address, set_as_default=False) as client:
            deadline = time.monotonic() + 30
            while client.nthreads() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not client.nthreads()
            assert module.revive_workers(address)
            client.wait_for_workers(2, timeout=120)
        started_with = dask_mapper(address)(_initial_environment, [(i,) for i in range(4)])
        assert not module.revive_workers(address)  # all there: nothing to do
    for environment in started_with:
        assert {name: environment.get(name) for name in SINGLE_THREADED} == SINGLE_THREADED


def test_a_cluster_started_elsewhere_is_left_to_its_operator():
    from distributed import LocalCluster

    import flows.dask_cluster as module

    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0", protocol="tcp") as cluster:
        assert not module.revive_workers(cluster.scheduler_address)

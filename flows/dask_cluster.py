"""The Dask cluster a flow runs on: an existing scheduler (``--scheduler tcp://host:8786``) or a
local cluster of worker processes started for the flow and stopped after it.

Tasks receive the scheduler *address* and connect a client inside the task, so no Dask object ever
crosses a Prefect task boundary (passing Dask collections between tasks can hang).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator

from distributed import Client, LocalCluster, as_completed


@contextlib.contextmanager
def dask_cluster(scheduler: str | None = None, workers: int | None = None,
                 memory_limit: str = "4GiB") -> Iterator[str]:
    """Yield a scheduler address: ``scheduler`` if given, else a local process cluster's."""
    if scheduler:
        yield scheduler
        return
    n = workers or max(1, min(os.cpu_count() or 1, 8))
    # one process per core, and one thread inside it: polars and pyarrow would otherwise start a
    # thread per core in every worker and the workers would fight over the cores
    single_threaded = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "ARROW_NUM_THREADS": "1"}
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, memory_limit=memory_limit,
                      dashboard_address=":0", host="127.0.0.1", env=single_threaded) as cluster:
        yield cluster.scheduler_address


def dask_mapper(address: str) -> Callable:
    """A ``mapper(function, argument_tuples)`` that runs the calls on the cluster, in order."""

    def mapper(function: Callable, arguments: list[tuple], on_result: Callable[[Any], Any] | None = None) -> list:
        if not arguments:
            return []
        keep = on_result or (lambda result: result)
        with Client(address, set_as_default=False) as client:
            futures = client.map(function, *zip(*arguments), pure=False)
            position = {future.key: i for i, future in enumerate(futures)}
            results: list = [None] * len(futures)
            # take each result as it finishes and release it on the worker at once, so neither the
            # workers nor this process hold all results of a step at the same time
            for future in as_completed(futures, loop=client.loop):
                results[position[future.key]] = keep(future.result())
                future.release()
            del futures
            client.run(release_freed_memory)
            return results

    return mapper


def release_freed_memory() -> int:
    """Hand memory that a step freed back to the operating system (glibc keeps freed pandas and
    numpy buffers in its arenas, so a worker would otherwise carry its largest task's memory into
    the next step). The remedy Dask's documentation gives for "unmanaged memory"; a no-op where
    the C library is not glibc."""
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return 0


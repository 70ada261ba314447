"""The Dask cluster a flow runs on: an existing scheduler (``--scheduler tcp://host:8786``) or a
local cluster of worker processes started for the flow and stopped after it.

Tasks receive the scheduler *address* and connect a client inside the task, so no Dask object ever
crosses a Prefect task boundary (passing Dask collections between tasks can hang).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from distributed import Client, LocalCluster, wait

from transforms.errors import UserFacingError

#: Environment of a worker process: one thread for every library that runs its own pool. Polars
#: starts a thread per core in every process; with one worker process per core that is cores x cores
#: threads fighting over the cores: more CPU per bucket, a "1 worker" cluster that uses more than one
#: core, and less speed-up from more workers (the numbers are in ``bench/README.md``).
SINGLE_THREADED = {
    "POLARS_MAX_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "ARROW_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}

#: glibc malloc tunables Dask sets in a worker's environment that a worker here runs without (None:
#: not set). Dask's default ``MALLOC_TRIM_THRESHOLD_=65536`` hands freed memory back to the
#: operating system at once, but setting any glibc malloc tunable also switches off glibc's
#: adaptive mmap threshold: every buffer over 128 KiB (numpy and pandas arrays, the GX batches) is
#: then a fresh mmap, zero-filled page by page by the kernel and unmapped again when freed. The same
#: partition tasks took 15-35% more CPU seconds in a worker with it than without it, a whole ingest
#: of 100,000 patients 12% more (and one process run with it spent twice the system time). A
#: worker's memory stays bounded without it (the same peak per worker): freed
#: memory is reused by the next task, a step ends with :func:`release_freed_memory` and the workers
#: are recycled (``recycle_after`` of :func:`dask_mapper`).
ALLOCATOR_DEFAULTS: dict[str, str | None] = {"MALLOC_TRIM_THRESHOLD_": None}


@contextlib.contextmanager
def dask_cluster(scheduler: str | None = None, workers: int | None = None, memory_limit: str = "4GiB") -> Iterator[str]:
    """Yield a scheduler address: ``scheduler`` if given, else a local process cluster's, of one
    single-threaded process per core (see :data:`SINGLE_THREADED`)."""
    if scheduler:
        yield scheduler_address(scheduler)
        return
    n = workers or max(1, min(os.cpu_count() or 1, 8))
    with _worker_environment(SINGLE_THREADED):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=":0",
            host="127.0.0.1",
        )
    _OWN_CLUSTERS[cluster.scheduler_address] = (cluster, n)
    try:
        yield cluster.scheduler_address
    finally:
        _OWN_CLUSTERS.pop(cluster.scheduler_address, None)
        _close_quietly(cluster)


#: The local clusters this process started, by scheduler address, with their number of workers.
_OWN_CLUSTERS: dict[str, tuple[LocalCluster, int]] = {}


def own_cluster(address: str) -> LocalCluster | None:
    """The local cluster this process started at scheduler ``address``, or None (a cluster started
    elsewhere). Public so a test can reach its nannies (see :func:`revive_workers`)."""
    owned = _OWN_CLUSTERS.get(address)
    return owned[0] if owned is not None else None


def revive_workers(address: str) -> bool:
    """Start new workers in place of those a local cluster started here has lost for good, and say
    whether any were asked for.

    A nanny that cannot start its worker process within its timeout (an overloaded machine, a
    restart that imports everything again) closes, and Dask does not replace it: the cluster then
    has fewer workers, or none, for the rest of the run, and every later computation waits. Nannies
    that are closed or whose worker is not connected are dropped from the cluster's spec and the
    cluster is scaled back to its size, which starts fresh nannies (with the single-threaded
    environment). A cluster started elsewhere (``--scheduler``) is its operator's to mend."""
    from distributed.core import Status

    owned = _OWN_CLUSTERS.get(address)
    if owned is None:
        return False
    cluster, n = owned
    with Client(address, set_as_default=False) as client:
        connected = set(client.nthreads())
    lost = [
        name
        for name, nanny in list(cluster.workers.items())
        if nanny.status != Status.running or getattr(nanny, "worker_address", None) not in connected
    ]
    if not lost and len(cluster.workers) >= n:
        return False
    logging.getLogger(__name__).warning(
        "%d of %d Dask workers lost; starting new ones", max(len(lost), n - len(connected)), n
    )
    with _worker_environment(SINGLE_THREADED):
        for name in lost:  # out of the spec and the cluster's workers, so scaling opens new ones
            cluster.worker_spec.pop(name, None)
            nanny = cluster.workers.pop(name, None)
            if nanny is not None and nanny.status == Status.running:
                cluster.sync(nanny.close)
        cluster.scale(n)
        cluster.sync(cluster._correct_state)  # start them now, inside the single-threaded environment
    return True


#: What Dask accepts as a scheduler address: a protocol and a location.
_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://[^\s{}]+$")


def scheduler_address(scheduler: str) -> str:
    """``scheduler`` if it is a Dask address. A deployment registered while its template variable
    (``{{ $ZORGPAD_DASK_SCHEDULER }}``) was unset carries the template text itself; without this
    check the run would wait for a connection to it until Dask's timeout."""
    if not _ADDRESS.match(scheduler.strip()):
        raise UserFacingError(
            f"--scheduler {scheduler!r} is not a Dask scheduler address (tcp://host:port or tls://host:port); "
            "for a deployment, set ZORGPAD_DASK_SCHEDULER before `prefect deploy` (empty: a local cluster)"
        )
    return scheduler.strip()


#: Loggers that report the races of a local cluster's shutdown (a worker's heartbeat cut off by its
#: own close: "distributed.worker - ERROR - Failed to communicate with scheduler during heartbeat",
#: a ``CommClosedError`` traceback; comms closed under a pending read, callbacks of a stopping loop).
_SHUTDOWN_LOGGERS = ("distributed", "tornado", "asyncio")


def _close_quietly(cluster: LocalCluster) -> None:
    """Close ``cluster`` without the noise of its shutdown races, which a user cannot tell from a
    failure. For the close only, in this process (scheduler, nannies) and in the worker processes
    (which print to the same stderr), the shutdown loggers are raised to CRITICAL; this process's
    levels are restored afterwards, the workers end. What happened while the work ran was logged
    at the levels in effect then."""
    with _raised_log_levels(_SHUTDOWN_LOGGERS, logging.CRITICAL):
        _quiet_workers(cluster.scheduler_address)
        processes = _worker_pids(cluster)
        try:
            cluster.close(timeout=CLOSE_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - a nanny that does not answer must not hang the run
            logging.getLogger(__name__).warning(
                "the local Dask cluster did not close within %.0f s (%s); its worker processes are killed",
                CLOSE_TIMEOUT,
                type(error).__name__,
            )
            _kill(processes)


#: Seconds a local cluster may take to close before its worker processes are killed.
CLOSE_TIMEOUT = 60.0


def _worker_pids(cluster: LocalCluster) -> list[int]:
    """The process ids of the cluster's worker processes (started by its nannies in this process)."""
    pids = []
    for nanny in list(cluster.workers.values()):
        process = getattr(getattr(nanny, "process", None), "process", None)
        pid = getattr(process, "pid", None)
        if pid:
            pids.append(pid)
    return pids


def _kill(pids: list[int]) -> None:
    import signal

    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _quiet_workers(address: str, timeout: float = 5) -> None:
    """Raise the shutdown loggers in every worker process of the cluster at ``address`` (best effort,
    at most ``timeout`` seconds: a worker that does not answer is closed anyway)."""

    def run() -> None:
        try:
            with Client(address, set_as_default=False, timeout=timeout) as client:
                client.run(_raise_levels_for_good, _SHUTDOWN_LOGGERS, logging.CRITICAL, on_error="ignore")
        except Exception:  # noqa: BLE001 - quieting is a courtesy; the close must go on
            pass

    thread = threading.Thread(target=run, name="quiet-dask-workers", daemon=True)
    thread.start()
    thread.join(timeout)


def _raise_levels_for_good(names: tuple[str, ...], level: int) -> None:
    """In a worker that is about to be closed: log nothing below ``level`` on ``names`` and their
    descendants."""
    for name in _with_descendants(names):
        logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _raised_log_levels(names: tuple[str, ...], level: int) -> Iterator[None]:
    """Log nothing below ``level`` on ``names`` and their descendants (those with a level of their
    own included) while the block runs; restore their levels afterwards."""
    loggers = [logging.getLogger(name) for name in _with_descendants(names)]
    before = [(logger, logger.level) for logger in loggers]
    try:
        for logger in loggers:
            if logger.getEffectiveLevel() < level:
                logger.setLevel(level)
        yield
    finally:
        for logger, previous in before:
            logger.setLevel(previous)


def _with_descendants(names: tuple[str, ...]) -> list[str]:
    """``names`` and the names of every logger created below them so far."""
    prefixes = tuple(f"{name}." for name in names)
    loggers = logging.Logger.manager.loggerDict
    below = [
        name for name in list(loggers) if name.startswith(prefixes) and isinstance(loggers.get(name), logging.Logger)
    ]
    return list(names) + below


@contextlib.contextmanager
def _worker_environment(variables: dict[str, str]) -> Iterator[None]:
    """Give worker processes ``variables`` (and :data:`ALLOCATOR_DEFAULTS`) from their first
    instruction on.

    ``LocalCluster(env=...)`` sets them only once the worker runs, after the worker has unpickled
    the parent's ``__main__`` and with it imported polars, whose thread pool is sized at import, so
    the workers would keep a pool per core. Dask's ``pre-spawn-environ`` is set before the process
    is spawned, also in restarts. Its price is that the nannies, which live in this process, write the
    variables into this process's environment when they spawn; this restores it afterwards
    (polars and pyarrow here have sized their pools already)."""
    import dask

    before = {name: os.environ.get(name) for name in variables}
    pre_spawn = {
        **dask.config.get("distributed.nanny.pre-spawn-environ", default={}),
        **ALLOCATOR_DEFAULTS,  # None: the nanny leaves it unset
        **variables,
    }
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": pre_spawn}):
            yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def oversubscribed_hosts(address: str) -> list[str]:
    """One line per machine whose worker processes run more polars threads than it has cores
    (empty when none does). Workers started by ``deploy/dask/start-worker.sh`` or by
    :func:`dask_cluster` run one thread each; a hand-started ``dask worker --nworkers N`` without
    ``POLARS_MAX_THREADS=1`` in its environment runs a pool per core in each of its N processes."""
    with Client(address, set_as_default=False) as client:
        budgets = client.run(_thread_budget)
        hosts = {
            worker: info.get("host", worker) for worker, info in client.scheduler_info().get("workers", {}).items()
        }
    threads: Counter[str] = Counter()
    cores: dict[str, int] = {}
    processes: Counter[str] = Counter()
    for worker, (host_cores, polars_threads) in budgets.items():
        host = hosts.get(worker, worker)
        threads[host] += polars_threads
        cores[host] = host_cores
        processes[host] += 1
    return [
        f"{host}: {processes[host]} worker processes run {threads[host]} polars threads on {cores[host]} cores; "
        f"start the workers with POLARS_MAX_THREADS=1 (deploy/dask/start-worker.sh does)"
        for host in sorted(threads)
        if threads[host] > cores[host]
    ]


def _thread_budget() -> tuple[int, int]:
    """(cores this process may use, threads of its polars pool)."""
    import polars as pl

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    return usable, pl.thread_pool_size()


#: Ingest recycles its workers after this many tasks each (a partition or bucket is one task): at
#: 1 million patients a worker runs about 700 partitions, at 100,000 about 70.
RECYCLE_WORKERS_AFTER = 100

#: Tasks run on a cluster since its workers were last restarted, per scheduler address (see
#: ``recycle_after`` of :func:`dask_mapper`).
_TASKS_SINCE_RESTART: dict[str, int] = {}

#: Seconds a restart of the workers may take: their nannies kill them and start new processes, which
#: import polars, pyarrow and Great Expectations again (seconds each, far more on a loaded machine).
RESTART_TIMEOUT = 180.0
#: A mapper looks at the cluster this often while its tasks run...
WATCH_SECONDS = 30.0
#: ...asks a local cluster started here for new workers when none has been connected for this long...
REVIVE_AFTER = 60.0
#: ...and runs the remaining tasks in this process when no worker has been connected for this long
#: (a cluster that lost its workers would otherwise leave the flow waiting for ever).
NO_WORKERS_TIMEOUT = 300.0


#: Who is told of each step of tasks and each finished task (``flows.terminal.StepProgress``):
#: objects with ``step_started(function_name, tasks) -> step``, ``task_finished(step, result)`` and
#: ``step_finished(step)``, called in this process.
PROGRESS_LISTENERS: list[Any] = []


def dask_mapper(address: str, recycle_after: int | None = None) -> Callable:
    """A ``mapper(function, argument_tuples, on_result)`` that runs the calls on the cluster and
    returns their results in order.

    ``recycle_after``: restart the worker processes once they have run about that many tasks each
    (counted over every mapper of this process on the same cluster), like ``maxtasksperchild`` of
    Python's process pools. A long-lived worker keeps the resident memory of the largest batches it
    has seen, across tables and steps, even when Python holds nothing (allocator arenas, library
    caches): without recycling a worker's memory grows with the size of the delivery, with it only
    with the size of a task (ingest numbers in ``bench/README.md``). The calls are then
    submitted in waves of ``recycle_after`` tasks per worker with a restart between waves; tasks
    must be idempotent (they are: they write deterministic paths).
    Needs workers started by a nanny (``dask worker``, ``LocalCluster``); without one the workers
    are left running and only hand freed memory back.
    """

    def mapper(function: Callable, arguments: list[tuple], on_result: Callable[[Any], Any] | None = None) -> list:
        if not arguments:
            return []
        fold = on_result or (lambda result: result)
        steps = [
            (listener, listener.step_started(getattr(function, "__name__", "tasks"), len(arguments)))
            for listener in list(PROGRESS_LISTENERS)
        ]

        def keep(result: Any) -> Any:
            for listener, step in steps:
                listener.task_finished(step, result)
            return fold(result)

        try:
            return _map(function, arguments, keep)
        finally:
            for listener, step in steps:
                listener.step_finished(step)

    def _map(function: Callable, arguments: list[tuple], keep: Callable[[Any], Any]) -> list:
        results: list = [None] * len(arguments)
        with Client(address, set_as_default=False) as client:
            workers = max(1, len(client.scheduler_info().get("workers", {})))
            wave = recycle_after * workers if recycle_after else len(arguments)
            for start in range(0, len(arguments), wave):
                batch = arguments[start : start + wave]
                if recycle_after and _TASKS_SINCE_RESTART.get(address, 0) >= wave:
                    if not _restart_workers(client, address):
                        # the nannies may not bring their workers back (on a loaded machine);
                        # the tasks are plain idempotent functions, so the rest runs here instead
                        logging.getLogger(__name__).warning(
                            "no Dask worker came back after the restart; running the remaining %d tasks "
                            "in this process",
                            len(arguments) - start,
                        )
                        for i, args in enumerate(arguments[start:], start):
                            results[i] = keep(function(*args))
                        return results
                _run_wave(client, function, batch, start, results, keep)
                _TASKS_SINCE_RESTART[address] = _TASKS_SINCE_RESTART.get(address, 0) + len(batch)
            client.run(release_freed_memory)
        return results

    return mapper


def _run_wave(
    client: Client, function: Callable, arguments: list[tuple], offset: int, results: list, keep: Callable[[Any], Any]
) -> None:
    futures = client.map(function, *zip(*arguments), pure=False)
    position = {future.key: offset + i for i, future in enumerate(futures)}
    pending = set(futures)
    without_workers_since: float | None = None
    revived = False
    while pending:
        # take each result as it finishes and release it on the worker at once, so neither the
        # workers nor this process hold all results of a step at the same time
        try:
            with client.as_current():  # wait() syncs on the current client; this one is no default
                done, pending = wait(pending, timeout=WATCH_SECONDS, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        for future in done:
            results[position[future.key]] = keep(future.result())
            future.release()
        if done or client.nthreads():
            without_workers_since, revived = None, False
        elif without_workers_since is None:
            without_workers_since = time.monotonic()
        elif not revived and time.monotonic() - without_workers_since > REVIVE_AFTER:
            revived = revive_workers(client.scheduler.address)  # a restarting nanny would be back by now
        elif time.monotonic() - without_workers_since > NO_WORKERS_TIMEOUT:
            # the cluster lost every worker and none came back: the tasks are plain idempotent
            # functions, so what is left runs here rather than leaving the run waiting for ever
            logging.getLogger(__name__).warning(
                "no Dask worker connected for %.0f s; running the remaining %d tasks in this process",
                NO_WORKERS_TIMEOUT,
                len(pending),
            )
            client.cancel(list(pending))
            for future in pending:
                i = position[future.key]
                results[i] = keep(function(*arguments[i - offset]))
            return


def _restart_workers(client: Client, address: str) -> int:
    """Fresh worker processes (their nannies start new ones); a cluster without nannies keeps its
    workers.

    The restart itself only waits for the nannies to kill their workers: Dask's own wait counts the
    scheduler's workers, and right after the kill the dead ones are still counted. So this waits
    until none of the workers from before is connected and as many are as before (at most
    :data:`RESTART_TIMEOUT`), and goes on with the ones there are when that takes too long. Returns
    how many workers are connected."""
    before = set(client.nthreads())
    try:
        client.restart(timeout=RESTART_TIMEOUT, wait_for_workers=False)
    except Exception as error:  # noqa: BLE001 - no nanny, or a worker did not stop in time
        logging.getLogger(__name__).warning("workers not recycled (%s); going on with the running ones", error)
    now = _wait_for_fresh_workers(client, before)
    if len(now - before) < len(before) and revive_workers(address):
        now = _wait_for_fresh_workers(client, before)
    if len(now - before) < len(before):
        logging.getLogger(__name__).warning(
            "%d of %d workers back %.0f s after their restart; going on with them",
            len(now - before),
            len(before),
            RESTART_TIMEOUT,
        )
    _TASKS_SINCE_RESTART[address] = 0
    return len(now)


def _wait_for_fresh_workers(client: Client, before: set[str]) -> set[str]:
    """The connected workers once none from ``before`` is left and as many are connected as before,
    or when :data:`RESTART_TIMEOUT` has passed."""
    deadline = time.monotonic() + RESTART_TIMEOUT
    while True:
        now = set(client.nthreads())
        if (now and not now & before and len(now) >= len(before)) or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def dask_workers(address: str) -> int:
    """The number of worker processes connected to the scheduler at ``address``."""
    with Client(address, set_as_default=False) as client:
        return len(client.scheduler_info().get("workers", {}))


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

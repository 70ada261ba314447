"""Peak memory of a process tree (this process and every descendant), sampled in a thread.

Every ``interval`` seconds the sampler reads the resident set size (RSS) of this process and of all
its descendants (worker pools, Dask nannies' worker processes, ...) with psutil and keeps

- the peak of the *sum* over the tree (what the machine must hold at once; without this process
  itself with ``count_root=False``, when it only launches the measured command),
- per process: the peak RSS, taken as the larger of the sampled RSS and the kernel's own high-water
  mark ``VmHWM`` from ``/proc/PID/status`` (exact, so a spike between two samples is not missed for
  a single process; the tree sum can only be sampled),
- the CPU seconds each process used while sampling (for a process that already existed, such as
  this one or a warmed-up Dask worker, minus what it had used before; records written before
  2026-11-23 15:00 UTC counted that too, so their *other load* is slightly low). Its ``VmHWM``
  covers the whole life of such a process, so its peak can include work done before sampling,
- a timeline ``(seconds since start, tree RSS, processes, main RSS, largest worker RSS)`` for growth
  over the run.

It also takes the machine-wide CPU time at start and stop, so the CPU used by *other* processes
during the run (noise from another user on a shared machine) can be reported next to ours.

Usage::

    with TreeMemorySampler() as sampler:
        work()
    print(sampler.summary())

RSS counts shared pages (libraries, the page cache of memory-mapped files) in every process that
maps them, so the tree sum slightly over-states what the tree needs; it is the conservative number.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024


def _vm_hwm(pid: int) -> int | None:
    """The kernel's peak RSS of ``pid`` in bytes (Linux), or None."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def role_of(proc: psutil.Process, root_pid: int) -> str:
    """``main`` for the root, ``worker`` for spawned / forked worker processes (ProcessPoolExecutor,
    Dask worker processes), else ``helper`` (multiprocessing resource tracker, ...)."""
    if proc.pid == root_pid:
        return "main"
    try:
        cmdline = " ".join(proc.cmdline())
    except (psutil.Error, OSError):
        return "helper"
    if "resource_tracker" in cmdline or ("forkserver" in cmdline and "spawn_main" not in cmdline):
        return "helper"
    if "spawn_main" in cmdline or "multiprocessing" in cmdline or "distributed" in cmdline:
        return "worker"
    return "helper"


def _busy(times) -> float:
    """CPU seconds the machine spent busy (all CPUs) in ``psutil.cpu_times()``; ``steal`` counts as
    busy: on a virtual machine it is time taken by other guests."""
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


@dataclass
class ProcessPeak:
    pid: int
    role: str
    first_seen_s: float
    last_seen_s: float
    peak_rss: int = 0
    cpu_seconds: float = 0.0  # during the sampling only
    cpu_base: float = 0.0  # CPU seconds a process had already used when sampling started

    def as_dict(self) -> dict:
        return {
            "pid": self.pid,
            "role": self.role,
            "peak_rss_mb": round(self.peak_rss / MB, 1),
            "cpu_seconds": round(self.cpu_seconds, 1),
            "first_seen_s": round(self.first_seen_s, 1),
            "last_seen_s": round(self.last_seen_s, 1),
        }


@dataclass
class TreeMemorySampler:
    """Sample the RSS of this process tree every ``interval`` seconds in a background thread."""

    interval: float = 0.2
    root_pid: int = field(default_factory=os.getpid)
    #: whether the root's own RSS counts in the tree sum: not when the root only launches the
    #: measured command (``bench.run_bench``), whose memory would otherwise include the harness's,
    #: e.g. what generating the delivery in the same process left behind
    count_root: bool = True
    peak_total: int = 0
    peak_total_at_s: float = 0.0
    samples: int = 0
    processes: dict[int, ProcessPeak] = field(default_factory=dict)
    timeline: list[tuple[float, int, int, int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._root = psutil.Process(self.root_pid)
        self._known: dict[int, psutil.Process] = {}
        self.started = 0.0
        self.stopped = 0.0
        self._cpu_start = None
        self._cpu_stop = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> TreeMemorySampler:
        self.started = time.perf_counter()
        self._cpu_start = psutil.cpu_times()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="tree-memory-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self.stopped = time.perf_counter()
        self._cpu_stop = psutil.cpu_times()

    def __enter__(self) -> TreeMemorySampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    # -- sampling --------------------------------------------------------------------------------
    def _tree(self) -> list[psutil.Process]:
        try:
            children = self._root.children(recursive=True)
        except psutil.Error:
            children = []
        procs = [self._root]
        for child in children:  # reuse Process objects so cpu_times() keeps working per pid
            known = self._known.get(child.pid)
            if known is None or not known.is_running():
                self._known[child.pid] = known = child
            procs.append(known)
        return procs

    def _sample(self) -> None:
        now = time.perf_counter() - self.started
        total = main = worker = 0
        alive = 0
        for proc in self._tree():
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    cpu = proc.cpu_times()
            except (psutil.Error, OSError):
                continue
            alive += 1
            if proc.pid != self.root_pid or self.count_root:
                total += rss
            peak = self.processes.get(proc.pid)
            if peak is None:
                # a process that exists at the first sample (this one, a warm Dask worker) has used
                # CPU before the measurement; one that appears later started inside it
                base = cpu.user + cpu.system if self.samples == 0 else 0.0
                peak = self.processes[proc.pid] = ProcessPeak(
                    proc.pid, role_of(proc, self.root_pid), now, now, cpu_base=base
                )
            hwm = _vm_hwm(proc.pid) or 0
            peak.peak_rss = max(peak.peak_rss, rss, hwm)
            peak.cpu_seconds = cpu.user + cpu.system - peak.cpu_base
            peak.last_seen_s = now
            if peak.role == "main":
                main = rss
            elif peak.role == "worker":
                worker = max(worker, rss)
        self.samples += 1
        self.timeline.append((now, total, alive, main, worker))
        if total > self.peak_total:
            self.peak_total, self.peak_total_at_s = total, now

    # -- results ---------------------------------------------------------------------------------
    def peak_between(self, start_s: float, end_s: float) -> int:
        """Peak tree RSS (bytes) among the samples taken between ``start_s`` and ``end_s`` seconds."""
        inside = [s[1] for s in self.timeline if start_s <= s[0] <= end_s]
        if not inside:  # a step shorter than the interval: the first sample after it started
            inside = [next((s[1] for s in self.timeline if s[0] >= start_s), self.current_total())]
        return max(inside)

    def current_total(self) -> int:
        return self.timeline[-1][1] if self.timeline else 0

    def compact_timeline(self, points: int = 120) -> list[list[float]]:
        """At most ``points`` rows ``[seconds, tree RSS MB, main process RSS MB, largest worker RSS MB]``:
        the maxima within each of ``points`` equal time slices (seconds: of the tree maximum)."""
        if not self.timeline:
            return []
        end = self.timeline[-1][0] or 1.0
        width = end / points
        slices: dict[int, list] = {}
        for t, total, _, main, worker in self.timeline:
            k = min(int(t / width), points - 1)
            row = slices.setdefault(k, [t, 0, 0, 0])
            if total > row[1]:
                row[0], row[1] = t, total
            row[2], row[3] = max(row[2], main), max(row[3], worker)
        return [
            [round(t, 1), round(a / MB, 1), round(b / MB, 1), round(c / MB, 1)]
            for t, a, b, c in (slices[k] for k in sorted(slices))
        ]

    def summary(self) -> dict:
        wall = (self.stopped or time.perf_counter()) - self.started
        workers = [p for p in self.processes.values() if p.role == "worker"]
        main = self.processes.get(self.root_pid)
        ours = sum(p.cpu_seconds for p in self.processes.values())
        machine_cpu = None
        if self._cpu_start is not None and self._cpu_stop is not None:
            machine_cpu = _busy(self._cpu_stop) - _busy(self._cpu_start)
        return {
            "interval_s": self.interval,
            "samples": self.samples,
            "peak_tree_rss_mb": round(self.peak_total / MB, 1),
            "root_counted": self.count_root,
            "peak_tree_rss_at_s": round(self.peak_total_at_s, 1),
            "peak_main_rss_mb": round(main.peak_rss / MB, 1) if main else None,
            "peak_worker_rss_mb": round(max((p.peak_rss for p in workers), default=0) / MB, 1),
            "worker_processes_seen": len(workers),
            "processes": [p.as_dict() for p in sorted(self.processes.values(), key=lambda p: p.first_seen_s)],
            "cpu_seconds_tree": round(ours, 1),
            "cpu_seconds_machine": round(machine_cpu, 1) if machine_cpu is not None else None,
            "cpu_seconds_other": round(max(machine_cpu - ours, 0.0), 1) if machine_cpu is not None else None,
            "wall_s": round(wall, 2),
        }

"""``bench.memory.TreeMemorySampler``: what its tree sum counts (the launching process or not)."""

from __future__ import annotations

import subprocess
import sys

import psutil

from bench.memory import MB, TreeMemorySampler

CHILD = "import time; block = bytearray(150 * 1024 * 1024); block[::4096] = b'x' * len(block[::4096]); time.sleep(1.5)"


def test_the_tree_sum_counts_the_children_and_the_root_only_when_asked():
    own = psutil.Process().memory_info().rss
    with TreeMemorySampler(interval=0.05, count_root=False) as launcher:
        subprocess.run([sys.executable, "-c", CHILD], check=True)
    with TreeMemorySampler(interval=0.05) as everything:
        subprocess.run([sys.executable, "-c", CHILD], check=True)
    assert 150 * MB <= launcher.peak_total < 150 * MB + own  # the child, not this process
    assert everything.peak_total >= launcher.peak_total + 0.8 * own
    summary = launcher.summary()
    assert summary["peak_main_rss_mb"] >= own / MB * 0.8  # the root is still reported on its own


def test_a_launcher_without_children_holds_nothing():
    with TreeMemorySampler(interval=0.05, count_root=False) as sampler:
        pass
    assert sampler.peak_total == 0

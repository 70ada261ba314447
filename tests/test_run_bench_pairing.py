"""The 1 -> 2 worker speed-up in ``docs/benchmarks.md`` pairs runs of one commit only."""

from __future__ import annotations

from bench.run_bench import newest_pair


def _run(workers: int, commit: str, started: str, *, patients: int = 100_000, dirty: list[str] | None = None) -> dict:
    return {
        "status": "ok",
        "patients": patients,
        "params": {"workers": workers},
        "machine": {"git_commit": commit, "git_dirty": dirty or []},
        "started_utc": started,
    }


def test_runs_of_different_commits_are_not_paired():
    assert newest_pair([_run(1, "aaa", "2026-12-02T10:00"), _run(2, "bbb", "2026-12-03T10:00")]) is None


def test_the_newest_two_worker_run_with_a_partner_of_its_commit_and_size_is_paired():
    one_old = _run(1, "aaa", "2026-12-01T10:00")
    two_old = _run(2, "aaa", "2026-12-01T11:00")
    one_new = _run(1, "ccc", "2026-12-03T12:00")
    two_new = _run(2, "ccc", "2026-12-03T11:00")
    other_size = _run(1, "ddd", "2026-12-04T10:00", patients=1_000_000)
    two_newest = _run(2, "ddd", "2026-12-04T11:00")
    assert newest_pair([one_old, two_old, one_new, two_new, other_size, two_newest]) == (one_new, two_new)


def test_a_run_on_a_changed_tree_is_not_paired():
    assert newest_pair([_run(1, "aaa", "2026-12-01T10:00"), _run(2, "aaa", "2026-12-01T11:00", dirty=["x"])]) is None

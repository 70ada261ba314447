"""``transforms.output_folder``: only recognised folders are replaced, replacing is atomic, one writer
at a time, and the debris of interrupted runs is restored or removed by the next one. Every kill
point of a publish is tested in a separate process killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fs_guards import unchangeable
from transforms.output_folder import (
    OutputError,
    Publication,
    acquire_lock,
    check_target,
    exchange,
    lock_holder,
    lock_path,
    output_kind,
    release_lock,
    require_output,
)

REPO = Path(__file__).resolve().parents[1]


def publish(target: Path, content: str, kind: str = "store") -> Path:
    publication = Publication.begin(target, kind)
    (publication.work_path / "data.txt").write_text(content)
    (publication.work_path / "sub").mkdir()
    (publication.work_path / "sub" / "part.txt").write_text(content * 3)
    return publication.commit({"content": content})


def siblings(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir())


def state_of(target: Path) -> str | None:
    """Which complete version the target holds ('old' / 'new'), failing on a mix."""
    if not target.exists():
        return None
    data = (target / "data.txt").read_text()
    assert (target / "sub" / "part.txt").read_text() == data * 3, "a mix of two versions"
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["content"] == data and manifest["zorgpad"]["kind"] == "store"
    assert sorted(p.name for p in target.iterdir()) == ["data.txt", "manifest.json", "sub"]
    return data


# ------------------------------------------------------------------------------ what may be written
def test_a_folder_with_a_users_files_is_refused_and_left_as_it_was(tmp_path):
    folder = tmp_path / "X"
    folder.mkdir()
    (folder / "thesis.docx").write_text("hi")
    with pytest.raises(OutputError, match=r"files that are not a zorgpad store .*thesis.docx"):
        Publication.begin(folder, "store")
    assert (folder / "thesis.docx").read_text() == "hi"
    assert siblings(folder) == ["X"], "no lock file or work folder left behind"


def test_an_output_of_another_kind_is_refused(tmp_path):
    store = publish(tmp_path / "store", "old")
    with pytest.raises(OutputError, match="holds a zorgpad store"):
        Publication.begin(store, "episodes")
    assert state_of(store) == "old"


def test_a_file_a_missing_output_and_overlapping_inputs_are_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_target(tmp_path / "f", "store")
    delivery = tmp_path / "delivery"
    delivery.mkdir()
    for target, relation in (
        (delivery, " is the delivery"),
        (delivery / "store", "lies inside the delivery"),
        (tmp_path, "contains the delivery"),
    ):
        with pytest.raises(OutputError, match=relation):
            check_target(target, "store", inputs={"delivery": delivery}, option="--store")
    with pytest.raises(OutputError, match=r"does not exist.*run `zorgpad ingest` first"):
        require_output(tmp_path / "nothing", "store")
    with pytest.raises(OutputError, match="is not a zorgpad store"):
        require_output(delivery, "store")


def test_a_folder_that_cannot_be_written_is_refused_before_anything_starts(tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    with unchangeable(parent):
        with pytest.raises(OutputError, match="cannot write in"):
            Publication.begin(parent / "store", "store")
    assert list(parent.iterdir()) == []


def test_an_empty_folder_and_an_earlier_output_are_replaced(tmp_path):
    target = tmp_path / "store"
    target.mkdir()
    assert state_of(publish(target, "one")) == "one"
    assert state_of(publish(target, "two")) == "two"
    assert siblings(target) == ["store"], "nothing beside the store after a publish"
    assert output_kind(target) == "store"


def test_exchange_swaps_two_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b" / "y").write_text("b")
    if not exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this file system cannot exchange folders")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["y"]
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["x"]


def test_old_content_that_cannot_be_removed_does_not_stop_the_new_store(tmp_path, caplog):
    store = publish(tmp_path / "store", "old")
    stuck = store / "sub" / "part.txt"
    with unchangeable(stuck) as guard:
        assert state_of(publish(store, "new")) == "new"
        assert any("could not all be removed" in r.getMessage() for r in caplog.records)
        leftovers = [n for n in siblings(store) if n != "store"]
        assert len(leftovers) == 1 and ".zorgpad-new-" in leftovers[0]
        guard.path = store.parent / leftovers[0] / "sub" / "part.txt"  # the old content moved aside
    assert state_of(publish(store, "newer")) == "newer"
    assert siblings(store) == ["store"], "the next run removes what the last one could not"


# ------------------------------------------------------------------------------ one writer at a time
HOLD_LOCK = """
import sys, time
from pathlib import Path
from transforms.output_folder import acquire_lock
acquire_lock(Path(sys.argv[1]), command="zorgpad ingest (test holder)")
print("held", flush=True)
time.sleep(120)
"""


def _holder(target: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(target)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_stopped_with_the_name_of_the_first(tmp_path):
    target = tmp_path / "store"
    proc = _holder(target)
    try:
        assert lock_holder(target)["pid"] == proc.pid
        with pytest.raises(
            OutputError, match=rf"being written by another zorgpad run \(pid {proc.pid} on .*test holder"
        ):
            Publication.begin(target, "store")
    finally:
        proc.kill()
        proc.wait()
    assert lock_holder(target) is None, "the kernel released the dead holder's lock"
    stale = acquire_lock(target)
    try:
        assert stale["pid"] == proc.pid, "a stale lock is taken over and reported"
    finally:
        release_lock(target)
    assert not lock_path(target).exists()


# ------------------------------------------------------------------------------ kill points
KILL_AT = """
import os, signal, sys
from pathlib import Path
import transforms.output_folder as of

target, content, point = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
real_rename, real_exchange, real_remove = os.rename, of.exchange, of._remove
renames = []

def rename(a, b):
    renames.append((a, b))
    if point == "between-renames" and len(renames) == 2:
        die()
    real_rename(a, b)

def exchange(a, b):
    if point == "before-swap":
        die()
    done = real_exchange(a, b)
    if point == "after-swap":
        die()
    return done

def remove(folder, target):
    if point == "removing-old":  # half of the old content removed, then killed
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != of.WORK_MARKER)
        of.write_json_atomically(Path(folder) / of.WORK_MARKER, {"target": str(target)})
        for p in files[: len(files) // 2 + 1]:
            p.unlink()
        die()
    return real_remove(folder, target)

of.os.rename, of.exchange, of._remove = rename, exchange, remove
if point == "between-renames":  # a file system that cannot exchange: the two-rename path
    of.exchange = lambda a, b: False
if point == "writing":
    pub = of.Publication.begin(target, "store")
    (pub.work_path / "data.txt").write_text(content)
    die()
pub = of.Publication.begin(target, "store")
(pub.work_path / "data.txt").write_text(content)
(pub.work_path / "sub").mkdir()
(pub.work_path / "sub" / "part.txt").write_text(content * 3)
pub.commit({"content": content})
"""


@pytest.mark.parametrize("point", ["writing", "before-swap", "after-swap", "removing-old", "between-renames"])
def test_a_publish_killed_at_any_point_leaves_the_old_or_the_new_store_and_a_rerun_cleans_up(tmp_path, point):
    target = publish(tmp_path / "store", "old")
    done = subprocess.run(
        [sys.executable, "-c", KILL_AT, str(target), "new", point],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == -signal.SIGKILL
    state = state_of(target)
    if state is None:  # only between the two renames of a file system that cannot exchange
        assert point == "between-renames"
        with pytest.raises(OutputError, match=r"interrupted .* left a complete zorgpad store"):
            require_output(target, "store")
    else:
        assert state in ("old", "new"), state
        assert require_output(target, "store")["content"] == state
    assert state_of(publish(target, "rerun")) == "rerun"
    assert siblings(target) == ["store"], f"debris left after the rerun: {siblings(target)}"


def test_a_restore_prefers_the_complete_new_store(tmp_path):
    target = publish(tmp_path / "store", "old")
    subprocess.run(
        [sys.executable, "-c", KILL_AT, str(target), "new", "between-renames"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert not target.exists()
    publication = Publication.begin(target, "store")  # restores, then writes its own
    try:
        assert state_of(target) == "new"
    finally:
        publication.abandon()
    assert siblings(target) == ["store"]


def test_a_folder_is_never_taken_for_debris_by_its_name_alone(tmp_path):
    target = publish(tmp_path / "store", "old")
    look_alike = tmp_path / "store.zorgpad-old-0123456789ab"
    look_alike.mkdir()
    (look_alike / "notes.txt").write_text("mine")
    publish(target, "new")
    assert (look_alike / "notes.txt").read_text() == "mine"

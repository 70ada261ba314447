"""``zorgpad`` as a user runs it, in its own process: wrong folders and options are refused in
seconds with one ``error:`` line and nothing changed; two runs on one store cannot both write it;
a run killed with SIGKILL in the middle of its work or of its publish leaves the old store or the
new one, never a mix, and no process behind; the rerun finishes and leaves no debris."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fs_guards import unchangeable
from transforms.synth import SynthConfig, generate_delivery

# integration: a real zorgpad process per case, ingests of generated deliveries, runs killed midway
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
ZORGPAD = shutil.which("zorgpad", path=str(Path(sys.executable).parent)) or shutil.which("zorgpad")


def environment(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp / "prefect-home"), PYTHONPATH=str(REPO), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def zorgpad(tmp: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    assert ZORGPAD, "the zorgpad command is not installed (pip install -e .)"
    return subprocess.run([ZORGPAD, *args], capture_output=True, text=True, env=environment(tmp), timeout=timeout)


def assert_one_error_line(done: subprocess.CompletedProcess, *fragments: str, started_a_flow: bool = False) -> str:
    """Exit status 2, one ``error:`` line, no traceback; no Prefect or Dask log lines at all when
    the error was found before any flow started, and none of Prefect's failure logging when it
    was found inside one (its progress lines are not the error's)."""
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    if started_a_flow:
        assert "| ERROR" not in output and "Failed(" not in output and "exception" not in output.lower(), output
    else:
        assert "| INFO" not in output and "| ERROR" not in output, f"Prefect logged around the error:\n{output}"
    return errors[0]


def digest(folder: Path) -> dict[str, str]:
    """Content of every file except what differs between two runs of the same delivery."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not rel.startswith("validation/") and rel != "manifest.json":
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def siblings(folder: Path) -> list[str]:
    """What is beside ``folder`` (the test's Prefect home left out)."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name != "prefect-home")


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "delivery"
    generate_delivery(SynthConfig(patients=400, seed=3, block_size=200), out)
    return out


@pytest.fixture(scope="module")
def reference_ingest(delivery, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The delivery ingested once by the command, undisturbed, and what the command printed."""
    tmp = tmp_path_factory.mktemp("reference")
    done = zorgpad(tmp, "ingest", str(delivery), "--store", str(tmp / "store"), "--workers", "1", "--buckets", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp / "store", done


@pytest.fixture(scope="module")
def reference_store(reference_ingest) -> Path:
    return reference_ingest[0]


def test_an_ingest_prints_its_summary_without_prefect_or_dask_info_lines(reference_ingest, delivery, tmp_path):
    """By default a few lines (where the store, the books, validation and the Data Docs are);
    ``--verbose`` brings back Prefect's INFO records."""
    store, done = reference_ingest
    lines = (done.stdout + done.stderr).splitlines()
    assert not [line for line in lines if "| INFO" in line or "distributed." in line], "\n".join(lines)
    assert len(lines) <= 10, "\n".join(lines)
    assert lines[0] == f"store:       {store}" and lines[1].startswith("books:       ")
    verbose = zorgpad(
        tmp_path,
        "ingest",
        str(delivery),
        "--store",
        str(tmp_path / "store"),
        "--workers",
        "1",
        "--buckets",
        "2",
        "--verbose",
    )
    assert verbose.returncode == 0, verbose.stdout + verbose.stderr
    assert "| INFO" in verbose.stdout + verbose.stderr


# ------------------------------------------------------------------------------ refused in seconds
def test_a_store_folder_with_a_users_files_is_refused_and_kept(delivery, tmp_path):
    store = tmp_path / "X"
    store.mkdir()
    (store / "thesis.docx").write_text("hi")
    started = time.monotonic()
    done = zorgpad(tmp_path, "ingest", str(delivery), "--store", str(store))
    assert_one_error_line(done, "holds files that are not a zorgpad store", "thesis.docx")
    assert time.monotonic() - started < 60, "refused before any Prefect API or Dask cluster started"
    assert (store / "thesis.docx").read_text() == "hi" and siblings(store) == ["X"]


def test_the_delivery_itself_is_never_the_store(delivery, tmp_path):
    before = digest(delivery)
    for store in (delivery, delivery / "store", delivery.parent):
        done = zorgpad(tmp_path, "ingest", str(delivery), "--store", str(store))
        assert_one_error_line(done, "the delivery")
    assert digest(delivery) == before


@pytest.mark.parametrize(
    "case",
    [
        "store is a file",
        "read-only parent",
        "buckets -1",
        "critical share -1",
        "critical share 2",
        "workers 0",
        "missing delivery",
    ],
)
def test_wrong_paths_and_options_are_refused_before_any_work(delivery, tmp_path, case):
    args = ["ingest", str(delivery), "--store", str(tmp_path / "store")]
    expected = {
        "store is a file": "is a file",
        "read-only parent": "cannot write in",
        "buckets -1": "--buckets",
        "critical share -1": "--critical-share",
        "critical share 2": "--critical-share",
        "workers 0": "--workers",
        "missing delivery": "does not exist",
    }[case]
    if case == "store is a file":
        (tmp_path / "store").write_text("not a folder")
    if case == "buckets -1":
        args += ["--buckets", "-1"]
    if case.startswith("critical share"):
        args += ["--critical-share", case.split()[-1]]
    if case == "workers 0":
        args += ["--workers", "0"]
    if case == "missing delivery":
        args[1] = str(tmp_path / "nowhere")
    if case == "read-only parent":
        parent = tmp_path / "locked"
        parent.mkdir()
        args[3] = str(parent / "store")
        with unchangeable(parent):
            assert_one_error_line(zorgpad(tmp_path, *args), expected)
        return
    assert_one_error_line(zorgpad(tmp_path, *args), expected)


def test_a_delivery_rejected_inside_the_run_gives_one_line_and_no_store(delivery, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(delivery, broken)
    path = sorted((broken / "gp").glob("*.parquet"))[0]
    table = pq.read_table(path)
    codes = np.array(table.column("service_cd").to_pylist(), dtype=object)
    codes[: len(codes) // 2] = "99999"
    pq.write_table(
        table.set_column(table.column_names.index("service_cd"), "service_cd", pa.array(codes, pa.string())), path
    )
    done = zorgpad(tmp_path, "ingest", str(broken), "--store", str(tmp_path / "store"), "--workers", "1")
    assert_one_error_line(done, "delivery rejected", "gp.service_cd.code_valid", started_a_flow=True)
    assert siblings(tmp_path / "store") == ["broken"], "nothing written, no lock left"


def test_episodes_refuse_an_output_inside_the_store_or_holding_other_files(reference_store, tmp_path):
    before = digest(reference_store)
    done = zorgpad(tmp_path, "episodes", "--store", str(reference_store), "--out", str(reference_store / "episodes"))
    assert_one_error_line(done, "lies inside the store")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "analysis.R").write_text("x")
    done = zorgpad(tmp_path, "episodes", "--store", str(reference_store), "--out", str(mine))
    assert_one_error_line(done, "holds files that are not a zorgpad episodes folder")
    done = zorgpad(tmp_path, "episodes", "--store", str(tmp_path / "nostore"), "--out", str(tmp_path / "e"))
    assert_one_error_line(done, "does not exist", "zorgpad ingest")
    assert digest(reference_store) == before and (mine / "analysis.R").exists()


def test_episodes_refuse_a_delivery_and_say_to_ingest_it_first(delivery, tmp_path):
    """Episodes are built from a store only (validated, netted, patient-bucketed): a delivery, the
    generator's or a hand-made one, is refused with one line saying to run ``zorgpad ingest``."""
    from tiny_delivery import TinyDelivery

    tiny = TinyDelivery(tmp_path / "tiny")
    tiny.patient("P1")
    hand_made = tiny.write()
    for folder, holds in ((delivery, "it holds a synthetic delivery"), (hand_made, "no manifest.json")):
        before = digest(folder)
        done = zorgpad(tmp_path, "episodes", "--store", str(folder), "--out", str(tmp_path / "e"))
        assert_one_error_line(done, "--store", "is not a zorgpad store", holds, "run `zorgpad ingest` first")
        assert digest(folder) == before and not (tmp_path / "e").exists()


# ------------------------------------------------------------------------------ concurrent runs
def _start(tmp: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [ZORGPAD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(tmp),
        start_new_session=True,
    )


def _wait_for(condition, timeout: float = 300, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_second_ingest_into_the_same_store_is_refused(delivery, reference_store, tmp_path):
    store = tmp_path / "store"
    first = _start(tmp_path, "ingest", str(delivery), "--store", str(store), "--workers", "1", "--buckets", "2")
    try:
        _wait_for(lambda: (tmp_path / "store.zorgpad-lock").exists(), proc=first)
        second = zorgpad(tmp_path, "ingest", str(delivery), "--store", str(store), "--workers", "1")
        assert_one_error_line(second, "being written by another zorgpad run", f"pid {first.pid}", started_a_flow=False)
        out, err = first.communicate(timeout=600)
        assert first.returncode == 0, out + err
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert digest(store) == digest(reference_store)
    assert siblings(store) == ["store"]


# ------------------------------------------------------------------------------ kills
def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _assert_gone(processes: list[psutil.Process], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    alive = processes
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    assert not alive, f"left running after the kill: {[(p.pid, ' '.join(p.cmdline()[:4])) for p in alive]}"


def _kill(proc: subprocess.Popen) -> list[psutil.Process]:
    """SIGKILL the command's own process only (as the OOM killer or a lost shell would), and return
    its descendants, which must then end by themselves."""
    children = _descendants(proc.pid)
    proc.kill()
    proc.wait()
    return children


KILLED_AT_SWAP = """
import os, signal, sys
import transforms.output_folder as of
real, point = of.exchange, sys.argv[1]
def exchange(a, b):
    if point == "after":
        real(a, b)
    os.kill(os.getpid(), signal.SIGKILL)
of.exchange = exchange
sys.argv = ["zorgpad", *sys.argv[2:]]
from flows.cli import main
main()
"""


@pytest.fixture(scope="module")
def next_delivery(tmp_path_factory) -> tuple[Path, Path]:
    """A second, different delivery and its store, ingested undisturbed: what replaces the first."""
    tmp = tmp_path_factory.mktemp("next")
    generate_delivery(SynthConfig(patients=300, seed=4, block_size=300), tmp / "delivery")
    done = zorgpad(
        tmp, "ingest", str(tmp / "delivery"), "--store", str(tmp / "store"), "--workers", "1", "--buckets", "2"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp / "delivery", tmp / "store"


@pytest.mark.parametrize("point", ["validating", "before-swap", "after-swap"])
def test_an_ingest_killed_midway_leaves_a_complete_store_and_no_process_and_the_rerun_finishes(
    reference_store, next_delivery, tmp_path, point
):
    new_delivery, new_reference = next_delivery
    store = tmp_path / "store"
    shutil.copytree(reference_store, store)  # the old store, complete
    old, new = digest(reference_store), digest(new_reference)
    assert old != new
    args = ["ingest", str(new_delivery), "--store", str(store), "--workers", "1", "--buckets", "2"]
    if point == "validating":
        proc = _start(tmp_path, *args)
        _wait_for(lambda: any(tmp_path.glob("store.zorgpad-new-*/_staging/rows/*/*.arrow")), proc=proc)
        children = _kill(proc)
    else:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_AT_SWAP, point.split("-")[0], *args],
            env=environment(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        children = []
        while proc.poll() is None:  # remember its processes until the patched swap kills it
            children = _descendants(proc.pid) or children
            time.sleep(0.2)
        assert proc.returncode == -signal.SIGKILL, proc.communicate()
    try:
        _assert_gone(children)
    finally:
        for child in children:
            if child.is_running():
                child.kill()
    expected = new if point == "after-swap" else old
    assert digest(store) == expected, "the store is the complete old one or the complete new one"
    assert json.loads((store / "manifest.json").read_text())["balanced"]
    assert any(n.startswith("store.zorgpad-") for n in siblings(store)), "the kill left its work behind"
    rerun = zorgpad(tmp_path, *args)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert digest(store) == new
    assert siblings(store) == ["store"], "the rerun removed the debris and the stale lock"

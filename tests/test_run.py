"""``zorgpad run`` end to end, as a data team runs it: one command, one folder, a report; an unchanged
rerun does no work; a run on a Dask cluster started outside the process (``dask scheduler`` and two
``dask worker`` processes on loopback) gives the same tables, also when a worker is killed in the
middle; a run killed in the middle resumes from what was finished and gives the same tables."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli_safety import ZORGPAD, environment, zorgpad

# integration: zorgpad run end to end, an outside Dask cluster with a worker killed, a killed run resumed
pytestmark = pytest.mark.integration

#: A few bundles keep the runs short; every stage still runs.
BUNDLES = "hip_oa,knee_oa,cataract"
SPEC = """name: hip_knee_episode_cost
bundles: [hip_oa, knee_oa]
unit: episode
period: year
years: [2015, 2020]
outcomes: [in_bundle_cents]
treatment: {from: contracts, anticipation: 0}
control: never_treated
cluster: provider_agb
"""


def tables(out: Path) -> dict[str, str]:
    """Every parquet file of the run's outputs with the SHA-256 of its bytes: what "identical
    output" means here (manifests carry paths and timings, the report its date)."""
    found = {}
    for path in sorted(out.rglob("*.parquet")):
        rel = path.relative_to(out)
        if rel.parts[0] in ("store", "episodes", "panels", "did"):
            found[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def run_args(delivery: Path, out: Path, specs: Path, *extra: str) -> list[str]:
    return ["run", "--delivery", str(delivery), "--out", str(out), "--specs", str(specs), "--bundles", BUNDLES, *extra]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("run")
    delivery = tmp / "delivery"
    done = zorgpad(tmp, "synth", "--out", str(delivery), "--patients", "1200", "--years", "2015-2020")
    assert done.returncode == 0, done.stderr[-3000:]
    specs = tmp / "specs"
    specs.mkdir()
    (specs / "hip_knee.yaml").write_text(SPEC)
    out = tmp / "out"
    started = time.perf_counter()
    done = zorgpad(tmp, *run_args(delivery, out, specs, "--workers", "2"), timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    return {
        "tmp": tmp,
        "delivery": delivery,
        "specs": specs,
        "out": out,
        "done": done,
        "seconds": time.perf_counter() - started,
        "tables": tables(out),
    }


def test_one_run_writes_every_stage_and_says_where_in_a_few_lines(first_run):
    out, done = first_run["out"], first_run["done"]
    lines = done.stdout.strip().splitlines()
    assert len(lines) < 30, done.stdout
    assert "INFO" not in done.stdout + done.stderr, (done.stdout + done.stderr)[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["zorgpad"]["kind"] == "run"
    assert {n: e["outcome"] for n, e in manifest["stages"].items()} == {
        "ingest": "built",
        "episodes": "built",
        "panels": "built",
        "did:hip_knee": "built",
        "report": "built",
    }
    for folder in ("store", "episodes", "panels", "did/hip_knee", "report"):
        assert (out / folder / "manifest.json").is_file(), folder
    # the summary separates the books from validation and says why rows failed
    books = next(line for line in lines if line.startswith("books "))
    assert books.startswith("books balanced")
    validation = next(line for line in lines if line.startswith("validation: "))
    store = json.loads((out / "store" / "manifest.json").read_text())
    quarantined = sum(e["rows_quarantined"] for e in store["books"].values())
    assert quarantined > 0 and f"{quarantined:,} of" in validation
    top_reason = max(manifest["summary"]["quarantine_reasons"].items(), key=lambda kv: kv[1])[0]
    assert top_reason in validation
    assert str(out / "report" / "index.html") in done.stdout
    assert "data docs:" in done.stdout


def test_an_unchanged_rerun_does_no_work_and_changes_nothing(first_run):
    out = first_run["out"]
    before = {
        p: (out / p).stat().st_mtime_ns
        for p in ("store/manifest.json", "episodes/manifest.json", "panels/manifest.json", "did/hip_knee/manifest.json")
    }
    started = time.perf_counter()
    done = zorgpad(first_run["tmp"], *run_args(first_run["delivery"], out, first_run["specs"], "--workers", "2"))
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert {n: e["outcome"] for n, e in manifest["stages"].items()} == {
        "ingest": "cached",
        "episodes": "cached",
        "panels": "cached",
        "did:hip_knee": "cached",
        "report": "built",
    }
    assert {p: (out / p).stat().st_mtime_ns for p in before} == before
    assert tables(out) == first_run["tables"]
    assert seconds < first_run["seconds"], (seconds, first_run["seconds"])


# --------------------------------------------------------------------- a cluster started outside
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask(tmp: Path, *args: str) -> subprocess.Popen:
    env = environment(tmp) | {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "ARROW_NUM_THREADS": "1"}
    dask = str(Path(sys.executable).with_name("dask"))
    return subprocess.Popen(
        [dask, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _wait_for_workers(address: str, n: int, timeout: float = 60) -> list[dict]:
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(n, timeout=timeout)
        return list(client.scheduler_info()["workers"].values())


@pytest.fixture()
def cluster(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [_dask(tmp_path, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0")]
    time.sleep(2)
    processes += [
        _dask(
            tmp_path,
            "worker",
            address,
            "--nthreads",
            "1",
            "--nworkers",
            "1",
            "--memory-limit",
            "4GiB",
            "--host",
            "127.0.0.1",
        )
        for _ in range(2)
    ]
    _wait_for_workers(address, 2)
    yield address
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def _worker_pids(address: str) -> list[int]:
    from distributed import Client

    with Client(address, timeout=30) as client:
        return list(client.run(os.getpid).values())


def test_an_outside_cluster_gives_identical_tables_even_when_a_worker_is_killed(first_run, cluster, tmp_path):
    out = tmp_path / "out"
    run = subprocess.Popen(
        [ZORGPAD, *run_args(first_run["delivery"], out, first_run["specs"], "--scheduler", cluster)],
        env=environment(first_run["tmp"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # kill one worker process while the ingest's tasks run (its nanny starts a new one)
    deadline = time.monotonic() + 300
    while (
        time.monotonic() < deadline
        and not list(out.parent.glob("store.zorgpad-new-*"))
        and not list(out.glob("store.zorgpad-new-*"))
    ):
        time.sleep(0.2)
    time.sleep(3)
    victim = _worker_pids(cluster)[0]
    os.kill(victim, signal.SIGKILL)
    _stdout, stderr = run.communicate(timeout=1200)
    assert run.returncode == 0, stderr[-4000:]
    assert victim not in _worker_pids(cluster)
    assert tables(out) == first_run["tables"]


def test_a_killed_run_resumes_from_what_was_finished(first_run, tmp_path):
    out = tmp_path / "out"
    run = subprocess.Popen(
        [ZORGPAD, *run_args(first_run["delivery"], out, first_run["specs"], "--workers", "2")],
        env=environment(first_run["tmp"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        manifest = out / "manifest.json"
        if manifest.is_file() and "episodes" in json.loads(manifest.read_text()).get("stages", {}):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the run did not finish its episodes in 10 minutes")
    os.killpg(run.pid, signal.SIGKILL)  # the run and its local Dask cluster, mid-way through the panels
    run.wait()
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert set(stages) == {"ingest", "episodes"}
    done = zorgpad(first_run["tmp"], *run_args(first_run["delivery"], out, first_run["specs"], "--workers", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = {n: e["outcome"] for n, e in json.loads((out / "manifest.json").read_text())["stages"].items()}
    assert outcomes == {
        "ingest": "cached",
        "episodes": "cached",
        "panels": "built",
        "did:hip_knee": "built",
        "report": "built",
    }
    assert tables(out) == first_run["tables"]
    assert not [p.name for p in out.iterdir() if re.search(r"zorgpad-(new|old)-", p.name)]


# --------------------------------------------------------------------------------- the report
def test_the_report_renders_in_a_browser_with_every_image(first_run, tmp_path):
    from tests.data_docs_check import browser

    report = first_run["out"] / "report" / "index.html"
    page = report.read_text(encoding="utf-8")
    assert "<script" not in page and "http://" not in page and "https://" not in page  # offline, static
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (report.parent / src).is_file(), src
    for href in re.findall(r'href="([^"#]+)"', page):
        assert (report.parent / href).resolve().is_file(), href
    assert "Books" in page and "Validation and quarantine" in page and "hip_oa" in page
    chromium = browser()
    if chromium is None:
        pytest.skip("no Chromium here (.ci/run installs it): the links and images were checked on disk")
    # a copy of the page with a script that counts the images the browser decoded
    probe = report.with_name("probe.html")
    probe.write_text(
        page.replace(
            "</body>",
            "<script>document.addEventListener('DOMContentLoaded', () => {"
            "window.addEventListener('load', () => { const i = [...document.images];"
            "document.body.insertAdjacentHTML('beforeend', '<p id=probe>images ' + i.length +"
            "' decoded ' + i.filter(x => x.complete && x.naturalWidth > 0).length + '</p>');"
            "}); });</script></body>",
        ),
        encoding="utf-8",
    )
    try:
        flags = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=10000",
        ]
        dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
        found = re.search(r"images (\d+) decoded (\d+)", dom.stdout)
        assert found, dom.stderr[-2000:]
        assert int(found.group(1)) >= 1 and found.group(1) == found.group(2), found.group(0)
        shot = tmp_path / "report.png"
        subprocess.run(
            [*flags, "--window-size=1280,2400", f"--screenshot={shot}", report.as_uri()],
            capture_output=True,
            timeout=120,
            check=True,
        )
        from PIL import Image

        image = Image.open(shot).convert("L")
        assert image.size == (1280, 2400)
        low, high = image.getextrema()
        assert high - low > 100  # text and charts, not a blank page
    finally:
        probe.unlink(missing_ok=True)


def test_one_catalog_covers_the_whole_run_folder(first_run):
    import duckdb

    out = first_run["out"]
    done = zorgpad(first_run["tmp"], "catalog", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    with duckdb.connect(str(out / "catalog.duckdb"), read_only=True) as con:
        views = {row[0] for row in con.execute("select view_name from catalog_tables").fetchall()}
        assert {"store_dbc", "episodes_episodes", "panels_benchmark", "did_panel_panel"} <= views, sorted(views)
        bundles = {row[0] for row in con.execute("select distinct bundle_id from episodes_episodes").fetchall()}
    assert bundles == set(BUNDLES.split(","))


def test_a_changed_spec_rebuilds_only_its_panel(first_run, tmp_path):
    """Last in the module: it changes the first run's DiD panel."""
    out = first_run["out"]
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "hip_knee.yaml").write_text(SPEC.replace("years: [2015, 2020]", "years: [2016, 2020]"))
    done = zorgpad(first_run["tmp"], *run_args(first_run["delivery"], out, specs, "--workers", "1"))
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = {n: e["outcome"] for n, e in json.loads((out / "manifest.json").read_text())["stages"].items()}
    assert outcomes == {
        "ingest": "cached",
        "episodes": "cached",
        "panels": "cached",
        "did:hip_knee": "built",
        "report": "built",
    }


def test_a_scheduler_that_is_not_an_address_leaves_no_run_folder(tmp_path):
    delivery = tmp_path / "delivery"
    delivery.mkdir()
    done = zorgpad(
        tmp_path,
        "run",
        "--delivery",
        str(delivery),
        "--out",
        str(tmp_path / "run"),
        "--scheduler",
        "{{ $ZORGPAD_DASK_SCHEDULER }}",
    )
    assert done.returncode == 2
    assert "error: --scheduler" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_the_demo_says_in_under_30_lines_where_the_panels_report_and_data_docs_are(tmp_path):
    """The README's first command: a generated delivery through every stage, and a short answer."""
    done = zorgpad(tmp_path, "demo", "--out", str(tmp_path / "demo"), "--patients", "300", timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) < 30, "\n".join(lines)
    assert not [line for line in lines if "| INFO" in line or "distributed." in line], "\n".join(lines)
    shown = {line.split(":", 1)[0]: line.split(":", 1)[1].split()[0] for line in lines if ":" in line}
    assert Path(shown["report"]).is_file() and Path(shown["report"]).name == "index.html"
    assert Path(shown["panels"]).is_dir() and (Path(shown["panels"]) / "manifest.json").is_file()
    assert Path(shown["data docs"]).is_file()
    assert next(line for line in lines if line.startswith("books ")).startswith("books balanced")

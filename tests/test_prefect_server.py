"""The deployments of ``deploy/prefect.yaml`` on a real Prefect server, as production runs them: a
``prefect server start`` on loopback backed by its own PostgreSQL cluster (SQLite locks under the
concurrent writes of many task runs), the deployments registered with ``prefect deploy``, a process
work pool and its worker; a deployment triggered through the API runs on the worker, reaches
Completed and leaves a complete output folder. The monthly run and a researcher's panel build (a
spec given as a parameter, as from the UI) both go that way.

PostgreSQL is not a Python package: its binaries are looked up in ``PATH`` and in Debian's
``/usr/lib/postgresql/*/bin`` (``.ci/run`` installs them); without them the test fails rather than
skips, so a CI machine that lost them does not pass silently. ``initdb`` refuses to run as root, so
as root the cluster belongs to the ``postgres`` user (or ``nobody``) and lives in a folder of its own
under the system temp folder (pytest's own is private to root).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.test_cli_safety import REPO, environment, zorgpad

#: The timeout is per test and the first one pays for the module's fixtures, a flow run included
#: (``RUN_TIMEOUT``).
# integration: a Prefect server on PostgreSQL, deployments and a worker
pytestmark = [pytest.mark.timeout(2400), pytest.mark.integration]

PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "zorgpad"
#: The longest a triggered flow run may take from Scheduled to a final state.
RUN_TIMEOUT = 15 * 60
BUNDLES = ["hip_oa", "knee_oa"]
SPEC = """name: {name}
bundles: [hip_oa, knee_oa]
unit: episode
period: year
years: [{first}, 2020]
outcomes: [in_bundle_cents]
treatment: {{from: contracts, anticipation: 0}}
control: never_treated
cluster: provider_agb
"""


# ------------------------------------------------------------------------------------ helpers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"({path}: {error})"
    return "\n".join(text.splitlines()[-lines:])


def _postgres_bin() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: from ``PATH``, else Debian's newest
    ``/usr/lib/postgresql/<version>/bin``."""
    candidates = []
    if found := shutil.which("initdb"):
        candidates.append(Path(found).resolve().parent)

    def version(folder: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", folder.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres", "createdb")):
            return folder
    pytest.fail(
        "PostgreSQL is not installed: no initdb/pg_ctl in PATH or in /usr/lib/postgresql/*/bin. "
        "Install it (Debian/Ubuntu: apt-get install postgresql; .ci/run does) to run the Prefect server "
        "tests.",
        pytrace=False,
    )


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The user PostgreSQL runs as when the tests run as root (``initdb`` refuses root); None when
    they do not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    pytest.fail("running as root and neither a postgres nor a nobody user exists to run PostgreSQL as", pytrace=False)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _stop(process: subprocess.Popen, token: str | None = None, grace: float = 10) -> None:
    """Stop ``process``, its process group and every process below it: SIGTERM, SIGKILL after
    ``grace`` seconds. A worker starts each flow run in a session of its own (and a flow run its
    Dask processes), so the group alone is not enough; processes orphaned earlier are found by the
    ``token`` their environment carries."""
    below = _descendants(process.pid)
    if token:
        for candidate in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if candidate.pid != os.getpid() and candidate.environ().get("ZORGPAD_TEST_PROCESS") == token:
                    below.append(candidate)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    for child in below:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    psutil.wait_procs(below, timeout=2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in below:
        with contextlib.suppress(psutil.Error):
            child.kill()
    process.wait()


def _healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# ------------------------------------------------------------------------------------ PostgreSQL
class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (and a Unix socket in its folder) with a database
    ``prefect``, trusted for local connections: nothing outside this machine reaches it and it
    lives only as long as the test module."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.owner = _unprivileged_user()
        self.folder = Path(tempfile.mkdtemp(prefix="zorgpad-pg-"))
        if self.owner:
            os.chown(self.folder, self.owner.pw_uid, self.owner.pw_gid)
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = _free_port()
        self.user = "zorgpad"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/prefect"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        as_owner = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []} if self.owner else {}
        env = {
            "PATH": f"{self.bin}:{os.environ.get('PATH', '')}",
            "LC_ALL": "C",
            "LANG": "C",
            "HOME": str(self.folder),
            "TZ": "UTC",
        }
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **as_owner,
        )

    def _check(self, done: subprocess.CompletedProcess, what: str) -> None:
        if done.returncode != 0:
            pytest.fail(
                f"PostgreSQL: {what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n"
                f"{done.stderr[-2000:]}\nlog:\n{_tail(self.log)}",
                pytrace=False,
            )

    def start(self) -> None:
        self._check(
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ),
            "initdb",
        )
        options = f"-k {self.folder} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._check(
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "120", "start"),
            "pg_ctl start",
        )
        self._check(
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "prefect"), "createdb"
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            done = self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
            if done.returncode != 0 and (self.data / "postmaster.pid").exists():
                with contextlib.suppress(ValueError, OSError):
                    os.kill(int((self.data / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    cluster = Postgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# ------------------------------------------------------------------------------------ Prefect
class Stack:
    """The running server, work pool and worker: their URLs, environments and logs."""

    def __init__(self, tmp: Path, postgres: Postgres) -> None:
        self.tmp = tmp
        self.postgres = postgres
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.token = uuid.uuid4().hex
        self.server_log = tmp / "server.log"
        self.worker_log = tmp / "worker.log"
        self.processes: list[subprocess.Popen] = []

    def env(self, home: str, **extra: str) -> dict[str, str]:
        """A Prefect process's environment: none of the caller's Prefect settings, a home of its
        own, the repository importable."""
        (self.tmp / home).mkdir(exist_ok=True)
        return environment(self.tmp / home) | {"PREFECT_UI_ENABLED": "false"} | extra

    def client_env(self) -> dict[str, str]:
        """What ``prefect deploy`` and the worker see: this server, the repository as the
        deployments' working directory, and no outside Dask scheduler (each flow run starts a
        local cluster: an empty ``scheduler`` parameter); the token finds the worker's flow runs
        and their Dask processes again at teardown."""
        return self.env(
            "client-home",
            ZORGPAD_TEST_PROCESS=self.token,
            PREFECT_API_URL=self.api_url,
            ZORGPAD_HOME=str(REPO),
            ZORGPAD_DASK_SCHEDULER="",
            PREFECT_WORKER_QUERY_SECONDS="2",
            PREFECT_WORKER_PREFETCH_SECONDS="5",
        )

    def logs(self) -> str:
        return (
            f"\n--- worker log ({self.worker_log}) ---\n{_tail(self.worker_log, 80)}"
            f"\n--- server log ({self.server_log}) ---\n{_tail(self.server_log, 40)}"
            f"\n--- postgres log ---\n{_tail(self.postgres.log, 20)}"
        )

    def start_server(self, timeout: float = 240) -> None:
        env = self.env(
            "server-home",
            PREFECT_API_DATABASE_CONNECTION_URL=self.postgres.url,
            PREFECT_API_DATABASE_TIMEOUT="60",
            PREFECT_LOGGING_SERVER_LEVEL="WARNING",
        )
        with open(self.server_log, "ab") as log:
            server = subprocess.Popen(
                [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                cwd=self.tmp,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(server)
        deadline = time.monotonic() + timeout
        while not _healthy(self.api_url):
            if server.poll() is not None:
                pytest.fail(f"prefect server start exited with {server.returncode}{self.logs()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the Prefect server did not answer {self.api_url}/health in {timeout:.0f} s{self.logs()}",
                    pytrace=False,
                )
            time.sleep(0.5)

    def prefect(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """A ``prefect`` command against this server, from the repository root."""
        done = subprocess.run(
            [PREFECT, *args],
            env=self.client_env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, (
            f"prefect {' '.join(args)} exited with {done.returncode}:\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}{self.logs()}"
        )
        return done

    def start_worker(self) -> None:
        with open(self.worker_log, "ab") as log:
            worker = subprocess.Popen(
                [PREFECT, "worker", "start", "--pool", POOL, "--name", "zorgpad-test-worker"],
                env=self.client_env(),
                cwd=self.tmp,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(worker)

    def stop(self) -> None:
        """The worker (and its flow runs) first, then the server: a server that goes first leaves
        the worker retrying against nothing."""
        for process in reversed(self.processes):
            _stop(process, self.token if process.args[1] == "worker" else None)

    def client(self):
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)

    def wait(self, flow_run_id, timeout: float = RUN_TIMEOUT):
        """The flow run once it is in a final state; fails with the logs when it is not Completed
        in ``timeout`` seconds or the worker died."""
        worker = self.processes[-1]
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                run = client.read_flow_run(flow_run_id)
                if run.state is not None and run.state.is_final():
                    break
                if worker.poll() is not None:
                    pytest.fail(
                        f"the worker exited with {worker.returncode} while flow run {run.name} was "
                        f"{run.state_name}{self.logs()}",
                        pytrace=False,
                    )
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"flow run {run.name} still {run.state_name} after {timeout:.0f} s{self.logs()}", pytrace=False
                    )
                time.sleep(2)
            if not run.state.is_completed():
                pytest.fail(
                    f"flow run {run.name} ended {run.state_name}: {run.state.message}\n"
                    f"{self.run_logs(client, flow_run_id)}{self.logs()}",
                    pytrace=False,
                )
        return run

    @staticmethod
    def run_logs(client, flow_run_id, limit: int = 60) -> str:
        """The last log records the flow run sent to the API."""
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
        from prefect.client.schemas.sorting import LogSort

        records = client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=limit, sort=LogSort.TIMESTAMP_DESC
        )
        lines = [f"{r.timestamp:%H:%M:%S} {r.level:>2} {r.name}: {r.message}" for r in reversed(records)]
        return "--- flow run logs (API) ---\n" + "\n".join(lines)

    def trigger(self, deployment: str, parameters: dict):
        """A flow run of ``deployment`` created through the API, as the UI's "Run" does."""
        with self.client() as client:
            found = client.read_deployment_by_name(deployment)
            return client.create_flow_run_from_deployment(found.id, parameters=parameters)


@pytest.fixture(scope="module")
def stack(postgres, tmp_path_factory) -> Iterator[Stack]:
    """Server, work pool, deployments and worker, all stopped at teardown whatever happened."""
    running = Stack(tmp_path_factory.mktemp("prefect-server"), postgres)
    try:
        running.start_server()
        running.prefect("work-pool", "create", POOL, "--type", "process")
        running.prefect("--no-prompt", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml")
        running.start_worker()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> dict[str, Path]:
    """A small synthetic delivery and a spec folder with one DiD spec: the fewest patients whose hip
    and knee episodes still give a panel with rows (400 give none)."""
    tmp = tmp_path_factory.mktemp("delivery")
    done = zorgpad(tmp, "synth", "--out", str(tmp / "delivery"), "--patients", "1200", "--years", "2015-2020")
    assert done.returncode == 0, done.stderr[-3000:]
    specs = tmp / "specs"
    specs.mkdir()
    (specs / "hip_knee.yaml").write_text(SPEC.format(name="hip_knee_episode_cost", first=2015))
    return {"delivery": tmp / "delivery", "specs": specs, "tmp": tmp}


@pytest.fixture(scope="module")
def monthly_run(stack, delivery) -> dict:
    """The monthly deployment triggered through the API on the tiny delivery, run to Completed."""
    out = delivery["tmp"] / "run"
    started = time.monotonic()
    created = stack.trigger(
        "run/monthly-delivery",
        {"delivery": str(delivery["delivery"]), "out": str(out), "specs": str(delivery["specs"]), "bundles": BUNDLES},
    )
    run = stack.wait(created.id)
    return {"out": out, "flow_run": run, "seconds": time.monotonic() - started}


# ------------------------------------------------------------------------------------ tests
def test_both_deployments_are_registered_on_the_work_pool_with_their_schedules(stack):
    with stack.client() as client:
        pool = client.read_work_pool(POOL)
        monthly = client.read_deployment_by_name("run/monthly-delivery")
        panel = client.read_deployment_by_name("panel build/panel-build")
    assert pool.type == "process"
    assert monthly.work_pool_name == panel.work_pool_name == POOL
    assert [(s.schedule.cron, s.schedule.timezone) for s in monthly.schedules] == [("0 1 5 * *", "Europe/Amsterdam")]
    assert all(s.active for s in monthly.schedules)
    assert not panel.schedules  # a researcher asks for one
    assert {"spec", "store", "episodes", "out", "estimate"} <= set(panel.parameter_openapi_schema["properties"])
    assert {"delivery", "out", "specs", "bundles"} <= set(monthly.parameter_openapi_schema["properties"])
    # the templated scheduler is empty here: every run starts a local Dask cluster
    assert monthly.parameters["scheduler"] == panel.parameters["scheduler"] == ""
    # the working directory a flow run starts in: ZORGPAD_HOME, resolved when deployed
    pull = [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    assert monthly.pull_steps == panel.pull_steps == pull
    assert monthly.entrypoint == "flows/run_flow.py:run_flow"
    assert panel.entrypoint == "flows/panel_build_flow.py:panel_build_flow"


def test_the_monthly_deployment_runs_on_the_worker_and_writes_a_complete_run(monthly_run, stack):
    out = monthly_run["out"]
    run = monthly_run["flow_run"]
    assert run.state.is_completed() and run.work_pool_name == POOL
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["zorgpad"]["kind"] == "run"
    assert {n: e["outcome"] for n, e in manifest["stages"].items()} == {
        "ingest": "built",
        "episodes": "built",
        "panels": "built",
        "did:hip_knee": "built",
        "report": "built",
    }, stack.logs()
    for folder in ("store", "episodes", "panels", "did/hip_knee", "report"):
        assert (out / folder / "manifest.json").is_file(), folder
    assert (out / "report" / "index.html").is_file()
    assert sorted(p.name for p in (out / "panels").iterdir() if p.is_dir())
    assert not [p.name for p in out.iterdir() if re.search(r"zorgpad-(new|old|lock)", p.name)]


def test_a_panel_build_requested_with_a_spec_runs_on_that_runs_store(monthly_run, stack, delivery):
    out = monthly_run["out"]
    spec = delivery["tmp"] / "from_2016.yaml"
    spec.write_text(SPEC.format(name="hip_knee_from_2016", first=2016))
    request = delivery["tmp"] / "requests" / "from_2016"
    created = stack.trigger(
        "panel build/panel-build",
        {"spec": str(spec), "store": str(out / "store"), "episodes": str(out / "episodes"), "out": str(request)},
    )
    stack.wait(created.id)
    manifest = json.loads((request / "manifest.json").read_text())
    assert manifest["zorgpad"]["kind"] == "did_panel"
    assert manifest["name"] == "hip_knee_from_2016" and manifest["years"] == [2016, 2020]
    assert manifest["rows"]["panel"] > 0
    # the deployment's default estimate: true ran the estimation step (on a panel this small it may
    # report that it cannot estimate; that is its answer, not a failure of the run)
    assert manifest["estimates"]["summary"]
    assert (request / "estimates").is_dir()
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with stack.client() as client:
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[created.id])))
    assert "panel-build" in {a.key for a in artifacts}

"""What a user sees of the runtime around the flows: a user error raised inside a Prefect task is one
``error:`` line (bugs keep their traceback), the temporary Prefect API server dies with the process
that started it, and a local Dask cluster shuts down without tracebacks.

Real components throughout: Prefect flows against a real API server, real Dask clusters, real
processes killed with SIGKILL. Most checks run a small program in a subprocess, because what they
check is a whole process's stderr and exit status, or a process's death; those processes get a
private ``PREFECT_HOME`` and no ``PREFECT_API_URL``.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from prefect import flow, task
from typer.testing import CliRunner

from transforms.errors import UserFacingError

# integration: the temporary Prefect API and local clusters started and killed
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]

#: The messages Prefect 3's engines log a failed task or flow run with.
PREFECT_FAILURE_MESSAGES = (
    "Task run failed with exception",
    "Encountered exception during execution",
    "Finished in state Failed",
)


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    """One PREFECT_HOME for the subprocesses of this module: its database is migrated once."""
    return tmp_path_factory.mktemp("prefect-home")


def _environment(prefect_home: Path, *paths: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PREFECT_API_URL", "PREFECT_UI_URL")}
    env["PREFECT_HOME"] = str(prefect_home)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *map(str, paths)])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(script: Path, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=script.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- a user error inside a flow: one line, exit status 2 ----------------------------------------------

PROBE_APP = '''
import typer
from prefect import flow, task

from flows.cli import app, main
from transforms.errors import UserFacingError


class Rejected(UserFacingError):
    """A user error only a task can find."""


@task(name="check claims")
def check(kind: str) -> int:
    if kind == "user":
        raise Rejected("7.2% of the claims name no provider ('providers' table), more than the critical 5%")
    if kind == "bug":
        raise ValueError("a genuine bug")
    return 1


@flow(name="probe")
def probe(kind: str) -> int:
    return check(kind)


@app.command("probe")
def probe_command(kind: str) -> None:
    typer.echo(f"checked: {probe(kind)}")


if __name__ == "__main__":
    main()
'''


def test_a_user_error_inside_a_task_is_one_error_line_and_a_bug_keeps_its_traceback(tmp_path, prefect_home):
    script = tmp_path / "probe_app.py"
    script.write_text(PROBE_APP)
    env = _environment(prefect_home, tmp_path)

    user = _run(script, "probe", "user", env=env)
    output = user.stdout + user.stderr
    assert user.returncode == 2, output
    error_lines = [line for line in user.stderr.splitlines() if line.startswith("error:")]
    assert error_lines == [
        "error: 7.2% of the claims name no provider ('providers' table), more than the critical 5%"
    ], output
    assert "Traceback" not in output
    for message in PREFECT_FAILURE_MESSAGES:
        assert message not in output

    bug = _run(script, "probe", "bug", env=env)
    assert bug.returncode == 1, bug.stdout + bug.stderr
    assert "Traceback" in bug.stderr
    assert "ValueError: a genuine bug" in bug.stderr
    assert "Task run failed with exception: ValueError('a genuine bug')" in bug.stderr  # Prefect's logging stays
    assert not [line for line in bug.stderr.splitlines() if line.startswith("error:")]


class _InTaskRejection(UserFacingError):
    pass


@task(name="reject in process")
def _reject() -> None:
    raise _InTaskRejection("rejected inside a task, under CliRunner")


@flow(name="reject-in-process")
def _reject_flow() -> None:
    _reject()


def test_under_cli_runner_the_console_leaves_out_the_user_error_and_the_api_still_records_it():
    """The CLI app invoked as the tests invoke it (``CliRunner``, no ``main()``): the console handlers
    drop Prefect's records about the user error, the Prefect API still gets the run's failure and
    its logs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker, PrefectConsoleHandler

    from flows.cli import app

    @app.command("zz-reject-in-process", hidden=True)
    def _command() -> None:
        _reject_flow()

    console = logging.StreamHandler(io.StringIO())  # a console besides Prefect's
    logging.getLogger().addHandler(console)
    try:
        result = CliRunner().invoke(app, ["zz-reject-in-process"])
    finally:
        logging.getLogger().removeHandler(console)
        app.registered_commands[:] = [c for c in app.registered_commands if c.name != "zz-reject-in-process"]
    assert isinstance(result.exception, _InTaskRejection), result.output
    shown = console.stream.getvalue()
    for message in PREFECT_FAILURE_MESSAGES:
        assert message not in shown
    assert "Traceback" not in shown
    assert "Beginning flow run" in shown  # it did receive the run's records
    prefect_consoles = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    assert prefect_consoles and all(h.filters for h in prefect_consoles)

    APILogWorker.drain_all(timeout=5)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["reject-in-process"])), limit=50)
        run = max(runs, key=lambda r: r.created)
        assert run.state.is_failed() and "rejected inside a task" in run.state.message
        logged = ""
        for _ in range(50):  # the API log worker sends in batches
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            logged = "\n".join(log.message for log in logs)
            if "Finished in state Failed" in logged and "Encountered exception during execution" in logged:
                break
            time.sleep(0.2)
    assert "Task run failed with exception" in logged
    assert "Encountered exception during execution" in logged
    assert "Finished in state Failed" in logged


# --- the temporary Prefect API server ------------------------------------------------------------------

SERVE_AND_WAIT = """
import sys, time

from prefect import flow

from flows.prefect_api import ensure_api


@flow(name="api-probe")
def hello() -> str:
    return "hello"


if __name__ == "__main__":
    url = ensure_api()
    assert ensure_api() == url  # once per process
    assert hello() == "hello"
    from prefect.client.orchestration import get_client
    from prefect.server.api.server import SubprocessASGIServer

    with get_client(sync_client=True) as client:
        runs = [run.name for run in client.read_flow_runs(limit=200)]
        print(url, str(client.api_url), len(runs), len(SubprocessASGIServer._instances), flush=True)
    time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_temporary_api_server_serves_the_flows_and_dies_with_a_killed_parent(tmp_path, prefect_home):
    script = tmp_path / "serve_and_wait.py"
    script.write_text(SERVE_AND_WAIT)
    parent = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_environment(prefect_home, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    servers: list[psutil.Process] = []
    try:
        line = parent.stdout.readline()  # after the server started and a flow ran on it
        assert line, parent.stderr.read() if parent.poll() is not None else "no output"
        url, client_url, runs, prefect_servers = line.split()
        assert client_url.rstrip("/") == url and int(runs) >= 1
        assert prefect_servers == "0"  # Prefect did not start a temporary server of its own
        port = int(url.split(":")[2].split("/")[0])
        servers = psutil.Process(parent.pid).children()
        assert len(servers) == 1 and "uvicorn" in servers[0].cmdline() and _listening(port)

        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while not _gone(servers[0].pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(servers[0].pid), "the API server outlived its killed parent"
        assert not _listening(port)
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.communicate(timeout=10)
        for server in servers:  # a server that outlived the test's parent must not outlive the test
            if not _gone(server.pid):
                server.kill()


def test_ensure_api_with_a_server_configured_returns_it_and_starts_nothing(monkeypatch):
    from flows.prefect_api import ensure_api

    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")
    before = {child.pid for child in psutil.Process().children()}
    assert ensure_api() == "http://prefect.example:4200/api"
    assert {child.pid for child in psutil.Process().children()} <= before


# --- the local Dask cluster's shutdown -----------------------------------------------------------------

CLUSTER_CYCLES = '''
import logging, sys, time

from distributed import Client

from flows.dask_cluster import dask_cluster, dask_mapper


def square(x):
    return x * x


def complain(x):
    logging.getLogger("distributed.worker").error("visible: an error while work runs")
    return x


def slow_heartbeats(dask_scheduler, seconds):
    """The scheduler answers worker heartbeats late, as a loaded machine does: a heartbeat is in
    flight when the workers close, the race that printed CommClosedError tracebacks."""
    import asyncio

    answer = dask_scheduler.handlers["heartbeat_worker"]

    async def slow_heartbeat_worker(**message):
        await asyncio.sleep(seconds)
        return answer(**message)

    dask_scheduler.handlers["heartbeat_worker"] = slow_heartbeat_worker


if __name__ == "__main__":
    levels = {name: logging.getLogger(name).level for name in ("distributed", "distributed.client", "asyncio")}
    for cycle in range(3):
        with dask_cluster(workers=2) as address:
            assert dask_mapper(address)(square, [(i,) for i in range(4)]) == [0, 1, 4, 9]
            if cycle == 0:
                dask_mapper(address)(complain, [(0,)])
            with Client(address, set_as_default=False) as client:
                client.run_on_scheduler(slow_heartbeats, seconds=5.0)
            time.sleep(1.0)  # the next heartbeat of each worker is on its way
    after = {name: logging.getLogger(name).level for name in levels}
    assert after == levels, (levels, after)
    print("3 cycles", flush=True)
'''


def test_a_local_cluster_shuts_down_without_tracebacks(tmp_path, prefect_home):
    script = tmp_path / "cluster_cycles.py"
    script.write_text(CLUSTER_CYCLES)
    done = _run(script, env=_environment(prefect_home, tmp_path))
    assert done.returncode == 0 and "3 cycles" in done.stdout, done.stderr
    assert "Traceback" not in done.stderr
    assert "CommClosedError" not in done.stderr
    assert "visible: an error while work runs" in done.stderr  # errors during the work still show

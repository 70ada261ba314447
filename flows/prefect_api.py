"""The Prefect API a ``zorgpad`` process reports its flow runs to.

With ``PREFECT_API_URL`` set (a real Prefect server), that one. Without it, Prefect itself would
start a temporary API server (``prefect.server.api.server.SubprocessASGIServer``): a child process
(``python -m uvicorn ... prefect.server.api.server:create_app``) that it stops only at interpreter
exit, so a killed ``zorgpad`` left it running, holding its port and its database. :func:`ensure_api`
starts that server itself, the same way Prefect does (same command, same environment, its database
in the ``PREFECT_HOME`` in effect), as a child that dies with this process, also when this process
is killed with SIGKILL (Linux: the kernel sends the child SIGTERM when its parent goes), and points
this process's Prefect settings at it.
"""

from __future__ import annotations

import atexit
import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from transforms.errors import UserFacingError

#: ``prctl`` option: the signal the kernel sends this process when its parent thread exits.
PR_SET_PDEATHSIG = 1

#: uvicorn's exit status when it cannot start, e.g. because the port was taken meanwhile.
_UVICORN_STARTUP_FAILURE = 3


class PrefectAPIError(UserFacingError):
    """The temporary Prefect API server could not be started."""


class _Server:
    """The temporary API server: its process, the last lines it printed and how to stop it."""

    def __init__(self, process: subprocess.Popen, port: int) -> None:
        self.process = process
        self.port = port
        self.owner = os.getpid()
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self.forward = False  # print its output on our stderr (after start-up, until it is stopped)
        self._reader = threading.Thread(target=self._read_output, name="prefect-api-output", daemon=True)
        self._reader.start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _read_output(self) -> None:
        stream = self.process.stdout
        if stream is None:
            return
        for line in iter(stream.readline, b""):
            text = line.decode(errors="replace")
            self.tail.append(text.rstrip("\n"))
            if self.forward:
                try:
                    sys.stderr.write(text)
                    sys.stderr.flush()
                except (OSError, ValueError):  # our stderr is gone (interpreter exit)
                    pass
        stream.close()

    def output(self) -> str:
        self._reader.join(timeout=2)
        return "\n".join(self.tail)

    def stop(self) -> None:
        """Terminate the server (it shuts down within a second or two), kill it after 5 s."""
        if os.getpid() != self.owner:  # a forked child of ours must not stop its parent's server
            return
        self.forward = False  # uvicorn's shutdown chatter is not the user's business
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_LOCK = threading.Lock()
_SERVER: _Server | None = None


def ensure_api() -> str:
    """The URL of the Prefect API this process's flows report to (``.../api``).

    ``PREFECT_API_URL`` set, in the environment or in the active Prefect profile: that URL, and
    nothing is started. Otherwise a private temporary API server is started, once per process
    (again only if it died): a child process that is stopped when this process exits and, on
    Linux, dies with this process even when it is killed. Its database is the one in the
    ``PREFECT_HOME`` in effect; its start-up (the first one runs the database migrations) may take
    ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (``zorgpad`` allows 180 s). Then this
    process's Prefect settings point at it: ``PREFECT_API_URL`` in the environment (inherited by
    child processes) and in Prefect's settings context, which Prefect reads its environment into
    at import.

    Call it from the thread that lives as long as the process (the CLI's main thread), before the
    first flow runs: Linux ties the child's life to the thread that started it.

    Raises :class:`PrefectAPIError` (a ``UserFacingError``) when the server does not start."""
    global _SERVER

    with _LOCK:
        configured = os.environ.get("PREFECT_API_URL")
        ours = _SERVER is not None and configured == _SERVER.api_url
        if ours and _SERVER.process.poll() is None:
            return configured
        if configured and not ours:
            return configured
        from prefect.settings import get_current_settings

        settings = get_current_settings()
        if settings.api.url and not ours:  # from the active profile
            return str(settings.api.url)
        server = _start(settings)  # the first one, or one to replace ours that died
        _SERVER = server
        _point_prefect_at(server.api_url)
        atexit.register(server.stop)
        return server.api_url


def _start(settings) -> _Server:
    """Start the server and wait until it answers ``/health``."""
    timeout = float(settings.server.ephemeral.startup_timeout_seconds)
    deadline = time.monotonic() + timeout
    server = _launch(_free_port(), settings)
    attempts = 1
    while True:
        code = server.process.poll()
        if code is not None:
            if (
                code == _UVICORN_STARTUP_FAILURE
                and attempts < 5
                and "address already in use" in server.output().lower()
            ):  # taken since we chose it
                server = _launch(_free_port(), settings)
                attempts += 1
                continue
            raise PrefectAPIError(_failure(f"exited with status {code} while starting", server, settings))
        if _healthy(server.api_url):
            server.forward = True
            return server
        if time.monotonic() > deadline:
            server.stop()
            raise PrefectAPIError(
                _failure(
                    f"did not answer within {timeout:g} s (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)",
                    server,
                    settings,
                )
            )
        time.sleep(0.1)


def _failure(what: str, server: _Server, settings) -> str:
    """One message: what went wrong, in which PREFECT_HOME, the gist of what it printed (the lines
    of its last exception and log records, not the traceback frames) and what to do instead."""
    noise = ("Traceback (most recent call last)", "The above exception", "During handling of the above")
    gist = [
        line
        for line in server.output().splitlines()
        if line.strip() and not line[0].isspace() and not line.startswith(noise)
    ][-4:]
    said = ("; it printed:\n  " + "\n  ".join(gist)) if gist else ""
    return (
        f"the temporary Prefect API server (PREFECT_HOME={settings.home}) {what}{said}\n"
        "Set PREFECT_API_URL to use a running Prefect server instead."
    )


def _launch(port: int, settings) -> _Server:
    """``python -m uvicorn`` as Prefect's ``SubprocessASGIServer._run_uvicorn_command`` runs it."""
    import prefect

    server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    env = {**os.environ, **server_env, **settings.to_environment_variables(exclude_unset=True)}
    env.pop("PREFECT_API_URL", None)  # the server is the API; it needs no client setting
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(prefect.__module_path__.parent),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]
    preexec = _die_with_parent()
    try:
        process = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,
            # its own session where it dies with us: a Ctrl-C in the terminal reaches this process
            # only, which still reports the interruption to the server before stopping it
            start_new_session=preexec is not None,
        )
    except OSError as exc:
        raise PrefectAPIError(f"the temporary Prefect API server could not be started: {exc}") from None
    return _Server(process, port)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send the child SIGTERM when this thread ends (this process
    exits or is killed); None where ``prctl`` is not available (not Linux: stopped at exit only)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: async-signal-safe calls only
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(api_url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(f"{api_url}/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _point_prefect_at(api_url: str) -> None:
    """Make ``api_url`` this process's Prefect API.

    Prefect reads its settings from the environment once, at import, into a process-global
    settings context (``prefect.context.GLOBAL_SETTINGS_CONTEXT``); ``get_current_settings()``
    returns the settings context of the current ``contextvars`` context if one was entered
    (``temporary_settings``), else that global one. Setting ``os.environ["PREFECT_API_URL"]`` alone
    therefore changes nothing in a process that imported Prefect: the global context is rebuilt
    from the environment (``refresh_global_settings_context``), which every thread without a
    context of its own sees, and a context entered in the calling thread gets the URL as well.

    The server serves no UI (as Prefect's own temporary server): an empty ``PREFECT_UI_URL`` keeps
    Prefect from logging a "View at http://127.0.0.1:.../runs/..." link for every flow run, which
    it derives from the API URL otherwise."""
    os.environ["PREFECT_API_URL"] = api_url
    updates = {"PREFECT_API_URL": api_url}
    if "PREFECT_UI_URL" not in os.environ:
        os.environ["PREFECT_UI_URL"] = ""
        updates["PREFECT_UI_URL"] = ""
    import prefect.context
    import prefect.settings
    from prefect.settings import get_current_settings, temporary_settings

    prefect.context.refresh_global_settings_context()
    if get_current_settings().api.url != api_url:  # a settings context entered in this thread
        settings = {getattr(prefect.settings, name): value for name, value in updates.items()}
        temporary_settings(updates=settings).__enter__()  # for the rest of the process

"""End-to-end fixtures: a real local Prefect server and the simulator in a subprocess.

``prefect_server`` starts ``prefect server start`` on a free port with its own
PREFECT_HOME and SQLite database, and points PREFECT_API_URL at it for the tests and
every subprocess they start. ``simulator_process`` runs ``python -m fleetwave.sim`` in a
subprocess (contract 1), so tests can kill processes without killing the simulator; the
launcher is :func:`fleetwave.sim.testing.start_simulator_process` (re-exported here with
:class:`~fleetwave.sim.testing.SimProcess` for the tests that import them from here).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fleetwave.serving import stop_process_group
from fleetwave.sim.testing import SimProcess, start_simulator_process

PREFECT_QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_TELEMETRY_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_CLI_PROMPT": "false",
}

SERVER_START_TIMEOUT = 90.0


def free_port() -> int:
    """A port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class PrefectServer:
    """A running local Prefect server."""

    api_url: str
    home: Path
    log: Path
    startup_seconds: float
    process: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """Environment for subprocesses (prefect CLI, workers) that talk to this server."""
        env = dict(os.environ)
        env.update(PREFECT_QUIET_ENV)
        env["PREFECT_HOME"] = str(self.home)
        env["PREFECT_API_URL"] = self.api_url
        return env


def start_prefect_server(home: Path, database_url: str | None = None) -> PrefectServer:
    """Start ``prefect server start`` with its own home and database (SQLite in ``home``
    unless ``database_url``, e.g. ``postgresql+asyncpg://...``); wait for health."""
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    env = dict(os.environ)
    env.update(PREFECT_QUIET_ENV)
    env["PREFECT_HOME"] = str(home)
    env.pop("PREFECT_SERVER_DATABASE_CONNECTION_URL", None)  # it wins over the API alias
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url or (
        f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    )
    env.pop("PREFECT_API_URL", None)
    last_error = ""
    for _attempt in range(3):  # a port taken between free_port() and bind: try another
        port = free_port()
        url = f"http://127.0.0.1:{port}/api"
        t0 = time.monotonic()
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-ui",
                    "--analytics-off",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = t0 + SERVER_START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    return PrefectServer(url, home, log, time.monotonic() - t0, proc)
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        last_error = f"exit code {proc.poll()}"
        stop_process_group(proc)
    raise RuntimeError(
        f"the Prefect server did not become healthy ({last_error}); log {log}:\n{_tail(log)}"
    )


def drain_prefect_workers() -> None:
    """Send Prefect's queued logs and events now, while the server still listens.

    Otherwise they go at interpreter exit, after the server stopped, and Prefect prints
    "Error logging to API" to stderr.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        # Best effort: the server is going away anyway.
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=10)


@pytest.fixture(scope="session")
def prefect_server_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A real local Prefect server for this test session (details: log, startup time).

    PREFECT_API_URL and PREFECT_HOME are set in os.environ for the session so in-process
    clients and subprocesses use it; restored and the server stopped afterwards.
    """
    # Prefect reads its settings when first imported; the in-process client needs them
    # overridden explicitly, subprocesses get them from the environment.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = start_prefect_server(tmp_path_factory.mktemp("prefect-home"))
    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
    os.environ["PREFECT_API_URL"] = server.api_url
    os.environ["PREFECT_HOME"] = str(server.home)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server
    finally:
        drain_prefect_workers()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_process_group(server.process)


@pytest.fixture(scope="session")
def prefect_server(prefect_server_handle: PrefectServer) -> str:
    """The API URL of the session's local Prefect server (PREFECT_API_URL is set to it)."""
    return prefect_server_handle.api_url


# Options of the session simulator: a small fleet, a manual clock, no rate limit.
SESSION_SIM_OPTIONS: dict[str, object] = {
    "devices": 600,
    "groups": 6,
    "seed": 1,
    "clock": "manual",
    "rate_limit": 0,
}


@pytest.fixture(scope="session")
def simulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    """The simulator in a subprocess for the session (SESSION_SIM_OPTIONS)."""
    sim = start_simulator_process(tmp_path_factory.mktemp("sim"), **SESSION_SIM_OPTIONS)
    try:
        yield sim
    finally:
        sim.stop()

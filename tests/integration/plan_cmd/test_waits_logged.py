"""What the CLI says on stderr while it waits: retries and timeouts at the default level,
more with ``-v``/``-vv``; never a traceback, never the secret (``fleetwave plan`` as a
subprocess against a real simulator, or a server that never answers)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwave.sim.testing import SimHandle, run_simulator

ROOT = Path(__file__).resolve().parents[3]
CAMPAIGN = ROOT / "campaigns" / "nightly-meters-firmware.yaml"
SECRET = "plan-logging-Secret-0042"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_simulator(rate_limit=0, secret=SECRET) as handle:
        yield handle


def _env(base_url: str, app_id: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IODM_")}
    env.update(
        IODM_BASE_URL=base_url,
        IODM_APP_ID=app_id,
        IODM_SECRET=SECRET,
        IODM_RATE_LIMIT="0",
        IODM_MAX_RETRY_SECONDS="60",
        **extra,
    )
    return env


def _plan(env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetwave", *flags, "plan", str(CAMPAIGN)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_retries_are_said_at_the_default_level(sim: SimHandle) -> None:
    sim.set_faults(methods=["GET"], error_rate=1.0, count=3)
    try:
        done = _plan(_env(sim.base_url, sim.app_id))
    finally:
        sim.clear_faults()
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 3, done.stderr
    for n, line in enumerate(lines, start=1):
        assert line.startswith("WARNING fleetwave.platforms.iodm.client: GET /iodm/")
        assert f"HTTP 500 (attempt {n}); waiting" in line
        assert "for the platform to recover" in line and "retry budget left" in line
    assert "Traceback" not in done.stderr and "INFO" not in done.stderr
    assert SECRET not in done.stderr + done.stdout


def test_verbose_adds_info_and_debug_lines_without_secrets(sim: SimHandle) -> None:
    env = _env(sim.base_url, sim.app_id)
    info = _plan(env, "-v")
    assert info.returncode == 0, info.stderr
    assert f"INFO fleetwave.platforms.iodm.auth: logging in to IoDM at {sim.base_url}" in (
        info.stderr
    )
    assert "DEBUG" not in info.stderr and "HTTP Request" not in info.stderr
    debug = _plan(env, "-vv")
    assert debug.returncode == 0, debug.stderr
    assert "DEBUG httpcore" in debug.stderr and "HTTP Request: GET" in debug.stderr
    assert SECRET not in info.stderr + debug.stderr
    assert "--verbose" in _help().stdout


def _help() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetwave", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_a_platform_that_never_answers_is_one_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)  # the kernel accepts; nobody ever answers
        port = server.getsockname()[1]
        env = _env(
            f"http://127.0.0.1:{port}",
            "some-app",
            IODM_TIMEOUT="0.2",
            IODM_MAX_ATTEMPTS="2",
        )
        done = _plan(env)
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith("WARNING ") and "(attempt 1); waiting" in lines[0]
    assert lines[-1].startswith(
        f"platform error: no answer from 127.0.0.1:{port} within 0.2 s for POST "
        "/iocm/app/sec/v1.1.0/login; gave up after 2 attempts"
    )
    assert "IODM_TIMEOUT" in lines[-1]
    assert "Traceback" not in done.stderr and SECRET not in done.stderr

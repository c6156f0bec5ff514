"""Credentials never travel where they should not: no fallback to the simulator's address
with real credentials (issue 10, case 8), no credentials in the base URL (case 9).

Driven through the CLI (``fleetwave plan``) in-process; a listening socket that records
every connection stands in for "whatever listens on 127.0.0.1:8743".
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwave.cli import main
from fleetwave.platforms.iodm import settings as iodm_settings
from fleetwave.sim.config import DEMO_APP_ID, DEMO_SECRET
from fleetwave.sim.testing import run_simulator

from .conftest import Listener

ROOT = Path(__file__).resolve().parents[3]
CAMPAIGN = ROOT / "campaigns" / "nightly-meters-firmware.yaml"  # platform: default
REAL_SECRET = "prod-Secret-4f9a-must-never-travel"
URL_PASSWORD = "Pa55-in-the-url"


class Recorder(Listener):
    """A listener that accepts and counts connections (and the bytes they send)."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = b""
        super().__init__()

    def on_connection(self, conn: socket.socket) -> None:
        self.connections += 1
        conn.settimeout(0.5)
        with contextlib.suppress(OSError):
            self.received += conn.recv(65536)
        conn.close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    try:
        yield rec
    finally:
        rec.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("IODM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IODM_RATE_LIMIT", "0")


def _plan(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["plan", str(CAMPAIGN), "--json", "--at", "2026-03-27T12:00:00Z"])
    out, err = capsys.readouterr()
    code = info.value.code if isinstance(info.value.code, int) else 1
    return code, out, err


@pytest.mark.parametrize(
    "env",
    [
        {"IODM_APP_ID": "prod-app", "IODM_SECRET": REAL_SECRET},
        {"IODM_APP_ID": DEMO_APP_ID, "IODM_SECRET": REAL_SECRET},
        {"IODM_SECRET": REAL_SECRET},
    ],
    ids=["real-app-and-secret", "demo-app-real-secret", "real-secret-only"],
)
def test_real_credentials_never_fall_back_to_the_simulator_address(
    env: dict[str, str],
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(iodm_settings, "SIM_DEFAULT_BASE_URL", recorder.url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = _plan(capsys)
    assert code == 2, err
    assert out == ""
    line = err.strip()
    assert line.count("\n") == 0 and "Traceback" not in line  # one clear line
    assert "IODM_BASE_URL is unset" in line and "IODM_SECRET" in line
    assert REAL_SECRET not in line
    assert recorder.connections == 0  # nothing was sent anywhere
    assert REAL_SECRET.encode() not in recorder.received


def test_demo_credentials_or_none_still_fall_back_to_the_simulator(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_simulator(rate_limit=0) as sim:
        monkeypatch.setattr(iodm_settings, "SIM_DEFAULT_BASE_URL", sim.base_url)
        code, out, err = _plan(capsys)  # no IODM_APP_ID / IODM_SECRET at all
        assert code == 0, err
        assert '"eligible"' in out
        monkeypatch.setenv("IODM_APP_ID", DEMO_APP_ID)
        monkeypatch.setenv("IODM_SECRET", DEMO_SECRET)
        code, out, err = _plan(capsys)
        assert code == 0, err
        assert sim.stats(tasks=False)["logins"] >= 2


@pytest.mark.parametrize(
    "url",
    [
        "http://admin:{pw}@127.0.0.1:{port}",
        "https://admin:{pw}@127.0.0.1:{port}/",
        "http://{pw}@127.0.0.1:{port}",
        "http://admin:{pw}/x@127.0.0.1:{port}/iocm",  # a '/' in the password
    ],
    ids=["user-password", "https-trailing-slash", "password-only", "slash-in-password"],
)
def test_credentials_in_the_base_url_are_refused_without_showing_them(
    url: str,
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("IODM_BASE_URL", url.format(pw=URL_PASSWORD, port=recorder.port))
    monkeypatch.setenv("IODM_APP_ID", "prod-app")
    monkeypatch.setenv("IODM_SECRET", REAL_SECRET)
    code, out, err = _plan(capsys)
    assert code == 2, err
    assert out == ""
    line = err.strip()
    assert line.count("\n") == 0 and "Traceback" not in line
    assert "IODM_BASE_URL carries a user name or password" in line
    assert f"***@127.0.0.1:{recorder.port}" in line  # the URL, without its userinfo
    assert URL_PASSWORD not in line and "admin" not in line and REAL_SECRET not in line
    assert recorder.connections == 0

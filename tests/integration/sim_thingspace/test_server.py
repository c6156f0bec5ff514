"""Starting the ThingSpace simulator (CLI, ``python -m``); faults in its own words."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from fleetwave.sim.testing import TSHandle, run_simulator_process
from tests.integration.sim_thingspace.conftest import V1, Client

pytestmark = pytest.mark.timeout(120)


def test_python_m_serves_thingspace_and_prints_the_demo_credentials() -> None:
    with run_simulator_process(platform="thingspace", devices=60, clock="manual") as sim:
        info = httpx.get(f"{sim.base_url}/sim/info").json()
        assert info["platform"] == "thingspace" and info["devices"] == 60
        assert info["rate_limit"] == 100
        log = sim.log.read_text()
        assert "client key:    fleetwave-ts-key" in log and "password:      " in log


def test_cli_refuses_an_unknown_platform() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fleetwave", "sim", "serve", "--platform", "nope", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "not a simulated platform" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_cli_refuses_thingspace_options_on_iodm() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fleetwave", "sim", "serve", "--account", "1-1", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    out = proc.stderr + proc.stdout
    assert "--account applies only to the ThingSpace simulator" in out and "Traceback" not in out


def test_injected_server_errors_use_thingspace_words(ts: TSHandle, client: Client) -> None:
    ts.set_faults(error_rate=1.0, count=1)
    resp = client.call("GET", f"{V1}/firmware/{ts.account}")
    assert resp.status_code == 500
    assert resp.json()["errorCode"] == "SoftwareManagementService.INTERNAL_ERROR.Unexpected"
    assert client.call("GET", f"{V1}/firmware/{ts.account}").status_code == 200
    calls = ts.stats(requests=False)["calls"][f"GET {V1}/firmware/{{account}}"]
    assert calls == {"500": 1, "200": 1}


def test_unknown_paths_are_gateway_faults(ts: TSHandle) -> None:
    resp = httpx.get(f"{ts.base_url}/api/fota/v9/nothing")
    assert resp.status_code == 404 and resp.json()["fault"]["code"] == "900906"

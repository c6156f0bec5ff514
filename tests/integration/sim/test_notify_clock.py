"""Push notifications to a local receiver, the clock modes, and the subprocess entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pendulum

from fleetwave.sim.testing import SimHandle, run_simulator
from tests.integration.sim.conftest import (
    FW_UPGRADE,
    GROUPS,
    SUBSCRIBE,
    SW_UPGRADE,
    Api,
    Receiver,
    error_of,
)


def test_subscribe_validation(mapi: Api) -> None:
    assert (
        mapi.post(
            SUBSCRIBE,
            json={"notifyType": "fwUpgradeResultNotify", "callbackUrl": "http://127.0.0.1:1/x"},
        ).status_code
        == 200
    )
    assert error_of(
        mapi.post(SUBSCRIBE, json={"notifyType": "reboot", "callbackUrl": "http://x"})
    ) == (400, "100228")
    assert error_of(
        mapi.post(SUBSCRIBE, json={"notifyType": "fwUpgradeResultNotify", "callbackUrl": "ftp://x"})
    ) == (400, "100222")


def test_firmware_notifications_follow_the_manual_clock(
    mapi: Api, manual_sim: SimHandle, receiver: Receiver
) -> None:
    for t in ("fwUpgradeStateChangeNotify", "fwUpgradeResultNotify"):
        r = mapi.post(SUBSCRIBE, json={"notifyType": t, "callbackUrl": receiver.url, "x": 1})
        assert r.status_code == 200
    fid = mapi.package("WM-200", "firmware", "1.5.0")
    devs = mapi.members("meters-berlin", 3)
    manual_sim.set_devices(device_ids=devs, connectivity="online", failure_rate=0.0)
    op = mapi.post(FW_UPGRADE, json={"fileId": fid, "targets": {"devices": devs}}).json()[
        "operationId"
    ]
    # at creation only the "downloading" steps are due
    receiver.wait_for(lambda got: len(got) >= 3)
    time.sleep(0.2)
    assert {(n["notifyType"], n["step"], n["stepDesc"]) for n in receiver.received} == {
        ("fwUpgradeStateChangeNotify", "1", "downloading")
    }
    manual_sim.advance(3600)
    # per device: downloading, downloaded, updating, idle + one result
    receiver.wait_for(lambda got: len(got) >= 15)
    results = [n for n in receiver.received if n["notifyType"] == "fwUpgradeResultNotify"]
    assert len(results) == 3
    for n in results:
        assert n["operationId"] == op and n["appId"] == manual_sim.app_id
        assert n["status"] == "SUCCESS" and n["curVersion"] == n["targetVersion"] == "1.5.0"
        assert n["sourceVersion"] and n["subOperationId"] and n["upgradeTime"]
    for dev in devs:  # per device, events arrive in time order
        steps = [n.get("stepDesc", "result") for n in receiver.received if n["deviceId"] == dev]
        assert steps == ["downloading", "downloaded", "updating", "idle", "result"]
    deadline = time.monotonic() + 10  # the sender counts after the receiver has answered
    while manual_sim.stats(tasks=False)["notifications"]["pushed"] < 15:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert manual_sim.stats(tasks=False)["notifications"] == {
        "pushed": 15,
        "failed": 0,
        "pending": 0,
    }


def test_software_result_notification_body(
    mapi: Api, manual_sim: SimHandle, receiver: Receiver
) -> None:
    mapi.post(SUBSCRIBE, json={"notifyType": "swUpgradeResultNotify", "callbackUrl": receiver.url})
    mapi.post(
        SUBSCRIBE, json={"notifyType": "swUpgradeStateChangeNotify", "callbackUrl": receiver.url}
    )
    fid = mapi.package("WM-200", "software", "2.1.0")
    devs = mapi.members("meters-berlin", 2)
    manual_sim.set_devices(device_ids=devs, connectivity="online", failure_rate=1.0)
    mapi.post(SW_UPGRADE, json={"fileId": fid, "targets": {"devices": devs}})
    manual_sim.advance(3600)
    receiver.wait_for(lambda got: sum(n["notifyType"] == "swUpgradeResultNotify" for n in got) == 2)
    result = next(n for n in receiver.received if n["notifyType"] == "swUpgradeResultNotify")
    assert result["swUpgradeResult"] == "FAIL"
    assert set(result) >= {
        "deviceId",
        "appId",
        "operationId",
        "subOperationId",
        "curVersion",
        "targetVersion",
        "sourceVersion",
        "upgradeTime",
        "resultDesc",
        "errorCode",
        "description",
    }
    assert result["curVersion"] == result["sourceVersion"] != result["targetVersion"]
    states = {n["swUpgradeState"] for n in receiver.received if "swUpgradeState" in n}
    assert states == {"downloading", "downloaded", "updating", "idle"}


def test_clock_modes() -> None:
    with run_simulator(devices=20, groups=1, clock="manual") as sim:
        start = sim.clock()
        assert start == pendulum.datetime(2026, 1, 5, tz="UTC")
        assert sim.advance(90) == start.add(seconds=90)
        r = httpx.post(f"{sim.base_url}/sim/clock/advance", json={"seconds": -1})
        assert r.status_code == 400
        assert httpx.get(f"{sim.base_url}/sim/clock").json()["mode"] == "manual"
    with run_simulator(devices=20, groups=1, clock="scaled:3600") as sim:
        a = sim.clock()
        time.sleep(0.05)
        assert (sim.clock() - a).total_seconds() >= 60  # an hour per real second
        assert httpx.get(f"{sim.base_url}/sim/clock").json()["mode"] == "scaled:3600"
    with run_simulator(devices=20, groups=1, clock="real") as sim:
        assert abs((sim.clock() - pendulum.now("UTC")).total_seconds()) < 60
        r = httpx.post(f"{sim.base_url}/sim/clock/advance", json={"seconds": 1})
        assert r.status_code == 409


def test_subprocess_entry_point_writes_port_file(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetwave.sim",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--devices",
            "100",
            "--groups",
            "2",
            "--clock",
            "manual",
        ],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        port = int(port_file.read_text())
        base = f"http://127.0.0.1:{port}"
        r = httpx.post(
            f"{base}/iocm/app/sec/v1.1.0/login",
            data={"appId": "fleetwave-demo", "secret": "fleetwave-demo-secret"},
        )
        assert r.status_code == 200
        h = {"app_key": "fleetwave-demo", "Authorization": f"Bearer {r.json()['accessToken']}"}
        assert httpx.get(f"{base}{GROUPS}", headers=h).json()["totalCount"] == 2
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def test_bad_options_are_one_line_errors() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "fleetwave", "sim", "serve", "--clock", "sideways", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "unknown clock" in r.stderr and "Traceback" not in r.stderr


def _outcomes(seed: int) -> list[tuple[str, str]]:
    with run_simulator(devices=400, groups=5, seed=seed, rate_limit=0, clock="manual") as sim:
        api = Api(sim)
        fid = api.package("FLAKY-1", "firmware", "0.2.0")
        flaky = next(
            g["name"] for g in api.ok("get", GROUPS)["list"] if g["name"].startswith("flaky-")
        )
        devs = api.members(flaky, 50)
        op = api.ok("post", FW_UPGRADE, json={"fileId": fid, "targets": {"devices": devs}})
        sim.advance(3000)
        api.login()
        subs = api.ok(
            "get",
            f"/iodm/northbound/v1.5.0/operations/{op['operationId']}/subOperations",
            params={"pageSize": 100},
        )["data"]
        api.close()
        return [(s["deviceId"], f"{s['status']}@{s['stopTime']}") for s in subs]


def test_same_seed_same_outcome_over_http() -> None:
    a, b, c = _outcomes(11), _outcomes(11), _outcomes(12)
    assert a == b
    assert a != c
    assert {s.split("@")[0] for _, s in a} >= {"success", "fail"}  # FLAKY-1 really flakes


def test_cli_prints_url_and_credentials(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetwave",
            "sim",
            "serve",
            "--port",
            "0",
            "--devices",
            "10000",
            "--seed",
            "1",
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        port = int(port_file.read_text())
        assert lines[0].strip().endswith(f"http://127.0.0.1:{port}")
        assert "fleetwave-demo" in lines[1] and "fleetwave-demo-secret" in lines[2]
        r = httpx.post(
            f"http://127.0.0.1:{port}/iocm/app/sec/v1.1.0/login",
            data={"appId": "fleetwave-demo", "secret": "fleetwave-demo-secret"},
        )
        assert r.status_code == 200
    finally:
        proc.kill()
        proc.wait(10)
        for f in (proc.stdout, proc.stderr):
            if f:
                f.close()

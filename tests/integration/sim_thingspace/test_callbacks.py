"""Callbacks pushed to the registered URL on every status change, with the documented bodies."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fleetwave.sim.testing import TSHandle, run_thingspace_simulator
from tests.certs import self_signed
from tests.integration.sim_thingspace.conftest import (
    FW_SENSORS,
    V1,
    V2,
    Client,
    Receiver,
    campaign_body,
    day,
    free_devices,
)

pytestmark = pytest.mark.timeout(120)


def final_statuses(bodies: list[dict[str, object]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for body in bodies:
        for d in body["deviceList"]:  # type: ignore[attr-defined]
            out[d["deviceId"]] = d["status"]
    return out


def test_v2_campaign_changes_are_pushed(ts: TSHandle, client: Client, receiver: Receiver) -> None:
    ts.set_failure_rate(0.0)
    client.ok("POST", f"{V2}/callbacks/{ts.account}", json={"url": receiver.url})
    devices = free_devices(ts, "WM-200", "software", "2.0.1", 3)
    cid = client.ok("POST", f"{V2}/campaigns/{ts.account}", json=campaign_body(ts, devices))["id"]
    ts.advance(120)
    bodies = receiver.wait_for(lambda b: any(x["status"] == "CampaignScheduled" for x in b))
    assert bodies[0] == {
        "accountName": ts.account,
        "campaignId": cid,
        "campaignName": "it",
        "status": "CampaignScheduled",
        "deviceList": [],
    }
    ts.advance(3 * 3600)
    bodies = receiver.wait_for(lambda b: any(x["status"] == "CampaignEnded" for x in b))
    assert final_statuses(bodies) == dict.fromkeys(devices, "UpgradeSuccess")
    assert all(b["campaignId"] == cid for b in bodies)
    deadline = time.monotonic() + 10  # the count follows the receiver's answer
    while ts.stats(requests=False)["callbacks"].get("delivered") != len(bodies):
        assert time.monotonic() < deadline, ts.stats(requests=False)["callbacks"]
        time.sleep(0.05)


def test_v1_callbacks_carry_the_registered_credentials(
    ts: TSHandle, client: Client, receiver: Receiver
) -> None:
    ts.set_failure_rate(0.0)
    client.ok(
        "POST",
        f"{V1}/callbacks/{ts.account}",
        json={"name": "Fota", "url": receiver.url, "username": "cb-user", "password": "cb-pass"},
    )
    devices = free_devices(ts, "NBS-10", "firmware", "3.1.0", 2)
    body = {
        "accountName": ts.account,
        "firmwareName": FW_SENSORS,
        "firmwareTo": "3.2.0",
        "startDate": day(ts, 1),
        "endDate": day(ts, 2),
        "deviceList": devices,
    }
    uid = client.ok("POST", f"{V1}/upgrades", json=body)["id"]
    ts.advance(120)
    first = receiver.wait_for(lambda b: len(b) >= 1)[0]
    assert first["id"] == uid and first["eventType"] == "upgradeScheduled"
    assert first["status"] == "Queued"
    assert (first["username"], first["password"]) == ("cb-user", "cb-pass")
    ts.advance(36 * 3600)
    bodies = receiver.wait_for(lambda b: any(x["status"] == "Finished" for x in b))
    assert final_statuses(bodies) == dict.fromkeys(devices, "UpgradeSuccess")
    recent = ts.callbacks()["recent"]
    assert recent and all("password" not in r for r in recent)


def test_callbacks_are_pushed_over_https_to_a_trusted_receiver(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "receiver")
    receiver = Receiver(tls=(str(cert), str(key)))
    try:
        with run_thingspace_simulator(
            devices=200, groups=5, clock="manual", rate_limit=0, callback_ca=cert
        ) as ts:
            c = Client(ts)
            assert receiver.url.startswith("https://")
            c.ok("POST", f"{V2}/callbacks/{ts.account}", json={"url": receiver.url})
            devices = free_devices(ts, "WM-200", "software", "2.0.1", 2)
            c.ok("POST", f"{V2}/campaigns/{ts.account}", json=campaign_body(ts, devices))
            ts.advance(120)
            bodies = receiver.wait_for(lambda b: len(b) >= 1)
            assert bodies[0]["status"] == "CampaignScheduled"
            c.close()
    finally:
        receiver.close()


def test_callback_urls_must_be_https_unless_allowed() -> None:
    with run_thingspace_simulator(devices=50, clock="manual", rate_limit=0) as strict:
        c = Client(strict)
        resp = c.call("POST", f"{V2}/callbacks/{strict.account}", json={"url": "http://x/cb"})
        assert resp.status_code == 400
        assert resp.json()["errorCode"].endswith("INPUT_INVALID.CallbackUrl")
        c.ok("POST", f"{V2}/callbacks/{strict.account}", json={"url": "https://x/cb"})
        c.close()

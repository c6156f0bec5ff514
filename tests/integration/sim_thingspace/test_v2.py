"""FOTA v2 campaigns on the simulator clock: download and install windows, dates, per-device
outcomes and reasons, paging, cancellation."""

from __future__ import annotations

from typing import Any

import pytest

from fleetwave.sim.testing import TSHandle, run_thingspace_simulator
from fleetwave.sim.thingspace.timeline import FAIL_REASONS
from tests.integration.sim_thingspace.conftest import (
    V2,
    Client,
    campaign_body,
    day,
    free_devices,
)

pytestmark = pytest.mark.timeout(120)


def device_statuses(client: Client, ts: TSHandle, cid: str) -> dict[str, tuple[str, Any]]:
    page = client.ok("GET", f"{V2}/reports/{ts.account}/campaigns/{cid}/devices")
    return {d["deviceId"]: (d["status"], d.get("resultReason")) for d in page["deviceList"]}


def test_devices_install_only_inside_the_install_window(ts: TSHandle, client: Client) -> None:
    ts.set_failure_rate(0.0)
    devices = free_devices(ts, "WM-200", "software", "2.0.1", 6)
    body = campaign_body(
        ts,
        devices,
        downloadTimeWindowList=[{"startTime": 1, "endTime": 3}],
        installTimeWindowList=[{"startTime": 4, "endTime": 5}],
    )
    cid = client.ok("POST", f"{V2}/campaigns/{ts.account}", json=body)["id"]
    path = f"{V2}/campaigns/{ts.account}/{cid}"
    assert client.ok("GET", path)["status"] == "CampaignRequestPending"
    ts.advance(120)
    assert client.ok("GET", path)["status"] == "CampaignScheduled"  # startDate is today
    ts.advance(4 * 3600 - 120 - 1)  # 03:59:59: downloads done, no install window yet
    client.login()
    assert {s for s, _ in device_statuses(client, ts, cid).values()} == {"Accepted"}
    ts.advance(3601)  # 05:00:00: every install ran in 04:00-05:00 (meters take <= 10 min)
    client.login()
    assert {s for s, _ in device_statuses(client, ts, cid).values()} == {"UpgradeSuccess"}
    assert client.ok("GET", path)["status"] == "CampaignEnded"
    listing = client.ok("GET", f"{V2}/devices/{ts.account}")["deviceList"]
    software = {
        d["deviceId"]: next(
            s["version"] for s in d["softwareList"] if s["name"].endswith("software")
        )
        for d in listing
    }
    assert [software[d] for d in devices] == ["2.1.0"] * 6


def test_download_after_date_holds_every_device_back(ts: TSHandle, client: Client) -> None:
    ts.set_failure_rate(0.0)
    devices = free_devices(ts, "WM-200", "software", "2.0.1", 3)
    body = campaign_body(ts, devices, downloadAfterDate=day(ts, 1), endDate=day(ts, 2))
    cid = client.ok("POST", f"{V2}/campaigns/{ts.account}", json=body)["id"]
    ts.advance(24 * 3600 - 1)
    client.login()
    assert {s for s, _ in device_statuses(client, ts, cid).values()} == {"Accepted"}
    ts.advance(3600)
    client.login()
    assert {s for s, _ in device_statuses(client, ts, cid).values()} == {"UpgradeSuccess"}


def test_failures_carry_documented_reasons_and_are_seeded(ts: TSHandle, client: Client) -> None:
    ts.set_failure_rate(1.0)
    devices = free_devices(ts, "WM-200", "software", "2.0.1", 8)
    cid = client.ok("POST", f"{V2}/campaigns/{ts.account}", json=campaign_body(ts, devices))["id"]
    ts.advance(3 * 3600)
    client.login()
    result = device_statuses(client, ts, cid)
    assert {s for s, _ in result.values()} == {"UpgradeFailed"}
    assert {r for _, r in result.values()} <= {reason for _, reason in FAIL_REASONS}
    assert client.ok("GET", f"{V2}/campaigns/{ts.account}/{cid}")["status"] == "CampaignFailed"
    # the same seed and the same requests give the same outcomes
    with run_thingspace_simulator(
        devices=400, groups=5, clock="manual", rate_limit=0, failure_rate=1.0
    ) as twin:
        c2 = Client(twin)
        cid2 = c2.ok("POST", f"{V2}/campaigns/{twin.account}", json=campaign_body(twin, devices))[
            "id"
        ]
        twin.advance(3 * 3600)
        c2.login()
        assert cid2 == cid  # ids are seeded too
        assert device_statuses(c2, twin, cid2) == result
        c2.close()


def test_ineligible_devices_are_rejected_per_device(ts: TSHandle, client: Client) -> None:
    good = free_devices(ts, "WM-200", "software", "2.0.1", 1)
    already = free_devices(ts, "WM-200", "software", "2.1.0", 1)
    other_model = free_devices(ts, "TRK-9", "software", "5.2.0", 1)
    body = campaign_body(ts, good + already + other_model)
    cid = client.ok("POST", f"{V2}/campaigns/{ts.account}", json=body)["id"]
    result = device_statuses(client, ts, cid)
    assert result[good[0]] == ("Accepted", None)
    assert result[already[0]][0] == "DeviceRejected" and "from version" in result[already[0]][1]
    assert result[other_model[0]][0] == "DeviceRejected"
    assert "make/model" in result[other_model[0]][1]


def test_device_status_pages_by_last_seen_device_id() -> None:
    with run_thingspace_simulator(devices=3000, groups=5, clock="manual", rate_limit=0) as ts:
        c = Client(ts)
        listing = c.ok("GET", f"/api/fota/v1/devices/{ts.account}/index/0")["deviceList"]
        listing += c.ok("GET", f"/api/fota/v1/devices/{ts.account}/index/1000")["deviceList"]
        listing += c.ok("GET", f"/api/fota/v1/devices/{ts.account}/index/2000")["deviceList"]
        meters = [d["deviceId"] for d in listing if d["model"] == "WM-200" and d["fotaEligible"]]
        assert len(meters) > 1000
        body = campaign_body(ts, meters)
        cid = c.ok("POST", f"{V2}/campaigns/{ts.account}", json=body)["id"]
        path = f"{V2}/reports/{ts.account}/campaigns/{cid}/devices"
        first = c.ok("GET", path)
        assert first["hasMoreData"] is True and first["maxPageSize"] == 1000
        assert first["totalDevice"] == len(meters) and len(first["deviceList"]) == 1000
        assert first["lastSeenDeviceId"] == meters[999]
        second = c.ok("GET", path, params={"lastSeenDeviceId": first["lastSeenDeviceId"]})
        assert second["hasMoreData"] is False and "lastSeenDeviceId" not in second
        seen = [d["deviceId"] for d in first["deviceList"] + second["deviceList"]]
        assert seen == meters
        bad = c.call("GET", path, params={"lastSeenDeviceId": "351234569999990"})
        assert bad.json()["errorCode"].endswith("INPUT_INVALID.LastSeenDeviceId")
        c.close()


def test_cancel_after_the_start_aborts_and_rejects_devices_not_started(
    ts: TSHandle, client: Client
) -> None:
    ts.set_failure_rate(0.0)
    devices = free_devices(ts, "WM-200", "software", "2.0.1", 4)
    body = campaign_body(ts, devices, downloadTimeWindowList=[{"startTime": 6, "endTime": 7}])
    cid = client.ok("POST", f"{V2}/campaigns/{ts.account}", json=body)["id"]
    ts.advance(3600)
    client.login()
    client.ok("DELETE", f"{V2}/campaigns/{ts.account}/{cid}")
    got = client.ok("GET", f"{V2}/campaigns/{ts.account}/{cid}")
    assert got["status"] == "CampaignAborted"
    ts.advance(8 * 3600)
    client.login()
    result = device_statuses(client, ts, cid)
    assert {s for s, _ in result.values()} == {"DeviceRejected"}
    again = client.call("DELETE", f"{V2}/campaigns/{ts.account}/{cid}")
    assert again.json()["errorCode"].endswith("REQUEST_FAILED.RequestStarted")
    aborted = client.ok(
        "GET", f"{V2}/reports/{ts.account}/campaigns", params={"campaignStatus": "CampaignAborted"}
    )
    assert [c["id"] for c in aborted["campaignList"]] == [cid]


def test_dates_change_only_before_the_start_and_keep_windows(ts: TSHandle, client: Client) -> None:
    devices = free_devices(ts, "WM-200", "software", "2.0.1", 2)
    body = campaign_body(
        ts,
        devices,
        startDate=day(ts, 1),
        endDate=day(ts, 3),
        downloadTimeWindowList=[{"startTime": 1, "endTime": 3}],
    )
    cid = client.ok("POST", f"{V2}/campaigns/{ts.account}", json=body)["id"]
    dates = f"{V2}/campaigns/{ts.account}/{cid}/dates"
    lost = client.call(
        "PUT",
        dates,
        json={"startDate": day(ts, 1), "endDate": day(ts, 3), "downloadTimeWindowList": []},
    )
    assert lost.json()["errorCode"].endswith("INPUT_INVALID.TimeWindow")
    moved = client.ok(
        "PUT",
        dates,
        json={
            "startDate": day(ts, 2),
            "endDate": day(ts, 4),
            "downloadTimeWindowList": [
                {"startTime": 1, "endTime": 3},
                {"startTime": 20, "endTime": 24},
            ],
        },
    )
    assert moved["startDate"] == day(ts, 2) and len(moved["downloadTimeWindowList"]) == 2
    ts.advance(2 * 24 * 3600 + 60)
    client.login()
    late = client.call("PUT", dates, json={"startDate": day(ts), "endDate": day(ts, 3)})
    assert late.json()["errorCode"].endswith("REQUEST_FAILED.RequestStarted")
    cross = client.call(
        "POST",
        f"{V2}/campaigns/{ts.account}",
        json=campaign_body(ts, devices, installTimeWindowList=[{"startTime": 22, "endTime": 2}]),
    )
    assert "cannot cross midnight" in cross.json()["errorMessage"]


def test_append_and_remove_devices_before_scheduling(ts: TSHandle, client: Client) -> None:
    devices = free_devices(ts, "WM-200", "software", "2.0.1", 3)
    body = campaign_body(ts, devices[:2], startDate=day(ts, 1))
    cid = client.ok("POST", f"{V2}/campaigns/{ts.account}", json=body)["id"]
    path = f"{V2}/campaigns/{ts.account}/{cid}"
    added = client.ok("PUT", path, json={"Type": "append", "deviceList": devices[2:]})
    assert added["campaignId"] == cid and added["requestId"]
    client.ok("PUT", path, json={"Type": "remove", "deviceList": devices[:1]})
    assert list(device_statuses(client, ts, cid)) == devices[1:]
    everyone = client.call("PUT", path, json={"Type": "remove", "deviceList": devices[1:]})
    assert everyone.json()["errorCode"].endswith("INPUT_INVALID.DeviceList")


def test_file_campaign_upgrades_the_file_version(ts: TSHandle, client: Client) -> None:
    ts.set_failure_rate(0.0)
    devices = free_devices(ts, "TRK-9", "software", "5.2.0", 2)
    files = client.ok("GET", f"{V2}/files/{ts.account}")["AvailableFilesResponse"]
    assert {"fileName": "TRK-9-config", "fileVersion": "2.0"}.items() <= next(
        f for f in files if f["fileName"] == "TRK-9-config" and f["fileVersion"] == "2.0"
    ).items()
    body = {
        "campaignName": "cfg",
        "fileName": "TRK-9-config",
        "fileVersion": "2.0",
        "distributionType": "HTTP",
        "startDate": day(ts),
        "endDate": day(ts, 1),
        "deviceList": devices,
    }
    cid = client.ok("POST", f"{V2}/campaigns/files/{ts.account}", json=body)["id"]
    ts.advance(3 * 3600)
    client.login()
    assert {s for s, _ in device_statuses(client, ts, cid).values()} == {"UpgradeSuccess"}
    config = ts.device(devices[0])["softwareList"]
    assert next(s["version"] for s in config if s["name"] == "TRK-9-config") == "2.0"

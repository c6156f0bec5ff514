"""FOTA v1 upgrades on the simulator clock: states, validation, history, licenses."""

from __future__ import annotations

import pytest

from fleetwave.sim.testing import TSHandle, run_thingspace_simulator
from tests.integration.sim_thingspace.conftest import (
    FW_SENSORS,
    V1,
    Client,
    day,
    free_devices,
)

pytestmark = pytest.mark.timeout(120)


def upgrade_body(ts: TSHandle, devices: list[str], **over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "accountName": ts.account,
        "firmwareName": FW_SENSORS,
        "firmwareTo": "3.2.0",
        "startDate": day(ts),
        "endDate": day(ts, 1),
        "deviceList": devices,
    }
    body.update(over)
    return body


def statuses(up: dict[str, object]) -> set[str]:
    return {d["status"] for d in up["deviceList"]}  # type: ignore[attr-defined,index]


def test_upgrade_runs_through_its_states_and_changes_the_firmware(
    ts: TSHandle, client: Client
) -> None:
    ts.set_failure_rate(0.0)
    devices = free_devices(ts, "NBS-10", "firmware", "3.1.0", 3)
    up = client.ok("POST", f"{V1}/upgrades", json=upgrade_body(ts, devices))
    path = f"{V1}/upgrades/{ts.account}/upgrade/{up['id']}"
    assert up["status"] == "RequestPending" and statuses(up) == {"RequestPending"}
    ts.advance(119)
    assert client.ok("GET", path)["status"] == "RequestPending"
    ts.advance(1)  # accepted two minutes after the request
    got = client.ok("GET", path)
    assert got["status"] in ("Queued", "InProgress")
    seen = {got["status"]}
    for _ in range(12):  # NB-IoT sleepers wake every 30 minutes
        ts.advance(600)
        client.login()
        got = client.ok("GET", path)
        seen.add(got["status"])
    assert got["status"] == "Finished" and statuses(got) == {"UpgradeSuccess"}
    assert "InProgress" in seen
    history = client.ok("GET", f"{V1}/reports/{ts.account}/devices/{devices[0]}")
    assert [(h["id"], h["firmwareFrom"], h["firmwareTo"], h["status"]) for h in history] == [
        (up["id"], "3.1.0", "3.2.0", "UpgradeSuccess")
    ]
    assert history[0]["upgradeStartTime"].startswith(day(ts, 0)[:4])
    listing = client.ok("GET", f"{V1}/devices/{ts.account}/index/0")["deviceList"]
    firmware = {d["deviceId"]: d["firmware"] for d in listing}
    assert [firmware[d] for d in devices] == ["3.2.0"] * 3
    report = client.ok("GET", f"{V1}/reports/{ts.account}/status/Finished/index/0")
    assert [r["id"] for r in report["reportList"]] == [up["id"]]
    assert report["hasMoreFlag"] is False and report["lastSeenUpgradeId"] == 0


def test_all_devices_must_share_make_model_and_firmware(ts: TSHandle, client: Client) -> None:
    on_old = free_devices(ts, "NBS-10", "firmware", "3.1.0", 1)
    on_new = free_devices(ts, "NBS-10", "firmware", "3.2.0", 1)
    resp = client.call("POST", f"{V1}/upgrades", json=upgrade_body(ts, on_old + on_new))
    assert resp.status_code == 400
    body = resp.json()
    assert body["errorCode"] == "SoftwareManagementService.REQUEST_FAILED.DeviceMismatch"
    assert on_new[0] in body["errorMessage"] and "3.2.0" in body["errorMessage"]
    assert ts.stats()["requests_total"] == 0


@pytest.mark.parametrize(
    ("over", "code", "names"),
    [
        ({"startDate": "2026-01-04"}, "INPUT_INVALID.StartDate", "in the past"),
        ({"startDate": "05/01/2026"}, "INPUT_INVALID.StartDate", "05/01/2026"),
        ({"endDate": "2026-01-01"}, "INPUT_INVALID.EndDate", "before startDate"),
        ({"deviceList": []}, "INPUT_INVALID.DeviceList", "non-empty"),
        ({"accountName": "9999999999-00001"}, "INPUT_INVALID.AccountName", "9999999999"),
        ({"firmwareName": "FOTA_X"}, "INPUT_INVALID.FirmwareName", "FOTA_X"),
    ],
)
def test_validation_errors_name_the_field(
    ts: TSHandle, client: Client, over: dict[str, object], code: str, names: str
) -> None:
    devices = free_devices(ts, "NBS-10", "firmware", "3.1.0", 1)
    resp = client.call("POST", f"{V1}/upgrades", json=upgrade_body(ts, devices, **over))
    assert resp.status_code == 400
    assert resp.json()["errorCode"] == f"SoftwareManagementService.{code}"
    assert names in resp.json()["errorMessage"]


def test_seed_page_spelling_devicelist_is_accepted(ts: TSHandle, client: Client) -> None:
    devices = free_devices(ts, "NBS-10", "firmware", "3.1.0", 1)
    body = upgrade_body(ts, devices)
    body["devicelist"] = body.pop("deviceList")
    body.pop("firmwareTo")  # optional in the seed page's example
    up = client.ok("POST", f"{V1}/upgrades", json=body)
    assert [d["deviceId"] for d in up["deviceList"]] == devices


def test_a_device_is_never_in_two_unfinished_upgrades(ts: TSHandle, client: Client) -> None:
    devices = free_devices(ts, "NBS-10", "firmware", "3.1.0", 2)
    first = client.ok("POST", f"{V1}/upgrades", json=upgrade_body(ts, devices[:1]))
    again = client.call("POST", f"{V1}/upgrades", json=upgrade_body(ts, devices))
    assert again.status_code == 400
    assert again.json()["errorCode"].endswith("REQUEST_FAILED.DeviceInActiveUpgrade")
    assert first["id"] in again.json()["errorMessage"]


def test_modify_and_cancel_only_before_the_start(ts: TSHandle, client: Client) -> None:
    devices = free_devices(ts, "NBS-10", "firmware", "3.1.0", 3)
    later = client.ok("POST", f"{V1}/upgrades", json=upgrade_body(ts, devices[:1]))
    now = client.ok(
        "POST", f"{V1}/upgrades", json=upgrade_body(ts, devices[1:2], startDate=day(ts))
    )
    ts.advance(3 * 3600)  # the second has started; both are accepted
    client.login()
    late = client.call(
        "PUT",
        f"{V1}/upgrades/{ts.account}/upgrade/{now['id']}",
        json={"type": "append", "deviceList": devices[2:]},
    )
    assert late.status_code == 400 and late.json()["errorCode"].endswith("RequestStarted")
    cancel = client.call("DELETE", f"{V1}/upgrades/{ts.account}/upgrade/{now['id']}")
    assert (
        cancel.status_code == 400 and "can no longer be cancelled" in cancel.json()["errorMessage"]
    )
    assert later["status"] == "RequestPending"
    bad_type = client.call(
        "PUT",
        f"{V1}/upgrades/{ts.account}/upgrade/{later['id']}",
        json={"type": "add", "deviceList": devices[2:]},
    )
    assert bad_type.json()["errorCode"].endswith("INPUT_INVALID.Type")


def test_licenses_are_required_on_an_mrc_subscription() -> None:
    with run_thingspace_simulator(
        devices=200, groups=5, clock="manual", rate_limit=0, license_required=True, licenses=1
    ) as ts:
        c = Client(ts)
        devices = free_devices(ts, "NBS-10", "firmware", "3.1.0", 2)
        refused = c.call("POST", f"{V1}/upgrades", json=upgrade_body(ts, devices[:1]))
        assert refused.json()["errorCode"].endswith("REQUEST_FAILED.LicenseNotAssigned")
        assigned = c.ok("POST", f"{V1}/licenses/{ts.account}/assign", json={"deviceList": devices})
        assert [d["status"] for d in assigned["deviceList"]] == ["Success", "Failure"]
        assert assigned["licCount"] == 1 and assigned["licUsedCount"] == 1
        c.ok("POST", f"{V1}/upgrades", json=upgrade_body(ts, devices[:1]))
        sub = c.ok("GET", f"{V1}/subscriptions/{ts.account}")
        assert sub["purchaseType"] == "MRC" and sub["licenseUsedCount"] == 1
        c.close()


def test_unreachable_devices_fail_at_the_end_date_and_an_upgrade_that_never_ran_fails(
    ts: TSHandle, client: Client
) -> None:
    ts.set_failure_rate(0.0)
    devices = free_devices(ts, "NBS-10", "firmware", "3.1.0", 3)
    ts.set_devices(device_ids=devices[:2], connectivity="offline")
    mixed = client.ok("POST", f"{V1}/upgrades", json=upgrade_body(ts, devices))
    ts.set_devices(device_ids=devices[2:], connectivity="offline")
    never = free_devices(ts, "NBS-10", "firmware", "3.1.0", 1)
    ts.set_devices(device_ids=never, connectivity="offline")
    dead = client.ok("POST", f"{V1}/upgrades", json=upgrade_body(ts, never))
    ts.advance(2 * 24 * 3600)  # past the end of endDate (tomorrow)
    client.login()
    got = client.ok("GET", f"{V1}/upgrades/{ts.account}/upgrade/{mixed['id']}")
    by_device = {d["deviceId"]: (d["status"], d.get("resultReason")) for d in got["deviceList"]}
    reason = "The device did not connect before the end date"
    assert by_device == {
        devices[0]: ("UpgradeFailed", reason),
        devices[1]: ("UpgradeFailed", reason),
        devices[2]: ("UpgradeSuccess", None),  # offline only for requests created later
    }
    assert got["status"] == "Finished"
    gone = client.ok("GET", f"{V1}/upgrades/{ts.account}/upgrade/{dead['id']}")
    assert gone["status"] == "UpgradeFailed"
    bad = client.http.post(f"{ts.base_url}/sim/devices", json={"device_ids": ["123"]})
    assert bad.status_code == 400 and "not an IMEI" in bad.json()["error"]


@pytest.mark.slow  # 202 creates over HTTP to cross the 100-a-page boundaries (about 10 s)
def test_reports_and_campaign_lists_page() -> None:
    with run_thingspace_simulator(devices=1000, groups=5, clock="manual", rate_limit=0) as ts:
        c = Client(ts)
        v1 = c.ok("GET", f"{V1}/devices/{ts.account}/index/0")["deviceList"]
        sensors = [
            d["deviceId"]
            for d in v1
            if d["model"] == "NBS-10" and d["fotaEligible"] and d["firmware"] == "3.1.0"
        ]
        v2 = c.ok("GET", f"/api/fota/v2/devices/{ts.account}")["deviceList"]
        meters = [
            d["deviceId"]
            for d in v2
            if d["model"] == "WM-200"
            and d["fotaEligible"]
            and d["softwareList"][1]["version"] == "2.0.1"
        ]
        assert len(sensors) > 100 and len(meters) > 100
        ids = [
            c.ok("POST", f"{V1}/upgrades", json=upgrade_body(ts, [imei]))["id"]
            for imei in sensors[:101]
        ]
        page = c.ok("GET", f"{V1}/reports/{ts.account}/status/RequestPending/index/0")
        assert page["hasMoreFlag"] is True and page["lastSeenUpgradeId"] == 100
        rest = c.ok("GET", f"{V1}/reports/{ts.account}/status/RequestPending/index/100")
        assert rest["hasMoreFlag"] is False and rest["lastSeenUpgradeId"] == 0
        assert [u["id"] for u in page["reportList"] + rest["reportList"]] == ids
        campaigns = [
            c.ok(
                "POST",
                f"/api/fota/v2/campaigns/{ts.account}",
                json={
                    "campaignName": f"c{n}",
                    "softwareName": "SW_Aquaflow_WM-200_2.0.1To2.1.0",
                    "softwareFrom": "2.0.1",
                    "softwareTo": "2.1.0",
                    "distributionType": "HTTP",
                    "startDate": day(ts),
                    "endDate": day(ts, 1),
                    "deviceList": [imei],
                },
            )["id"]
            for n, imei in enumerate(meters[:101])
        ]
        path = f"/api/fota/v2/reports/{ts.account}/campaigns"
        first = c.ok("GET", path, params={"campaignStatus": "CampaignRequestPending"})
        assert first["hasMoreData"] is True and first["lastSeenCampaignId"] == campaigns[99]
        second = c.ok(
            "GET",
            path,
            params={
                "campaignStatus": "CampaignRequestPending",
                "lastSeenCampaignId": first["lastSeenCampaignId"],
            },
        )
        assert second["hasMoreData"] is False
        names = [x["campaignName"] for x in first["campaignList"] + second["campaignList"]]
        assert names == [f"c{n}" for n in range(101)]
        c.close()

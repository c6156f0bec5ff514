"""Upgrade tasks: every documented validation, task/subtask queries, and device behaviour."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest

from fleetwave.sim.testing import SimHandle
from tests.integration.sim.conftest import (
    DEVICES,
    FW_UPGRADE,
    OPERATIONS,
    SW_UPGRADE,
    Api,
    error_of,
)

WIRE = "YYYYMMDD[T]HHmmss[Z]"


def wire(t: pendulum.DateTime) -> str:
    return t.in_tz("UTC").format(WIRE)


def unwire(s: str) -> pendulum.DateTime:
    return pendulum.from_format(s, WIRE, tz="UTC")


def create(api: Api, body: dict[str, Any], path: str = FW_UPGRADE) -> str:
    r = api.post(path, json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["operationId"])


def task(api: Api, op: str) -> dict[str, Any]:
    result: dict[str, Any] = api.ok("get", f"{OPERATIONS}/{op}")
    return result


def subtasks(api: Api, op: str, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = api.ok(
        "get", f"{OPERATIONS}/{op}/subOperations", params={"pageSize": 100, **params}
    )
    return result


@pytest.fixture
def meters(mapi: Api) -> tuple[str, list[str]]:
    return mapi.package("WM-200", "firmware", "1.5.0"), mapi.members("meters-berlin", 300)


def _validation_cases(fid: str, devs: list[str], now: pendulum.DateTime) -> list[Any]:
    group = {
        "deviceGroups": ["meters-berlin"],
        "deviceType": "WaterMeter",
        "model": "WM-200",
        "manufacturerName": "Aquaflow",
    }
    later = now.add(hours=1)
    return [
        ({"targets": {"devices": devs[:1]}}, 400, "120015"),  # no fileId
        ({"fileId": fid, "targets": {}}, 400, "123022"),
        ({"fileId": fid}, 400, "123022"),
        (
            {"fileId": fid, "targets": {"devices": devs[:1], "deviceGroups": ["meters-berlin"]}},
            400,
            "123023",
        ),
        ({"fileId": fid, "targets": {"devices": devs[:257]}}, 400, "123024"),
        (
            {"fileId": fid, "targets": {**group, "deviceGroups": [f"g{i}" for i in range(257)]}},
            400,
            "123024",
        ),
        ({"fileId": fid, "targets": {**group, "manufacturerName": None}}, 400, "123019"),
        ({"fileId": fid, "targets": {**group, "deviceType": ""}}, 400, "123020"),
        (
            {"fileId": fid, "targets": {k: v for k, v in group.items() if k != "model"}},
            400,
            "123021",
        ),
        ({"fileId": fid, "targets": {**group, "model": "TRK-9"}}, 400, "123016"),
        ({"fileId": fid, "targets": {"devices": devs[:1]}, "policy": {}}, 400, "123025"),
        (
            {"fileId": fid, "targets": {"devices": devs[:1]}, "policy": {"executeType": "later"}},
            400,
            "123025",
        ),
        (
            {"fileId": fid, "targets": {"devices": devs[:1]}, "policy": {"executeType": "custom"}},
            400,
            "123026",
        ),
        (
            {
                "fileId": fid,
                "targets": {"devices": devs[:1]},
                "policy": {
                    "executeType": "custom",
                    "startTime": "2026-01-05",
                    "endTime": wire(later),
                },
            },
            400,
            "123026",
        ),
        (
            {
                "fileId": fid,
                "targets": {"devices": devs[:1]},
                "policy": {"executeType": "now", "retryType": True},
            },
            400,
            "123028",
        ),
        (
            {
                "fileId": fid,
                "targets": {"devices": devs[:1]},
                "policy": {"executeType": "now", "retryType": True, "retryTimes": 6},
            },
            400,
            "123028",
        ),
        (
            {
                "fileId": fid,
                "targets": {"devices": devs[:1]},
                "policy": {"executeType": "now", "retryType": True, "retryTimes": 0},
            },
            400,
            "123028",
        ),
        (
            {
                "fileId": fid,
                "targets": {"devices": devs[:1]},
                "policy": {
                    "executeType": "custom",
                    "startTime": wire(later),
                    "endTime": wire(later.subtract(minutes=10)),
                },
            },
            400,
            "123032",
        ),
        (
            {
                "fileId": fid,
                "targets": {"devices": devs[:1]},
                "policy": {
                    "executeType": "custom",
                    "startTime": wire(now.subtract(hours=1)),
                    "endTime": wire(later),
                },
            },
            400,
            "123033",
        ),
        (
            {
                "fileId": fid,
                "targets": {"devices": devs[:1]},
                "policy": {
                    "executeType": "custom",
                    "startTime": wire(later),
                    "endTime": wire(later.add(minutes=4)),
                },
            },
            400,
            "123034",
        ),
        ({"fileId": "0" * 24, "targets": {"devices": devs[:1]}}, 404, "123002"),
        ({"fileId": fid, "targets": {"devices": ["dev-99999999"]}}, 404, "123002"),
        ({"fileId": fid, "targets": {**group, "deviceGroups": ["no-such-group"]}}, 404, "123002"),
    ]


def test_every_create_validation(
    mapi: Api, manual_sim: SimHandle, meters: tuple[str, list[str]]
) -> None:
    fid, devs = meters
    assert len(devs) > 257 or len(devs) >= 1
    devs = devs + [f"dev-{i:08d}" for i in range(257)]  # enough IDs for the 123024 case
    for body, status, code in _validation_cases(fid, devs, manual_sim.clock()):
        assert error_of(mapi.post(FW_UPGRADE, json=body)) == (status, code), body
    assert manual_sim.stats()["tasks"] == []  # no rejected request created a task


def test_package_must_match_devices_and_kind(mapi: Api, meters: tuple[str, list[str]]) -> None:
    fid, devs = meters
    trackers = mapi.members("trackers-madrid", 2)
    mismatch = mapi.post(FW_UPGRADE, json={"fileId": fid, "targets": {"devices": trackers}})
    assert error_of(mismatch) == (400, "123016")
    wrong_kind = mapi.post(SW_UPGRADE, json={"fileId": fid, "targets": {"devices": devs[:2]}})
    assert error_of(wrong_kind) == (400, "123016")


def test_now_task_lifecycle_and_version_change(
    mapi: Api, manual_sim: SimHandle, meters: tuple[str, list[str]]
) -> None:
    fid, devs = meters
    devs = devs[:20]
    online = [
        d for d in devs if mapi.ok("get", f"{DEVICES}/{d}")["deviceInfo"]["status"] == "ONLINE"
    ]
    op = create(mapi, {"fileId": fid, "targets": {"devices": online}, "unknown": {"x": 1}})
    t = task(mapi, op)
    assert t["operateType"] == "firmware_upgrade" and t["status"] == "processing"
    assert t["staResult"]["total"] == len(online) == t["staResult"]["processing"]
    assert t["targets"]["devices"] == online and t["extendPara"]["fileVersion"] == "1.5.0"
    assert t["createTime"] == wire(manual_sim.clock())
    assert t["stopTime"] is None
    manual_sim.advance(3600)
    mapi.login()  # the token expired with the advance
    t = task(mapi, op)
    assert t["status"] == "success" and t["staResult"]["success"] == len(online)
    assert t["stopTime"] is not None
    subs = subtasks(mapi, op)
    assert subs["totalCount"] == len(online)
    for s in subs["data"]:
        assert s["status"] == "success" and s["extendPara"]["targetVersion"] == "1.5.0"
        assert s["extendPara"]["curVersion"] == "1.5.0"
    dev = mapi.ok("get", f"{DEVICES}/{online[0]}")
    assert dev["deviceInfo"]["fwVersion"] == "1.5.0"
    stats = manual_sim.stats()
    assert stats["tasks"][0]["operationId"] == op and stats["tasks"][0]["fileId"] == fid
    assert stats["device_task_counts"][online[0]] == 1


def test_failures_retries_and_subtask_filter(mapi: Api, manual_sim: SimHandle) -> None:
    fid = mapi.package("FLAKY-1", "firmware", "0.2.0")
    devs = [
        d
        for d in mapi.members(_group(mapi, "flaky"), 40)
        if mapi.ok("get", f"{DEVICES}/{d}")["deviceInfo"]["status"] == "ONLINE"
    ]
    no_retry = create(mapi, {"fileId": fid, "targets": {"devices": devs}})
    retry = create(
        mapi,
        {
            "fileId": fid,
            "targets": {"devices": devs},
            "policy": {"executeType": "now", "retryType": True, "retryTimes": 5},
        },
    )
    manual_sim.advance(3000)
    mapi.login()
    a, b = task(mapi, no_retry), task(mapi, retry)
    assert a["status"] == "failed" and b["status"] in ("success", "failed")
    # FLAKY-1 fails half the attempts; five retries make a device fail 1/64 of the time
    assert a["staResult"]["fail"] > b["staResult"]["fail"]
    assert b["staResult"]["success"] > a["staResult"]["success"]
    failed = subtasks(mapi, no_retry, subOperationStatus="fail")
    assert failed["totalCount"] == a["staResult"]["fail"]
    assert all(s["status"] == "fail" and s["detailInfo"] for s in failed["data"])
    page = subtasks(mapi, no_retry, pageNo=1, pageSize=3)
    assert [s["deviceId"] for s in page["data"]] == devs[3:6]
    assert error_of(
        mapi.get(f"{OPERATIONS}/{no_retry}/subOperations", params={"pageSize": 101})
    ) == (400, "123029")
    assert error_of(mapi.get(f"{OPERATIONS}/nope/subOperations")) == (404, "123009")
    assert error_of(mapi.get(f"{OPERATIONS}/nope")) == (404, "123009")


def _group(api: Api, prefix: str) -> str:
    groups = api.ok("get", "/iocm/app/devgroup/v1.3.0/devGroups")["list"]
    return next(g["name"] for g in groups if g["name"].startswith(prefix))


def test_device_failure_override_and_global_rate(
    mapi: Api, manual_sim: SimHandle, meters: tuple[str, list[str]]
) -> None:
    fid, devs = meters
    doomed = devs[:3]
    manual_sim.set_devices(device_ids=doomed, failure_rate=1.0)
    op = create(mapi, {"fileId": fid, "targets": {"devices": devs[:10]}})
    manual_sim.advance(3000)
    mapi.login()
    failed = {s["deviceId"] for s in subtasks(mapi, op, subOperationStatus="fail")["data"]}
    assert set(doomed) <= failed
    manual_sim.set_devices(models=["WM-200"], failure_rate=1.0)
    op2 = create(mapi, {"fileId": fid, "targets": {"devices": devs[10:20]}})
    manual_sim.advance(3000)
    mapi.login()
    assert task(mapi, op2)["staResult"]["success"] == 0


def test_device_online_waits_for_the_sleeper(mapi: Api, manual_sim: SimHandle) -> None:
    fid = mapi.package("NBS-10", "software", "1.1.0")
    devs = mapi.members(_group(mapi, "sensors"), 5)
    manual_sim.set_devices(device_ids=devs, connectivity="sleeper", wake_minutes=60)
    op = create(
        mapi,
        {"fileId": fid, "targets": {"devices": devs}, "policy": {"executeType": "device_online"}},
        SW_UPGRADE,
    )
    t = task(mapi, op)
    assert t["operateType"] == "software_upgrade"
    assert t["staResult"]["wait"] + t["staResult"]["processing"] == 5
    manual_sim.advance(3 * 3600)
    mapi.login()
    t = task(mapi, op)
    assert t["staResult"]["success"] == 5
    started = {unwire(s["startTime"]) for s in subtasks(mapi, op)["data"]}
    created = unwire(t["createTime"])
    assert len(started) > 1 and all(s > created for s in started)  # each at its own wake


def test_offline_devices_now_vs_device_online(
    mapi: Api, manual_sim: SimHandle, meters: tuple[str, list[str]]
) -> None:
    fid, devs = meters
    manual_sim.set_devices(device_ids=devs[:2], connectivity="offline")
    assert mapi.ok("get", f"{DEVICES}/{devs[0]}")["deviceInfo"]["status"] == "OFFLINE"
    now_op = create(mapi, {"fileId": fid, "targets": {"devices": devs[:2]}})
    online_op = create(
        mapi,
        {
            "fileId": fid,
            "targets": {"devices": devs[:2]},
            "policy": {"executeType": "device_online"},
        },
    )
    manual_sim.advance(2 * 3600)
    mapi.login()
    assert task(mapi, now_op)["staResult"]["fail"] == 2
    assert task(mapi, online_op)["staResult"]["wait"] == 2
    assert task(mapi, online_op)["status"] == "wait"


def test_custom_window_starts_late_and_stops_the_unfinished(
    mapi: Api, manual_sim: SimHandle
) -> None:
    fid = mapi.package("GM-50", "firmware", "2.3.1")
    devs = mapi.members(_group(mapi, "gas"), 30)
    now = manual_sim.clock()
    start, end = now.add(hours=2), now.add(hours=2, minutes=20)
    op = create(
        mapi,
        {
            "fileId": fid,
            "targets": {"devices": devs},
            "policy": {"executeType": "custom", "startTime": wire(start), "endTime": wire(end)},
        },
    )
    t = task(mapi, op)
    assert t["policy"]["executeType"] == "custom" and t["staResult"]["wait"] == 30
    manual_sim.advance(3600)
    mapi.login()
    assert task(mapi, op)["staResult"]["wait"] == 30  # not before startTime
    manual_sim.advance(2 * 3600)
    mapi.login()
    t = task(mapi, op)
    assert t["staResult"]["wait"] == t["staResult"]["processing"] == 0
    assert t["staResult"]["stop"] > 0  # hourly sleepers and 5-40 min updates miss a 20 min window
    for s in subtasks(mapi, op)["data"]:
        if s["startTime"]:
            assert unwire(s["startTime"]) >= start
        if s["status"] == "stop":
            assert s["stopTime"] == wire(end)


def test_group_mode_task_and_task_list_filters(mapi: Api, manual_sim: SimHandle) -> None:
    fid = mapi.package("WM-200", "firmware", "1.5.0")
    groups = mapi.ok("get", "/iocm/app/devgroup/v1.3.0/devGroups")["list"]
    meter_groups = [g for g in groups if g["name"].startswith("meters-")]
    op = create(
        mapi,
        {
            "fileId": fid,
            "targets": {
                "deviceGroups": [g["name"] for g in meter_groups] + [_group(mapi, "trackers")],
                "deviceType": "WaterMeter",
                "model": "WM-200",
                "manufacturerName": "Aquaflow",
            },
        },
    )
    t = task(mapi, op)
    assert t["staResult"]["total"] == sum(g["curDevNum"] for g in meter_groups)
    assert t["targets"]["devices"] is None
    sw = mapi.package("TRK-9", "software", "5.3.0")
    tracker = mapi.members(_group(mapi, "trackers"), 1)
    op2 = create(mapi, {"fileId": sw, "targets": {"devices": tracker}}, SW_UPGRADE)
    listing = mapi.ok("get", OPERATIONS, params={"pageSize": 100})
    assert [x["operationId"] for x in listing["data"]] == [op, op2]
    fw_only = mapi.ok("get", OPERATIONS, params={"operationType": "firmware_upgrade"})
    assert [x["operationId"] for x in fw_only["data"]] == [op]
    by_device = mapi.ok("get", OPERATIONS, params={"deviceId": tracker[0]})
    assert [x["operationId"] for x in by_device["data"]] == [op2]
    assert mapi.ok("get", OPERATIONS, params={"model": "TRK-9"})["totalCount"] == 1
    assert (
        mapi.ok(
            "get", OPERATIONS, params={"manufacturerName": "Aquaflow", "deviceType": "WaterMeter"}
        )["totalCount"]
        == 1
    )
    assert mapi.ok("get", OPERATIONS, params={"operationStatus": "processing"})["totalCount"] == 2
    assert mapi.ok("get", OPERATIONS, params={"operationStatus": "success"})["totalCount"] == 0
    assert mapi.ok("get", OPERATIONS, params={"pageNo": 5})["data"] == []
    paged = mapi.ok("get", OPERATIONS, params={"pageNo": 1, "pageSize": 1})
    assert [x["operationId"] for x in paged["data"]] == [op2] and paged["totalCount"] == 2
    for bad, code in (
        ({"pageSize": 0}, "123029"),
        ({"pageSize": 101}, "123029"),
        ({"operationType": "reboot"}, "120015"),
    ):
        assert error_of(mapi.get(OPERATIONS, params=bad)) == (400, code)

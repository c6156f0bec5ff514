"""Device groups, group members, device queries and version packages: fields, filters, paging."""

from __future__ import annotations

import pytest

from tests.integration.sim.conftest import CATEGORY, DEVICES, GROUPS, MEMBERS, Api, error_of


def test_groups_list_and_get(api: Api) -> None:
    body = api.ok("get", GROUPS, params={"pageNo": 0, "pageSize": 100})
    assert body["totalCount"] == 8 and len(body["list"]) == 8
    names = [g["name"] for g in body["list"]]
    assert "meters-berlin" in names and any(n.startswith("flaky-") for n in names)
    sizes = [g["curDevNum"] for g in body["list"]]
    assert sum(sizes) == 3000 and len(set(sizes)) > 1  # mixed sizes, every device in one group
    g = body["list"][0]
    assert set(g) >= {"name", "description", "id", "appId", "maxDevNum", "curDevNum", "creator"}
    assert api.ok("get", f"{GROUPS}/{g['id']}") == g
    # name filter; default pageSize is 1; no pageNo = no pagination
    assert api.ok("get", GROUPS, params={"name": "meters-berlin"})["list"][0]["name"] == (
        "meters-berlin"
    )
    assert len(api.ok("get", GROUPS, params={"pageNo": 0})["list"]) == 1
    assert len(api.ok("get", GROUPS)["list"]) == 8
    assert api.ok("get", GROUPS, params={"pageNo": 99, "pageSize": 5})["list"] == []


def test_unknown_group_is_100603_with_http_200(api: Api) -> None:
    r = api.get(f"{GROUPS}/no-such-group")
    assert error_of(r) == (200, "100603")


def test_members_paging_covers_the_group_once(api: Api) -> None:
    g = api.ok("get", GROUPS, params={"name": "sensors-paris"})["list"][0]
    seen: list[str] = []
    page = 0
    while True:
        body = api.ok(
            "get", MEMBERS, params={"devGroupId": g["id"], "pageNo": page, "pageSize": 97}
        )
        assert body["totalCount"] == g["curDevNum"]
        if not body["deviceIds"]:
            break
        seen.extend(body["deviceIds"])
        page += 1
    assert len(seen) == len(set(seen)) == g["curDevNum"]
    # every member is a SmokeSensor
    d = api.ok("get", f"{DEVICES}/{seen[0]}")
    assert d["deviceInfo"]["deviceType"] == "SmokeSensor"
    for bad in ({"pageSize": 0}, {"pageSize": 1001}, {"pageNo": -1}, {"pageSize": "x"}):
        r = api.get(MEMBERS, params={"devGroupId": g["id"], **bad})
        assert r.status_code == 400, bad


def test_device_batch_query(api: Api) -> None:
    body = api.ok("get", DEVICES, params={"pageNo": 0, "pageSize": 250})
    assert body["totalCount"] == 3000 and len(body["devices"]) == 250
    info = body["devices"][0]["deviceInfo"]
    for field in ("manufacturerName", "deviceType", "model", "fwVersion", "swVersion", "status"):
        assert info[field], field
    # default sort DESC by registration; ASC is the reverse
    asc = api.ok("get", DEVICES, params={"pageNo": 0, "pageSize": 3, "sort": "ASC"})
    assert asc["devices"][0]["deviceId"] < body["devices"][0]["deviceId"]
    meters = api.ok(
        "get", DEVICES, params={"pageNo": 0, "pageSize": 50, "deviceType": "WaterMeter"}
    )
    assert 0 < meters["totalCount"] < 3000
    assert {d["deviceInfo"]["deviceType"] for d in meters["devices"]} == {"WaterMeter"}
    offline = api.ok("get", DEVICES, params={"pageNo": 0, "pageSize": 250, "status": "OFFLINE"})
    assert 0 < offline["totalCount"] < 300
    assert {d["deviceInfo"]["status"] for d in offline["devices"]} == {"OFFLINE"}
    statuses = {
        s: api.ok("get", DEVICES, params={"pageNo": 0, "pageSize": 1, "status": s})["totalCount"]
        for s in ("ONLINE", "OFFLINE", "INACTIVE", "ABNORMAL")
    }
    assert sum(statuses.values()) == 3000
    past = api.ok("get", DEVICES, params={"pageNo": 100, "pageSize": 250})
    assert past["devices"] == [] and past["totalCount"] == 3000


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"pageSize": 10}, "100218"),  # neither gatewayId nor pageNo
        ({"pageNo": 0, "pageSize": 251}, "100405"),
        ({"pageNo": 0, "pageSize": 0}, "100405"),
        ({"pageNo": 0, "status": "ASLEEP"}, "100405"),
    ],
)
def test_device_batch_query_errors(api: Api, params: dict[str, object], code: str) -> None:
    assert error_of(api.get(DEVICES, params=params)) == (400, code)


def test_single_device(api: Api) -> None:
    body = api.ok("get", DEVICES, params={"pageNo": 0, "pageSize": 1})
    did = body["devices"][0]["deviceId"]
    assert api.ok("get", f"{DEVICES}/{did}")["deviceId"] == did
    assert error_of(api.get(f"{DEVICES}/dev-99999999")) == (404, "100403")
    assert error_of(api.get(f"{DEVICES}/nonsense")) == (404, "100403")


def test_packages_filters_and_paging(api: Api) -> None:
    all_ = api.ok("get", CATEGORY, params={"pageSize": 100})
    assert all_["totalCount"] == len(all_["data"]) >= 20
    models = {p["model"] for p in all_["data"]}
    assert {"WM-200", "FLAKY-1", "NBS-10", "TRK-9"} <= models
    for m in models:  # a current and a newer package of each kind for every model
        for kind in ("firmwarePackage", "softwarePackage"):
            got = api.ok("get", CATEGORY, params={"model": m, "fileType": kind})
            assert got["totalCount"] == 2
    p = all_["data"][0]
    assert set(p) >= {
        "fileId",
        "name",
        "version",
        "fileType",
        "deviceType",
        "model",
        "manufacturerName",
        "protocolType",
        "description",
        "date",
        "uploadTime",
    }
    one = api.ok(
        "get",
        CATEGORY,
        params={
            "manufacturerName": p["manufacturerName"],
            "deviceType": p["deviceType"],
            "version": p["version"],
            "fileType": p["fileType"],
        },
    )
    assert [x["fileId"] for x in one["data"]] == [p["fileId"]]
    assert (
        api.ok("get", CATEGORY, params={"manufactureName": p["manufacturerName"]})["totalCount"]
        == 4
    )
    paged = api.ok("get", CATEGORY, params={"pageNo": 1, "pageSize": 3})
    assert [x["fileId"] for x in paged["data"]] == [x["fileId"] for x in all_["data"][3:6]]
    assert api.ok("get", CATEGORY, params={"pageNo": 50})["data"] == []
    assert api.ok("get", f"{CATEGORY}/{p['fileId']}") == p


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"pageSize": 0}, "123029"),
        ({"pageSize": 101}, "123029"),
        ({"pageNo": -1}, "123029"),
        ({"pageSize": "ten"}, "120015"),
    ],
)
def test_package_paging_errors(api: Api, params: dict[str, object], code: str) -> None:
    assert error_of(api.get(CATEGORY, params=params)) == (400, code)


def test_package_get_and_delete(mapi: Api) -> None:
    fid = mapi.package("GM-50", "software", "4.0.0")
    assert error_of(mapi.get(f"{CATEGORY}/nope")) == (404, "123002")
    assert mapi.delete(f"{CATEGORY}/{fid}").status_code == 200
    assert error_of(mapi.get(f"{CATEGORY}/{fid}")) == (404, "123002")
    assert error_of(mapi.delete(f"{CATEGORY}/{fid}")) == (404, "123002")

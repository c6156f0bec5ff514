"""Fault injection: HTTP 500, dropped connections (before and after commit), malformed bodies,
token revocation, latency, count and selectors; the admin API's own validation."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from fleetwave.sim.testing import SimHandle
from tests.integration.sim.conftest import CATEGORY, FW_UPGRADE, GROUPS, OPERATIONS, Api, error_of


def _create_body(api: Api) -> dict[str, Any]:
    fid = api.package("WM-200", "firmware", "1.5.0")
    return {"fileId": fid, "targets": {"devices": api.members("meters-berlin", 2)}}


def test_error_fault_is_documented_500_and_count_limits_it(
    mapi: Api, manual_sim: SimHandle
) -> None:
    mapi.login()
    manual_sim.set_faults(error_rate=1.0, count=2, methods=["GET"])
    assert error_of(mapi.get(GROUPS)) == (500, "50252")
    assert error_of(mapi.get(CATEGORY)) == (500, "50252")
    assert mapi.get(GROUPS).status_code == 200  # count exhausted
    calls = manual_sim.stats(tasks=False)["calls"]
    assert calls[f"GET {GROUPS}"] == {"500": 1, "200": 1}


def test_drop_after_commit_creates_the_task_but_no_response(
    mapi: Api, manual_sim: SimHandle
) -> None:
    body = _create_body(mapi)
    headers = mapi.headers()
    manual_sim.set_faults(
        drop_rate=1.0, drop_after_commit=True, methods=["POST"], path_prefix=OPERATIONS, count=1
    )
    with (
        httpx.Client(base_url=manual_sim.base_url) as plain,
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
    ):
        plain.post(FW_UPGRADE, json=body, headers=headers)
    stats = manual_sim.stats()
    assert len(stats["tasks"]) == 1  # the task WAS created
    assert stats["calls"][f"POST {FW_UPGRADE}"] == {"dropped": 1}
    listing = mapi.ok("get", OPERATIONS, params={"deviceId": body["targets"]["devices"][0]})
    assert listing["totalCount"] == 1
    # the server is still healthy afterwards
    assert mapi.get(GROUPS).status_code == 200


def test_drop_before_commit_creates_nothing(mapi: Api, manual_sim: SimHandle) -> None:
    body = _create_body(mapi)
    headers = mapi.headers()
    manual_sim.set_faults(drop_rate=1.0, methods=["POST"], count=1)
    with (
        httpx.Client(base_url=manual_sim.base_url) as plain,
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
    ):
        plain.post(FW_UPGRADE, json=body, headers=headers)
    assert manual_sim.stats()["tasks"] == []


def test_malformed_body_is_truncated_json(mapi: Api, manual_sim: SimHandle) -> None:
    mapi.login()
    manual_sim.set_faults(malformed_rate=1.0, count=1)
    r = mapi.get(GROUPS)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)
    assert mapi.get(GROUPS).json()["totalCount"] == 6


def test_revoke_token_fault(mapi: Api, manual_sim: SimHandle) -> None:
    mapi.login()
    manual_sim.set_faults(revoke_token_rate=1.0, count=1)
    assert error_of(mapi.get(GROUPS)) == (403, "1010005")
    assert error_of(mapi.get(GROUPS)) == (403, "1010005")  # stays revoked until a new login
    mapi.login()
    assert mapi.get(GROUPS).status_code == 200


def test_latency_and_rates_are_deterministic(mapi: Api, manual_sim: SimHandle) -> None:
    mapi.login()

    def pattern() -> list[int]:
        manual_sim.set_faults(error_rate=0.5, latency_ms=1, path_prefix="/iocm/")
        codes = [mapi.get(GROUPS).status_code for _ in range(20)]
        assert mapi.get(CATEGORY).status_code == 200  # outside the path prefix
        return codes

    first = pattern()
    assert 0 < first.count(500) < 20
    assert pattern() == first  # a fresh fault set replays the same sequence
    manual_sim.clear_faults()
    assert all(mapi.get(GROUPS).status_code == 200 for _ in range(5))


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 2},
        {"error_rate": "x"},
        {"bogus": 1},
        {"count": -1},
        {"methods": "GET"},
        {"latency_ms": -5},
    ],
)
def test_fault_admin_validation(manual_sim: SimHandle, body: dict[str, object]) -> None:
    r = httpx.post(f"{manual_sim.base_url}/sim/faults", json=body)
    assert r.status_code == 400 and r.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"device_ids": ["nope"], "failure_rate": 0.5},
        {"models": ["XX"], "failure_rate": 0.5},
        {"failure_rate": 3},
        {"connectivity": "teleport", "models": ["WM-200"]},
        {"color": 1},
        {"connectivity": "offline"},
    ],
)
def test_devices_admin_validation(manual_sim: SimHandle, body: dict[str, object]) -> None:
    r = httpx.post(f"{manual_sim.base_url}/sim/devices", json=body)
    assert r.status_code == 400 and r.json()["error"]

"""The issue's security and bad-input cases, each endpoint over real HTTP on a real store:
401 without a valid token, 403/404 for devices that are not the caller's, replays that
change nothing, and every action in the event log with who and when."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from fleetwave import store
from fleetwave.consent.app import ConsentServer, create_consent_app
from fleetwave.store import DeviceRunStatus
from fleetwave.store.models import Event
from tests.integration.consent.conftest import NOW, WINDOWS, Clock, ConsentEnv

H = timedelta(hours=1)
TABLES = (
    "device_consent",
    "device_auto_upgrade",
    "event",
    "device_run",
    "device_owner",
    "consent_owner",
)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables an end-user call could change."""
    with engine.connect() as conn:
        return {
            t: sorted(
                (tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t}")).all()), key=repr
            )
            for t in TABLES
        }


def iso(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


def refused(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code, error
    assert error["message"] and "\n" not in error["message"]


@dataclass(frozen=True)
class Endpoint:
    """One operation of the API and how to call it for one device."""

    name: str
    method: str
    path: str
    body: Callable[[str], dict[str, Any]]
    needs_plan: bool = True

    def call(self, client: httpx.Client, device: str, **headers: str) -> httpx.Response:
        if self.method == "GET":
            return client.get(self.path, params=self.body(device), headers=headers)
        return client.post(self.path, json=self.body(device), headers=headers)


ENDPOINTS = [
    Endpoint(
        "getDeviceUpgradePlan",
        "GET",
        "/enduserapi/v2/getDeviceUpgradePlan",
        lambda d: {"deviceId": d},
    ),
    Endpoint(
        "userBatchConfirmUpgrade",
        "POST",
        "/enduserapi/v2/userBatchConfirmUpgrade",
        lambda d: {"items": [{"deviceId": d, "action": "confirm"}]},
    ),
    Endpoint(
        "getBatchUpgradeDetails",
        "POST",
        "/enduserapi/v2/getBatchUpgradeDetails",
        lambda d: {"deviceIds": [d]},
        needs_plan=False,
    ),
    Endpoint(
        "setAutoUpgradeSwitch",
        "POST",
        "/enduserapi/setAutoUpgradeSwitch",
        lambda d: {"deviceId": d, "enabled": True},
        needs_plan=False,
    ),
    Endpoint(
        "getAutoUpgradeSwitch",
        "GET",
        "/enduserapi/getAutoUpgradeSwitch",
        lambda d: {"deviceId": d},
        needs_plan=False,
    ),
    Endpoint(
        "deleteDeviceUpgrade",
        "POST",
        "/enduserapi/deleteDeviceUpgrade",
        lambda d: {"deviceId": d},
        needs_plan=False,
    ),
    Endpoint(
        "getFetchPlan",
        "GET",
        "/enduserapi/getFetchPlan",
        lambda d: {"deviceId": d},
    ),
    Endpoint(
        "reportUpgradeStatus",
        "POST",
        "/enduserapi/reportUpgradeStatus",
        lambda d: {"deviceId": d, "status": "confirmed"},
    ),
]
BY_NAME = {e.name: e for e in ENDPOINTS}
APP_ONLY = {"getFetchPlan", "reportUpgradeStatus"}


def own_device(endpoint: Endpoint, owner: str) -> str:
    """A device of ``owner`` on which the call would succeed (and change something)."""
    letter = owner[0]
    if endpoint.name in APP_ONLY:
        return f"ble-{letter}1"
    return f"dev-{letter}1"


@pytest.fixture
def bob_auto_on(env: ConsentEnv) -> ConsentEnv:
    """dev-b1 (bob's) and dev-a1 (alice's) with auto-confirm on, so that
    ``deleteDeviceUpgrade`` on them would change something."""
    with store.session_scope(env.engine) as session:
        store.set_auto_upgrade(session, device_id="dev-b1", enabled=True, actor="test", now=NOW)
        store.set_auto_upgrade(session, device_id="dev-a1", enabled=True, actor="test", now=NOW)
    return env


def test_the_endpoints_are_every_operation_of_the_api(env: ConsentEnv) -> None:
    with env.client(None) as anon:
        paths = set(anon.get("/openapi.json").json()["paths"])
        health = anon.get("/health")
    # /health is the one path without a token: it names the service and a hash of the store
    # (how a flow run finds the API serving its store), and no device or owner
    assert paths == {e.path for e in ENDPOINTS} | {"/health"}
    assert health.status_code == 200
    assert set(health.json()) == {"service", "version", "store"}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_every_endpoint_needs_a_valid_token(bob_auto_on: ConsentEnv, endpoint: Endpoint) -> None:
    env = bob_auto_on
    device = own_device(endpoint, "alice")
    replaced = env.tokens["alice"]
    with store.session_scope(env.engine) as session:
        env.tokens["alice"] = store.issue_owner_token(session, owner_id="alice", now=NOW)
    before = snapshot(env.engine)
    with env.client(None) as anon:
        for headers in (
            {},
            {"Authorization": "Bearer fwc_" + "x" * 43},
            {"Authorization": f"Bearer {replaced}"},  # the owner's previous token
            {"Authorization": f"Basic {env.tokens['alice']}"},
            {"Authorization": "Bearer"},
        ):
            refused(endpoint.call(anon, device, **headers), 401, "UNAUTHENTICATED")
    assert snapshot(env.engine) == before
    # the same call with the owner's current token is accepted: the 401 was the token's
    with env.client("alice") as alice:
        resp = endpoint.call(alice, device)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_a_bad_request_without_a_valid_token_is_401_not_a_validation_error(
    env: ConsentEnv, endpoint: Endpoint
) -> None:
    """The token is checked first: a caller without one learns nothing about the API's
    validation (a body that is not JSON, a missing parameter)."""
    before = snapshot(env.engine)
    with env.client(None) as anon:
        for headers in ({}, {"Authorization": "Bearer fwc_" + "x" * 43}):
            if endpoint.method == "GET":
                resp = anon.get(endpoint.path, headers=headers)  # no deviceId
            else:
                resp = anon.post(
                    endpoint.path,
                    content=b"{not json",
                    headers={**headers, "Content-Type": "application/json"},
                )
            refused(resp, 401, "UNAUTHENTICATED")
    assert snapshot(env.engine) == before
    with env.client("alice") as alice:  # with a token, the same request is a 422
        if endpoint.method == "GET":
            resp = alice.get(endpoint.path)
        else:
            resp = alice.post(
                endpoint.path, content=b"{not json", headers={"Content-Type": "application/json"}
            )
    refused(resp, 422, "INVALID_REQUEST")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_another_owners_device_is_403_and_changes_nothing(
    bob_auto_on: ConsentEnv, endpoint: Endpoint
) -> None:
    env = bob_auto_on
    before = snapshot(env.engine)
    with env.client("alice") as alice:
        resp = endpoint.call(alice, own_device(endpoint, "bob"))
    refused(resp, 403, "NOT_OWNER")
    assert "data" not in resp.json()  # nothing of the device is shown
    assert snapshot(env.engine) == before
    with env.client("bob") as bob:  # the owner may
        resp = endpoint.call(bob, own_device(endpoint, "bob"))
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_an_unknown_device_is_404_and_changes_nothing(env: ConsentEnv, endpoint: Endpoint) -> None:
    before = snapshot(env.engine)
    with env.client("alice") as alice:
        refused(endpoint.call(alice, "no-such-device"), 404, "UNKNOWN_DEVICE")
    assert snapshot(env.engine) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_a_device_in_no_plan(env: ConsentEnv, endpoint: Endpoint) -> None:
    """``dev-free`` is alice's but in no consent campaign: the plan operations answer
    NOT_IN_PLAN; the details say ``no_plan``; the auto switch needs no plan."""
    before = snapshot(env.engine)
    with env.client("alice") as alice:
        resp = endpoint.call(alice, "dev-free")
    if endpoint.needs_plan:
        refused(resp, 404, "NOT_IN_PLAN")
        assert snapshot(env.engine) == before
    elif endpoint.name == "getBatchUpgradeDetails":
        assert resp.json()["data"]["details"] == [
            {"deviceId": "dev-free", "state": None, "upgradeStatus": "no_plan"}
        ]
    else:
        assert resp.status_code == 200, resp.text


def test_a_batch_with_one_foreign_or_unknown_device_changes_none(env: ConsentEnv) -> None:
    before = snapshot(env.engine)
    confirm = BY_NAME["userBatchConfirmUpgrade"]
    with env.client("alice") as alice:
        for other, status, code in (("dev-b1", 403, "NOT_OWNER"), ("nope", 404, "UNKNOWN_DEVICE")):
            body = {
                "items": [
                    {"deviceId": "dev-a1", "action": "confirm"},
                    {"deviceId": "dev-a2", "action": "cancel"},
                    {"deviceId": other, "action": "confirm"},
                ]
            }
            resp = alice.post(confirm.path, json=body)
            refused(resp, status, code)
            assert resp.json()["error"]["items"] == [{"deviceId": other, "code": code}]
    assert snapshot(env.engine) == before


# ---- replays -----------------------------------------------------------------------------

APPOINT = {
    "deviceId": "dev-a2",
    "action": "appoint",
    "appointStart": iso(WINDOWS[1][0]),
    "appointEnd": iso(WINDOWS[1][0] + 2 * H),
}
REPLAYS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "confirm": (
        "POST",
        "/enduserapi/v2/userBatchConfirmUpgrade",
        {"items": [{"deviceId": "dev-a1", "action": "confirm"}]},
    ),
    "appoint": ("POST", "/enduserapi/v2/userBatchConfirmUpgrade", {"items": [APPOINT]}),
    "cancel": (
        "POST",
        "/enduserapi/v2/userBatchConfirmUpgrade",
        {"items": [{"deviceId": "dev-a3", "action": "cancel"}]},
    ),
    "auto-switch-on": (
        "POST",
        "/enduserapi/setAutoUpgradeSwitch",
        {"deviceId": "dev-a1", "enabled": True},
    ),
    "auto-switch-off": (
        "POST",
        "/enduserapi/setAutoUpgradeSwitch",
        {"deviceId": "dev-a4", "enabled": False},
    ),
    "delete-auto-switch": ("POST", "/enduserapi/deleteDeviceUpgrade", {"deviceId": "dev-a4"}),
    "report-confirmed": (
        "POST",
        "/enduserapi/reportUpgradeStatus",
        {"deviceId": "ble-a1", "status": "confirmed"},
    ),
}


def _changed(resp: httpx.Response) -> bool:
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    return bool(data["results"][0]["changed"] if "results" in data else data["changed"])


@pytest.mark.parametrize("case", list(REPLAYS))
def test_a_replayed_action_changes_nothing(env: ConsentEnv, case: str) -> None:
    method, path, body = REPLAYS[case]
    with env.client("alice") as alice:
        assert _changed(alice.request(method, path, json=body)) is True
        after_first = snapshot(env.engine)
        env.clock.at = NOW + timedelta(minutes=7)  # a write now would show a new time
        assert _changed(alice.request(method, path, json=body)) is False
    assert snapshot(env.engine) == after_first


def test_a_replayed_final_app_report_and_retry_change_nothing(env: ConsentEnv) -> None:
    report = "/enduserapi/reportUpgradeStatus"
    confirm = {"items": [{"deviceId": "ble-a1", "action": "confirm"}]}
    with env.client("alice") as alice:
        assert _changed(alice.post(report, json={"deviceId": "ble-a1", "status": "confirmed"}))
        with store.session_scope(env.engine) as session:
            store.release_to_app(
                session, campaign_id=env.campaign_ids["c-app"], device_ids=["ble-a1"], now=NOW
            )
        failed = {"deviceId": "ble-a1", "status": "failed"}
        assert _changed(alice.post(report, json=failed)) is True
        settled = snapshot(env.engine)
        env.clock.at = NOW + timedelta(minutes=5)
        assert _changed(alice.post(report, json=failed)) is False
        assert snapshot(env.engine) == settled
        with store.session_scope(env.engine) as session:  # the engine takes the failure
            store.set_device_status(
                session,
                campaign_id=env.campaign_ids["c-app"],
                status=DeviceRunStatus.FAILED,
                now=NOW + timedelta(minutes=6),
                device_ids=["ble-a1"],
            )
        env.clock.at = NOW + timedelta(minutes=10)
        resp = alice.post("/enduserapi/v2/userBatchConfirmUpgrade", json=confirm)
        retry = resp.json()["data"]["results"][0]
        assert (retry["changed"], retry["retries"]) == (True, 1)
        retried = snapshot(env.engine)
        env.clock.at = NOW + timedelta(minutes=15)
        assert _changed(alice.post("/enduserapi/v2/userBatchConfirmUpgrade", json=confirm)) is False
    assert snapshot(env.engine) == retried


# ---- the event log: who and when ---------------------------------------------------------


def test_each_action_is_in_the_event_log_with_who_and_when(env: ConsentEnv) -> None:
    confirm_path = "/enduserapi/v2/userBatchConfirmUpgrade"
    report_path = "/enduserapi/reportUpgradeStatus"
    cancel = {"items": [{"deviceId": "dev-b1", "action": "cancel"}]}
    steps: list[tuple[str, str, dict[str, Any], str, str]] = [
        # (owner, path, body, event kind, subject), all POSTs
        ("alice", confirm_path, REPLAYS["confirm"][2], "consent.confirmed", "dev-a1"),
        ("alice", confirm_path, {"items": [APPOINT]}, "consent.appointed", "dev-a2"),
        ("bob", confirm_path, cancel, "consent.declined", "dev-b1"),
        ("alice", REPLAYS["auto-switch-on"][1], REPLAYS["auto-switch-on"][2],
         "consent.auto_switch", "dev-a1"),
        ("alice", "/enduserapi/deleteDeviceUpgrade", {"deviceId": "dev-a4"},
         "consent.auto_switch", "dev-a4"),
        ("bob", report_path, {"deviceId": "ble-b1", "status": "confirmed"},
         "consent.app_report", "ble-b1"),
    ]  # fmt: skip
    expected = []
    for i, (owner, path, body, kind, subject) in enumerate(steps):
        env.clock.at = NOW + timedelta(minutes=i + 1)
        with env.client(owner) as client:
            resp = client.post(path, json=body)
        assert resp.status_code == 200, resp.text
        expected.append((kind, subject, f"owner:{owner}", env.clock.at))
    # the retry after a failure
    with store.session_scope(env.engine) as session:
        for status in (DeviceRunStatus.QUEUED, DeviceRunStatus.SUBMITTED, DeviceRunStatus.FAILED):
            store.set_device_status(
                session,
                campaign_id=env.campaign_ids["c-platform"],
                status=status,
                now=NOW + timedelta(minutes=20),
                device_ids=["dev-a1"],
            )
    env.clock.at = NOW + timedelta(minutes=30)
    with env.client("alice") as alice:
        assert _changed(alice.post(confirm_path, json=REPLAYS["confirm"][2])) is True
    expected.append(("consent.retry", "dev-a1", "owner:alice", env.clock.at))
    with store.session_scope(env.engine, read_only=True) as session:
        rows = session.exec(
            select(Event).where(col(Event.kind).startswith("consent.")).order_by(col(Event.id))
        ).all()
    got = [(e.kind, e.subject, e.actor, e.at.astimezone(UTC)) for e in rows]
    assert got == expected


# ---- the store unreachable ---------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def unreachable_store_api() -> Iterator[str]:
    """The API over a PostgreSQL URL nothing listens at."""
    engine = store.get_engine(f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/none")
    server = ConsentServer(create_consent_app(engine=engine, now=Clock()), "127.0.0.1", 0)
    server.start_in_thread()
    try:
        yield server.url
    finally:
        server.stop()
        engine.dispose()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_an_unreachable_store_is_503_unavailable(
    unreachable_store_api: str, endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fleetwave")
    token = "fwc_" + "s" * 43
    with httpx.Client(base_url=unreachable_store_api, timeout=60) as client:
        resp = endpoint.call(client, "dev-a1", Authorization=f"Bearer {token}")
    refused(resp, 503, "UNAVAILABLE")
    assert endpoint.path in caplog.text  # the operator sees which call failed ...
    assert token[4:] not in caplog.text and "127.0.0.1" not in resp.text  # ... no secrets

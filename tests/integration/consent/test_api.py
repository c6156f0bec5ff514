"""The end-user consent API over real HTTP on a real store: authentication, ownership,
every operation of the Quectel flow, stable error codes, idempotency and the event log."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fleetwave import store
from fleetwave.store import ConsentState, DeviceRunStatus
from tests.integration.consent.conftest import NOW, PERIOD, WINDOWS, ConsentEnv

H = timedelta(hours=1)
CONFIRM = "/enduserapi/v2/userBatchConfirmUpgrade"
PLAN = "/enduserapi/v2/getDeviceUpgradePlan"
DETAILS = "/enduserapi/v2/getBatchUpgradeDetails"


def states(engine: Engine) -> dict[str, tuple[str, Any, Any, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT device_id, state, appoint_start, appoint_end, retries FROM device_consent"
            )
        ).all()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def consent_events(engine: Engine) -> list[tuple[str, str | None, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT kind, subject, actor FROM event WHERE kind LIKE 'consent.%' ORDER BY id"
            )
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def iso(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


def error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["code"] == code
    assert "\n" not in body["message"] and body["message"]
    return dict(body)


def test_unauthenticated_calls_get_401_and_change_nothing(env: ConsentEnv) -> None:
    before, events = states(env.engine), consent_events(env.engine)
    item = {"items": [{"deviceId": "dev-a1", "action": "confirm"}]}
    with env.client(None) as anon:
        error(anon.post(CONFIRM, json=item), 401, "UNAUTHENTICATED")
        error(anon.get(PLAN, params={"deviceId": "dev-a1"}), 401, "UNAUTHENTICATED")
        for header in ("Bearer fwc_not-a-token", "Basic YWxpY2U6eA==", "Bearer"):
            resp = anon.post(CONFIRM, json=item, headers={"Authorization": header})
            error(resp, 401, "UNAUTHENTICATED")
        # a bad body without a token is still a 401, not a validation error
        error(anon.post(CONFIRM, json={"nonsense": 1}), 401, "UNAUTHENTICATED")
        resp = anon.post(
            "/enduserapi/setAutoUpgradeSwitch", json={"deviceId": "dev-a1", "enabled": True}
        )
        error(resp, 401, "UNAUTHENTICATED")
    assert states(env.engine) == before
    assert consent_events(env.engine) == events


def test_owners_act_only_on_their_devices(env: ConsentEnv) -> None:
    before, events = states(env.engine), consent_events(env.engine)
    with env.client("alice") as alice:
        body = error(
            alice.post(CONFIRM, json={"items": [{"deviceId": "dev-b1", "action": "cancel"}]}),
            403,
            "NOT_OWNER",
        )
        assert body["items"] == [{"deviceId": "dev-b1", "code": "NOT_OWNER"}]
        # a batch with one foreign device changes none of the caller's own devices either
        mixed = {
            "items": [
                {"deviceId": "dev-a1", "action": "confirm"},
                {"deviceId": "dev-b1", "action": "confirm"},
            ]
        }
        error(alice.post(CONFIRM, json=mixed), 403, "NOT_OWNER")
        error(alice.get(PLAN, params={"deviceId": "dev-b1"}), 403, "NOT_OWNER")
        error(alice.post(DETAILS, json={"deviceIds": ["dev-b1"]}), 403, "NOT_OWNER")
        error(
            alice.get("/enduserapi/getAutoUpgradeSwitch", params={"deviceId": "ble-b1"}),
            403,
            "NOT_OWNER",
        )
        error(
            alice.post("/enduserapi/deleteDeviceUpgrade", json={"deviceId": "dev-b1"}),
            403,
            "NOT_OWNER",
        )
        error(
            alice.post(
                "/enduserapi/reportUpgradeStatus", json={"deviceId": "ble-b1", "status": "failed"}
            ),
            403,
            "NOT_OWNER",
        )
    assert states(env.engine) == before
    assert consent_events(env.engine) == events


def test_unknown_device_not_in_plan_and_bad_bodies(env: ConsentEnv) -> None:
    with env.client("alice") as alice:
        error(alice.get(PLAN, params={"deviceId": "nope"}), 404, "UNKNOWN_DEVICE")
        error(alice.get(PLAN, params={"deviceId": "dev-free"}), 404, "NOT_IN_PLAN")
        resp = alice.post(CONFIRM, json={"items": [{"deviceId": "dev-free", "action": "confirm"}]})
        error(resp, 404, "NOT_IN_PLAN")
        bad = alice.post(CONFIRM, json={"items": [{"deviceId": "dev-a1", "action": "maybe"}]})
        assert "action" in error(bad, 422, "INVALID_REQUEST")["message"]
        twice = {"items": [{"deviceId": "dev-a1", "action": "confirm"}] * 2}
        error(alice.post(CONFIRM, json=twice), 422, "INVALID_REQUEST")
        naive = {
            "items": [
                {
                    "deviceId": "dev-a1",
                    "action": "appoint",
                    "appointStart": "2026-03-03T01:00:00",
                    "appointEnd": "2026-03-03T03:00:00",
                }
            ]
        }
        error(alice.post(CONFIRM, json=naive), 422, "INVALID_REQUEST")
        too_many = {"items": [{"deviceId": f"d{i}", "action": "confirm"} for i in range(101)]}
        error(alice.post(CONFIRM, json=too_many), 422, "INVALID_REQUEST")
    with env.client("alice") as alice:
        details = alice.post(DETAILS, json={"deviceIds": ["dev-free", "dev-a1"]}).json()["data"]
    assert [d["upgradeStatus"] for d in details["details"]] == ["no_plan", "awaiting_consent"]


def test_plan_confirm_replay_and_event_log(env: ConsentEnv) -> None:
    with env.client("alice") as alice:
        plan = alice.get(PLAN, params={"deviceId": "dev-a1"}).json()["data"]
        assert plan["campaign"] == "c-platform"
        assert plan["targetVersion"] == "2.0.0"
        assert plan["delivery"] == "platform"
        assert plan["windows"][0] == {"start": iso(WINDOWS[0][0]), "end": iso(WINDOWS[0][1])}
        assert plan["consent"]["state"] == "awaiting"
        assert plan["actions"] == ["confirm", "appoint", "cancel"]
        item = {"items": [{"deviceId": "dev-a1", "action": "confirm"}]}
        first = alice.post(CONFIRM, json=item).json()["data"]["results"][0]
        again = alice.post(CONFIRM, json=item).json()["data"]["results"][0]
    assert (first["state"], first["changed"]) == ("confirmed", True)
    assert (again["state"], again["changed"]) == ("confirmed", False)
    assert states(env.engine)["dev-a1"][0] == "confirmed"
    assert consent_events(env.engine) == [("consent.confirmed", "dev-a1", "owner:alice")]


def test_appoint_valid_and_each_invalid_appointment(env: ConsentEnv) -> None:
    start = WINDOWS[1][0] + H
    ok = {
        "items": [
            {
                "deviceId": "dev-a2",
                "action": "appoint",
                "appointStart": iso(start),
                "appointEnd": iso(start + 2 * H),
            }
        ]
    }

    def appoint(s: Any, e: Any) -> dict[str, Any]:
        return {
            "items": [
                {
                    "deviceId": "dev-a2",
                    "action": "appoint",
                    "appointStart": iso(s),
                    "appointEnd": iso(e),
                }
            ]
        }

    with env.client("alice") as alice:
        for body, code in (
            (appoint(NOW - H, NOW + H), "APPOINTMENT_IN_PAST"),
            (
                appoint(WINDOWS[0][0], WINDOWS[0][0] + timedelta(minutes=30)),
                "APPOINTMENT_TOO_SHORT",
            ),
            (appoint(NOW + 2 * H, NOW + 4 * H), "APPOINTMENT_OUTSIDE_WINDOW"),
            (
                appoint(NOW + timedelta(days=6), NOW + timedelta(days=8)),
                "APPOINTMENT_OUTSIDE_PERIOD",
            ),
            ({"items": [{"deviceId": "dev-a2", "action": "appoint"}]}, "APPOINTMENT_MISSING"),
        ):
            error(alice.post(CONFIRM, json=body), 422, code)
        assert states(env.engine)["dev-a2"][0] == "awaiting"
        got = alice.post(CONFIRM, json=ok).json()["data"]["results"][0]
        assert (got["state"], got["appointStart"], got["appointEnd"]) == (
            "appointed",
            iso(start),
            iso(start + 2 * H),
        )
        assert alice.post(CONFIRM, json=ok).json()["data"]["results"][0]["changed"] is False
    row = states(env.engine)["dev-a2"]
    assert row[0] == "appointed"
    assert consent_events(env.engine) == [("consent.appointed", "dev-a2", "owner:alice")]


def test_cancel_is_a_decline_and_cancel_after_finish_is_refused(env: ConsentEnv) -> None:
    cid = env.campaign_ids["c-platform"]
    with env.client("alice") as alice:
        resp = alice.post(CONFIRM, json={"items": [{"deviceId": "dev-a3", "action": "cancel"}]})
        assert resp.json()["data"]["results"][0]["upgradeStatus"] == "declined"
        details = alice.post(DETAILS, json={"deviceIds": ["dev-a3"]}).json()["data"]["details"]
        assert details[0]["state"] == "declined"
        with store.session_scope(env.engine) as session:
            for status in (
                DeviceRunStatus.QUEUED,
                DeviceRunStatus.SUBMITTED,
                DeviceRunStatus.SUCCEEDED,
            ):
                store.set_device_status(
                    session, campaign_id=cid, status=status, now=NOW, device_ids=["dev-a1"]
                )
        resp = alice.post(CONFIRM, json={"items": [{"deviceId": "dev-a1", "action": "cancel"}]})
        error(resp, 409, "DEVICE_FINISHED")
    assert states(env.engine)["dev-a3"][0] == "declined"
    with store.session_scope(env.engine, read_only=True) as session:
        counts = store.consent_state_counts(session, campaign_id=cid)
        run = store.get_device_run(session, campaign_id=cid, device_id="dev-a3")
    assert counts["declined"] == 1 and counts["auto"] == 1
    assert run is not None and run.status is DeviceRunStatus.PENDING  # not a failure


def test_replayed_cancel_after_the_engine_skipped_the_device(env: ConsentEnv) -> None:
    """Every action is idempotent: a cancel sent again after the engine left the declined
    device out (its run SKIPPED) answers as a replay and writes nothing."""
    cid = env.campaign_ids["c-platform"]
    cancel = {"items": [{"deviceId": "dev-a3", "action": "cancel"}]}
    with env.client("alice") as alice:
        assert alice.post(CONFIRM, json=cancel).json()["data"]["results"][0]["changed"] is True
        with store.session_scope(env.engine) as session:  # what consent_round does
            store.set_device_status(
                session,
                campaign_id=cid,
                status=DeviceRunStatus.SKIPPED,
                now=NOW,
                device_ids=["dev-a3"],
                failure_kind="consent_declined",
            )
        env.clock.at = NOW + H
        resp = alice.post(CONFIRM, json=cancel)
        assert resp.status_code == 200, resp.text
        (result,) = resp.json()["data"]["results"]
        assert (result["changed"], result["state"]) == (False, "declined")
        assert result["upgradeStatus"] == "not_upgraded"
        confirm = {"items": [{"deviceId": "dev-a3", "action": "confirm"}]}
        error(alice.post(CONFIRM, json=confirm), 409, "DEVICE_FINISHED")
    assert consent_events(env.engine) == [("consent.declined", "dev-a3", "owner:alice")]
    assert states(env.engine)["dev-a3"][0] == "declined"


def test_retry_after_failure(env: ConsentEnv) -> None:
    cid = env.campaign_ids["c-platform"]
    item = {"items": [{"deviceId": "dev-a1", "action": "confirm"}]}
    with env.client("alice") as alice:
        alice.post(CONFIRM, json=item)
        with store.session_scope(env.engine) as session:
            for status in (DeviceRunStatus.QUEUED, DeviceRunStatus.SUBMITTED):
                store.set_device_status(
                    session, campaign_id=cid, status=status, now=NOW, device_ids=["dev-a1"]
                )
        cancel = {"items": [{"deviceId": "dev-a1", "action": "cancel"}]}
        error(alice.post(CONFIRM, json=cancel), 409, "DEVICE_UPGRADING")
        env.clock.at = NOW + 2 * H
        with store.session_scope(env.engine) as session:
            store.set_device_status(
                session,
                campaign_id=cid,
                status=DeviceRunStatus.FAILED,
                now=NOW + H,
                device_ids=["dev-a1"],
            )
        assert alice.get(PLAN, params={"deviceId": "dev-a1"}).json()["data"]["consent"][
            "upgradeStatus"
        ] == ("failed")
        retried = alice.post(CONFIRM, json=item).json()["data"]["results"][0]
        replay = alice.post(CONFIRM, json=item).json()["data"]["results"][0]
    assert (retried["changed"], retried["retries"]) == (True, 1)
    assert (replay["changed"], replay["retries"]) == (False, 1)
    assert [k for k, _, _ in consent_events(env.engine)] == ["consent.confirmed", "consent.retry"]


def test_retry_after_the_campaign_completed_until_its_plan_ends(env: ConsentEnv) -> None:
    """The plan stays open until its period ends, after the campaign completed too: a
    failed device can be retried then; a newer campaign holding the device answers in its
    stead; past the period every call on the device is PLAN_ENDED and changes nothing."""
    cid = env.campaign_ids["c-platform"]
    item = {"items": [{"deviceId": "dev-a1", "action": "confirm"}]}
    with env.client("alice") as alice:
        alice.post(CONFIRM, json=item)
        with store.session_scope(env.engine) as session:
            for status in (DeviceRunStatus.QUEUED, DeviceRunStatus.SUBMITTED):
                store.set_device_status(
                    session, campaign_id=cid, status=status, now=NOW, device_ids=["dev-a1"]
                )
            store.set_device_status(
                session,
                campaign_id=cid,
                status=DeviceRunStatus.FAILED,
                now=NOW + H,
                device_ids=["dev-a1"],
            )
            for done in (store.CampaignStatus.RUNNING, store.CampaignStatus.COMPLETED):
                store.set_campaign_status(session, campaign_id=cid, status=done, now=NOW + H)
        env.clock.at = NOW + 2 * H
        plan = alice.get(PLAN, params={"deviceId": "dev-a1"})
        assert plan.status_code == 200, plan.text
        assert plan.json()["data"]["consent"]["upgradeStatus"] == "failed"
        retried = alice.post(CONFIRM, json=item)
        assert retried.status_code == 200, retried.text
        assert retried.json()["data"]["results"][0]["retries"] == 1
        # a newer campaign that holds a device answers in the completed one's stead
        with store.session_scope(env.engine) as session:
            next_id = store.create_or_get_campaign(
                session, name="c-next", spec={"n": "next"}, now=NOW
            ).id
            assert next_id is not None
            store.add_device_runs(
                session, campaign_id=next_id, devices=[store.NewDeviceRun("dev-a2", 0)], now=NOW
            )
            store.open_consent_plan(
                session,
                campaign_id=next_id,
                device_ids=["dev-a2"],
                period_start=NOW,
                period_end=NOW + 3 * H,
                windows=[],
                delivery="platform",
                target_version="3.0.0",
                now=NOW,
            )
        newer = alice.get(PLAN, params={"deviceId": "dev-a2"}).json()["data"]
        assert (newer["campaign"], newer["targetVersion"]) == ("c-next", "3.0.0")
        env.clock.at = PERIOD[1] + H  # both plans are over
        for device in ("dev-a1", "dev-b1"):
            owner = "alice" if device == "dev-a1" else "bob"
            with env.client(owner) as c:
                late = {"items": [{"deviceId": device, "action": "confirm"}]}
                body = error(c.post(CONFIRM, json=late), 409, "PLAN_ENDED")
                assert "c-platform" in body["message"] and device in body["message"]
                error(c.get(PLAN, params={"deviceId": device}), 409, "PLAN_ENDED")
        # c-next still holds dev-a2: its own plan rules answer (its period ended)
        late = {"items": [{"deviceId": "dev-a2", "action": "confirm"}]}
        error(alice.post(CONFIRM, json=late), 409, "PLAN_ENDED")
    assert [k for k, _, _ in consent_events(env.engine)] == ["consent.confirmed", "consent.retry"]


def test_auto_confirm_switch_outlives_campaigns(env: ConsentEnv) -> None:
    get = "/enduserapi/getAutoUpgradeSwitch"
    with env.client("alice") as alice:
        assert alice.get(get, params={"deviceId": "dev-a1"}).json()["data"]["enabled"] is False
        assert alice.get(get, params={"deviceId": "dev-a4"}).json()["data"]["enabled"] is True
        plan = alice.get(PLAN, params={"deviceId": "dev-a4"}).json()["data"]
        assert plan["consent"]["state"] == "auto"
        on = alice.post(
            "/enduserapi/setAutoUpgradeSwitch", json={"deviceId": "dev-free", "enabled": True}
        ).json()["data"]
        assert on == {"deviceId": "dev-free", "enabled": True, "changed": True}
        assert alice.get(get, params={"deviceId": "dev-free"}).json()["data"]["enabled"] is True
        off = alice.post("/enduserapi/deleteDeviceUpgrade", json={"deviceId": "dev-free"})
        assert off.json()["data"]["changed"] is True
        assert alice.get(get, params={"deviceId": "dev-free"}).json()["data"]["enabled"] is False
    # a later campaign offers dev-free with auto on: consented without asking
    with store.session_scope(env.engine) as session:
        store.set_auto_upgrade(session, device_id="dev-free", enabled=True, actor="t", now=NOW)
        later = store.create_or_get_campaign(session, name="c-later", spec={}, now=NOW)
        assert later.id is not None
        store.open_consent_plan(
            session,
            campaign_id=later.id,
            device_ids=["dev-free"],
            period_start=NOW,
            period_end=NOW + timedelta(days=1),
            windows=[],
            delivery="platform",
            target_version="3",
            now=NOW,
        )
    assert states(env.engine)["dev-free"][0] == ConsentState.AUTO.value
    assert ("consent.auto_switch", "dev-free", "owner:alice") in consent_events(env.engine)


def test_app_delivered_device(env: ConsentEnv) -> None:
    report = "/enduserapi/reportUpgradeStatus"
    fetch_plan = "/enduserapi/getFetchPlan"
    with env.client("alice") as alice:
        fetch = alice.get(fetch_plan, params={"deviceId": "ble-a1"}).json()["data"]
        assert (fetch["released"], fetch["package"]) == (False, None)
        error(alice.get(fetch_plan, params={"deviceId": "dev-a1"}), 409, "NOT_APP_DELIVERED")
        early = alice.post(report, json={"deviceId": "ble-a1", "status": "downloading"})
        error(early, 409, "NOT_CONSENTED")
        ok = alice.post(report, json={"deviceId": "ble-a1", "status": "confirmed"})
        assert ok.json()["data"]["state"] == "confirmed"
        error(
            alice.post(report, json={"deviceId": "ble-a1", "status": "downloading"}),
            409,
            "NOT_RELEASED",
        )
        with store.session_scope(env.engine) as session:  # what the engine does in its round
            released = store.release_to_app(
                session, campaign_id=env.campaign_ids["c-app"], device_ids=["ble-a1"], now=NOW
            )
        assert released == 1
        fetch = alice.get(fetch_plan, params={"deviceId": "ble-a1"}).json()["data"]
        assert fetch["released"] is True
        assert fetch["package"] == {
            "url": "https://files.example/fw-2.0.0.bin",
            "sha256": "ab" * 32,
            "size": 1024,
            "version": "2.0.0",
        }
        for status in ("downloading", "installing", "succeeded"):
            resp = alice.post(
                report, json={"deviceId": "ble-a1", "status": status, "version": "2.0.0"}
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["data"]["changed"] is True
        replay = alice.post(report, json={"deviceId": "ble-a1", "status": "succeeded"})
        assert replay.json()["data"]["changed"] is False
        error(
            alice.post(report, json={"deviceId": "ble-a1", "status": "failed"}),
            409,
            "RESULT_ALREADY_FINAL",
        )
        details = alice.post(DETAILS, json={"deviceIds": ["ble-a1"]}).json()["data"]["details"]
        assert details[0]["upgradeStatus"] == "succeeded"
        error(
            alice.post(report, json={"deviceId": "dev-a1", "status": "confirmed"}),
            409,
            "NOT_APP_DELIVERED",
        )
    kinds = [k for k, d, _ in consent_events(env.engine) if d == "ble-a1"]
    assert kinds == ["consent.app_report"] * 4


def test_tokens_never_stored_or_logged_in_clear(
    env: ConsentEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # an earlier CLI test in the same process leaves the fleetwave logger at WARNING
    caplog.set_level(logging.DEBUG, logger="fleetwave")
    token = env.tokens["alice"]
    with env.client("alice") as alice:
        alice.post(CONFIRM, json={"items": [{"deviceId": "dev-a1", "action": "confirm"}]})
        alice.post(CONFIRM, json={"items": [{"deviceId": "dev-b1", "action": "confirm"}]})
    with env.client(None) as anon:
        anon.get(PLAN, params={"deviceId": "dev-a1"}, headers={"Authorization": f"Bearer {token}x"})
    dump = []
    with env.engine.connect() as conn:
        for table in ("consent_owner", "device_owner", "device_consent", "event", "campaign"):
            dump += [repr(tuple(r)) for r in conn.execute(sa.text(f"SELECT * FROM {table}")).all()]
    text = "\n".join(dump)
    assert store.hash_token(token) in text
    assert token not in text and token[4:] not in text
    assert token[4:] not in caplog.text


def test_openapi_lists_every_operation(env: ConsentEnv) -> None:
    with env.client(None) as anon:
        paths = set(anon.get("/openapi.json").json()["paths"])
    assert paths == {
        "/enduserapi/v2/getDeviceUpgradePlan",
        "/enduserapi/v2/userBatchConfirmUpgrade",
        "/enduserapi/v2/getBatchUpgradeDetails",
        "/enduserapi/setAutoUpgradeSwitch",
        "/enduserapi/getAutoUpgradeSwitch",
        "/enduserapi/deleteDeviceUpgrade",
        "/enduserapi/getFetchPlan",
        "/enduserapi/reportUpgradeStatus",
        "/health",  # the one call without a token: which store it serves, as a hash
    }

"""A consent campaign end to end on the IoDM simulator over HTTP, owners answering over real
HTTP through the consent API on the same SQLite store, judged from the platform's side:
the simulator's tasks and subtasks as the IoDM client lists them (confirm, appoint in a
task whose execute window is the appointment, cancel and silence without a task, a retry
after a failure as exactly one more task, auto-confirm), and an app-delivered campaign
that never reaches the platform."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pendulum
import sqlalchemy as sa

from fleetwave import store
from fleetwave.consent.app import ConsentServer, create_consent_app
from fleetwave.engine.runner import OutcomeKind
from fleetwave.platforms.base import DeviceOutcome, ExecuteType, PlatformTask, SubtaskResult
from fleetwave.platforms.iodm import IoDMPlatform
from fleetwave.sim.fleet import Fleet
from fleetwave.sim.linked_clock import SimLinkedClock
from fleetwave.sim.testing import SimHandle, run_simulator
from tests.e2e.engine.helpers import (
    check_exactly_once,
    chunks,
    device_rows,
    events,
    linked,
    new_store,
    run,
    spec_of,
)

D = store.DeviceRunStatus
CONFIRM = "/enduserapi/v2/userBatchConfirmUpgrade"
FLEET = {"devices": 200, "groups": 5, "seed": 3}  # one group per model; meters-berlin first

SPEC = """
name: consent-iodm
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets: {groups: [{name: meters-berlin}]}
waves:
  - percent: 100
policy: {poll_interval: 5m, task_timeout: 2h}
thresholds: {max_failure_percent: 95, min_finished: 50, wave_success_percent: 0}
consent:
  period: 2d
  answer_timeout: 4h
"""


def _online_meters() -> list[str]:
    """The meters-berlin devices that are online and still on 1.4.2, derived from the
    simulator's seed as the simulator derives them (no API call)."""
    fleet = Fleet(FLEET["devices"], FLEET["groups"], FLEET["seed"])
    group = fleet.groups_by_name["meters-berlin"]
    return [
        fleet.device_id(i)
        for i in range(group.start, group.stop)
        if fleet.base_status(i) == "ONLINE" and fleet.base_versions(i)[0] == "1.4.2"
    ]


class Owners:
    """Scripted owners: each device's owner (three owners) with their tokens, answering
    over real HTTP through the consent API at ``url``."""

    def __init__(self, url: str, db: sa.Engine, devices: list[str], now: pendulum.DateTime):
        self.url = url
        self.owners = {d: f"owner-{i % 3}" for i, d in enumerate(devices)}
        with store.session_scope(db) as s:
            store.import_device_owners(s, rows=list(self.owners.items()), now=now)
            self.tokens = {
                o: store.issue_owner_token(s, owner_id=o, now=now)
                for o in sorted(set(self.owners.values()))
            }

    def post(self, device: str, path: str, body: dict[str, Any]) -> httpx.Response:
        token = self.tokens[self.owners[device]]
        with httpx.Client(base_url=self.url, timeout=30) as c:
            return c.post(path, json=body, headers={"Authorization": f"Bearer {token}"})

    def get(self, device: str, path: str) -> httpx.Response:
        token = self.tokens[self.owners[device]]
        with httpx.Client(base_url=self.url, timeout=30) as c:
            return c.get(
                path, params={"deviceId": device}, headers={"Authorization": f"Bearer {token}"}
            )

    def answer(self, devices: list[str], action: str, **extra: str) -> list[dict[str, Any]]:
        """One batch call per owner; the results of every device."""
        by_owner: dict[str, list[str]] = {}
        for d in devices:
            by_owner.setdefault(self.owners[d], []).append(d)
        out: list[dict[str, Any]] = []
        for ids in by_owner.values():
            items = [{"deviceId": d, "action": action, **extra} for d in ids]
            resp = self.post(ids[0], CONFIRM, {"items": items})
            assert resp.status_code == 200, resp.text
            out += resp.json()["data"]["results"]
        return out


@contextmanager
def consent_api(sim: SimHandle, path: Path) -> Iterator[str]:
    """The consent API on the store at ``path`` (its own engine, as a separate server has),
    on the simulator's clock; yields its URL."""
    api_db = store.get_engine(f"sqlite:///{path}")
    clock = SimLinkedClock(sim.base_url)
    server = ConsentServer(create_consent_app(engine=api_db, now=clock.now), "127.0.0.1", 0)
    server.start_in_thread()
    try:
        yield server.url
    finally:
        server.stop()
        clock.close()
        api_db.dispose()


async def platform_view(
    sim: SimHandle,
) -> tuple[list[PlatformTask], dict[str, list[SubtaskResult]]]:
    """Every upgrade task on the simulator and its subtasks, read through the IoDM client."""
    with linked(sim.base_url, sim.app_id, sim.secret) as (clock, settings):
        platform = IoDMPlatform(settings, clock=clock)
        try:
            tasks = [t async for t in platform.list_tasks()]
            subtasks = {
                t.operation_id: [r async for r in platform.subtasks(t.operation_id)] for t in tasks
            }
        finally:
            await platform.aclose()
    return tasks, subtasks


async def test_consent_campaign_on_the_iodm_simulator(tmp_path: Path) -> None:
    online = _online_meters()
    assert len(online) >= 20, online
    auto, declined, appointed, fails, *rest = online
    confirmed = [fails, *rest[:-2]]
    with run_simulator(**FLEET, clock="manual", rate_limit=0, failure_rate=0.0) as sim:
        t0 = sim.clock()
        path = tmp_path / "consent.db"
        db = new_store(path)
        spec = spec_of(SPEC)
        # the owner of the device that will fail; the platform fails every attempt of it
        sim.set_devices(device_ids=[fails], failure_rate=1.0)
        with consent_api(sim, path) as url:
            owners = Owners(url, db, online, t0)
            switched = owners.post(
                auto, "/enduserapi/setAutoUpgradeSwitch", {"deviceId": auto, "enabled": True}
            )
            assert switched.status_code == 200, switched.text

            # run 1: plans and offers; only the auto-confirmed device reaches the platform
            first, _ = await run(spec, db, sim, max_rounds=1)
            assert first.kind is OutcomeKind.STOPPED, first
            planned = {
                d
                for d, r in device_rows(db, spec.name).items()
                if r.wave_index != store.RESOLVE_SKIPPED_WAVE
            }
            # the rest never answer: two online meters, and those the pre-flight kept
            # although the platform cannot reach them (offline, inactive)
            silent = sorted(planned - {auto, declined, appointed, *confirmed})
            assert set(online[-2:]) <= set(silent) and len(silent) > 2, silent
            assert sim.stats()["device_task_counts"] == {auto: 1}

            # the owners answer over HTTP
            start = (t0 + timedelta(hours=3)).replace(second=0, microsecond=0)
            end = start + timedelta(hours=2)
            assert {r["state"] for r in owners.answer(confirmed, "confirm")} == {"confirmed"}
            (booked,) = owners.answer(
                [appointed],
                "appoint",
                appointStart=start.to_iso8601_string(),
                appointEnd=end.to_iso8601_string(),
            )
            assert booked["state"] == "appointed", booked
            assert owners.answer([declined], "cancel")[0]["state"] == "declined"

            # run 2: the confirmed devices go now, the appointed one in its window; one fails
            await run(spec, db, sim, max_rounds=30)
            runs = device_rows(db, spec.name)
            assert runs[fails].status is D.FAILED, runs[fails]
            assert {runs[d].status for d in silent} == {D.PENDING}
            detail = owners.post(
                declined, "/enduserapi/v2/getBatchUpgradeDetails", {"deviceIds": [declined]}
            )
            assert detail.json()["data"]["details"][0]["state"] == "declined", detail.text
            # the owner retries the failed device (the platform now lets it succeed); a
            # replay of the retry changes nothing
            sim.set_devices(device_ids=[fails], failure_rate=None)
            again = owners.answer([fails], "confirm")[0]
            assert (again["changed"], again["retries"]) == (True, 1)
            assert owners.answer([fails], "confirm")[0]["changed"] is False

            # run 3: to the end; the answer timeout passes and the silent devices expire
            last, _ = await run(spec, db, sim)
            assert last.kind is OutcomeKind.COMPLETED, last

        # the platform's side: tasks and subtasks as the IoDM client lists them
        tasks, subtasks = await platform_view(sim)
        per_device: Counter[str] = Counter()
        for t in tasks:
            per_device.update(t.device_ids)
        assert per_device == Counter(sim.stats()["device_task_counts"])
        # declined and silent devices never reached the platform
        assert all(per_device[d] == 0 for d in [declined, *silent])
        # every consenting device has one task; the retried one exactly one more
        assert per_device[fails] == 2
        consenting = [auto, appointed, *confirmed]
        assert {d: per_device[d] for d in consenting if d != fails} == dict.fromkeys(
            [d for d in consenting if d != fails], 1
        )
        assert set(per_device) == set(consenting)
        # the appointed device's task has the appointment as its execute window, holds no
        # device that was not appointed, and the platform ran it inside that window
        (task,) = [t for t in tasks if appointed in t.device_ids]
        assert task.device_ids == (appointed,)
        assert task.policy is not None
        assert task.policy.execute_type is ExecuteType.CUSTOM
        assert (task.policy.start_time, task.policy.end_time) == (start, end)
        (sub,) = subtasks[task.operation_id]
        assert sub.outcome is DeviceOutcome.SUCCEEDED
        assert sub.started_at is not None and sub.stopped_at is not None
        assert start <= sub.started_at <= sub.stopped_at <= end
        # every other task runs now (no window); the failed device failed on its first
        # task and succeeded on the retry's
        others = [t for t in tasks if t is not task]
        assert all(t.policy is None or t.policy.execute_type is ExecuteType.NOW for t in others)
        results = [
            r.outcome
            for t in sorted(others, key=lambda t: t.created_at or t0)
            for r in subtasks[t.operation_id]
            if r.device_id == fails
        ]
        assert results == [DeviceOutcome.FAILED, DeviceOutcome.SUCCEEDED]
        # the store agrees: every platform task is a chunk, one per device and round
        file_ids = {c.file_id for c in chunks(db, spec.name)}
        stats = sim.stats()
        assert check_exactly_once(db, spec.name, stats["tasks"], file_ids) == per_device

    runs = device_rows(db, spec.name)
    for d, kind in [(declined, "consent_declined"), *[(s, "consent_expired") for s in silent]]:
        assert (runs[d].status, runs[d].failure_kind, runs[d].attempt) == (D.SKIPPED, kind, 0)
    assert (runs[fails].status, runs[fails].attempt) == (D.SUCCEEDED, 2)
    # the appointed device succeeded: its task's timeout counts from the window's start,
    # not from its creation hours before it
    assert (runs[appointed].status, runs[appointed].failure_kind) == (D.SUCCEEDED, None)
    assert {runs[d].status for d in consenting} == {D.SUCCEEDED}
    with store.session_scope(db) as s:
        cid = store.get_campaign(s, name=spec.name).id
        assert cid is not None
        counts = store.consent_state_counts(s, campaign_id=cid)
    assert counts == {
        "awaiting": 0,
        "confirmed": len(confirmed),
        "appointed": 1,
        "declined": 1,
        "expired": len(silent),
        "auto": 1,
    }
    kinds = Counter(e.kind for e in events(db, spec.name))
    assert kinds["consent.declined"] == 1 and kinds["consent.retry"] == 1
    assert kinds["consent_expired"] == 1
    db.dispose()


APP = """
name: consent-iodm-app
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets: {groups: [{name: meters-berlin}]}
waves:
  - percent: 100
policy: {poll_interval: 5m, task_timeout: 1h}
thresholds: {max_failure_percent: 95, min_finished: 50, wave_success_percent: 0}
consent:
  period: 1d
  answer_timeout: 3h
  delivery: app
  package_url: https://files.example/wm-1.5.0.bin
  package_sha256: "%s"
""" % ("ab" * 32)


async def test_app_delivered_consent_campaign_never_reaches_the_iodm_simulator(
    tmp_path: Path,
) -> None:
    online = _online_meters()
    ok, failed, silent_app, *_ = online
    with run_simulator(**FLEET, clock="manual", rate_limit=0, failure_rate=0.0) as sim:
        path = tmp_path / "app.db"
        db = new_store(path)
        spec = spec_of(APP)
        with consent_api(sim, path) as url:
            owners = Owners(url, db, online, sim.clock())

            def report(device: str, status: str) -> int:
                body = {"deviceId": device, "status": status, "version": "1.5.0"}
                return owners.post(device, "/enduserapi/reportUpgradeStatus", body).status_code

            await run(spec, db, sim, max_rounds=1)  # plans and offers
            assert {report(d, "confirmed") for d in (ok, failed, silent_app)} == {200}
            await run(spec, db, sim, max_rounds=1)  # released to the apps
            fetch = owners.get(ok, "/enduserapi/getFetchPlan").json()["data"]
            assert fetch["released"] is True and fetch["package"]["sha256"] == "ab" * 32
            assert [report(ok, s) for s in ("downloading", "installing", "succeeded")] == [200] * 3
            assert report(failed, "failed") == 200
            last, _ = await run(spec, db, sim)
            assert last.kind is OutcomeKind.COMPLETED, last
        stats = sim.stats()
        tasks, _ = await platform_view(sim)
    assert tasks == [] and stats["tasks_total"] == 0  # the apps delivered everything
    create = "POST /iodm/northbound/v1.5.0/operations/firmwareUpgrade"
    assert create not in stats["calls"]
    runs = device_rows(db, spec.name)
    never = [
        d
        for d, r in runs.items()
        if r.wave_index != store.RESOLVE_SKIPPED_WAVE and d not in (ok, failed, silent_app)
    ]
    assert (runs[ok].status, runs[ok].current_version) == (D.SUCCEEDED, "1.5.0")
    assert (runs[failed].status, runs[failed].failure_kind) == (D.FAILED, "fail")
    assert (runs[silent_app].status, runs[silent_app].failure_kind) == (D.TIMED_OUT, "timeout")
    assert {(runs[d].status, runs[d].failure_kind) for d in never} == {
        (D.SKIPPED, "consent_expired")
    }
    db.dispose()


CAPPED = SPEC.replace("name: consent-iodm", "name: consent-iodm-capped").replace(
    "policy: {poll_interval: 5m, task_timeout: 2h}",
    "policy: {poll_interval: 5m, task_timeout: 2h, max_inflight_tasks: 1, max_devices_per_task: 4}",
)


async def test_an_appointment_keeps_its_window_under_the_inflight_cap(tmp_path: Path) -> None:
    online = _online_meters()
    appointed, *confirmed = online
    with run_simulator(**FLEET, clock="manual", rate_limit=0, failure_rate=0.0) as sim:
        t0 = sim.clock()
        path = tmp_path / "capped.db"
        db = new_store(path)
        spec = spec_of(CAPPED)
        with consent_api(sim, path) as url:
            owners = Owners(url, db, online, t0)
            await run(spec, db, sim, max_rounds=1)
            start = (t0 + timedelta(minutes=20)).replace(second=0, microsecond=0)
            end = start + timedelta(hours=1)
            owners.answer(confirmed, "confirm")  # 18 tasks of 4, one at a time
            owners.answer(
                [appointed],
                "appoint",
                appointStart=start.to_iso8601_string(),
                appointEnd=end.to_iso8601_string(),
            )
            last, _ = await run(spec, db, sim)
            assert last.kind is OutcomeKind.COMPLETED, last
        tasks, _ = await platform_view(sim)
    (task,) = [t for t in tasks if appointed in t.device_ids]
    assert task.created_at is not None and task.created_at < end, (task.created_at, end)
    assert task.policy is not None and task.policy.execute_type is ExecuteType.CUSTOM
    assert (task.policy.start_time, task.policy.end_time) == (start, end)
    db.dispose()

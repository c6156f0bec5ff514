"""A consent campaign end to end on the in-memory platform, owners answering over real
HTTP through the consent API on the same SQLite store: confirm, appoint (the platform task
carries the appointed window), cancel (a decline, not a failure), retry after a failure,
auto-confirm, and the answer timeout."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pendulum
import pytest
from sqlmodel import select

from fleetwave import store
from fleetwave.clock import ManualClock
from fleetwave.consent.app import ConsentServer, create_consent_app
from fleetwave.engine.runner import Outcome, OutcomeKind, advance
from fleetwave.platforms.base import ExecuteType
from fleetwave.platforms.memory import MemoryConfig, MemoryPlatform
from fleetwave.report import render_markdown
from fleetwave.report.store import load_report
from fleetwave.sim.owners import Behaviour, OwnerPopulation
from tests.e2e.engine.helpers import answer_all, chunks, device_rows, events, new_store, spec_of

D = store.DeviceRunStatus
CONFIRM = "/enduserapi/v2/userBatchConfirmUpgrade"

SPEC = """
name: consent-meters
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets: {groups: [{name: meters-vienna}]}
waves:
  - percent: 100
policy: {poll_interval: 5m, task_timeout: 2h}
thresholds: {max_failure_percent: 95, min_finished: 50, wave_success_percent: 0}
consent:
  period: 2d
  answer_timeout: 4h
"""


def _iso(t: pendulum.DateTime) -> str:
    return t.in_tz("UTC").to_iso8601_string()


async def test_consent_campaign_over_real_http(tmp_path: Path) -> None:
    clock = ManualClock()
    t0 = clock.now()
    platform = MemoryPlatform(MemoryConfig(devices=80, seed=3, failure_rate=0.3), clock=clock)
    db = new_store(tmp_path / "consent.db")
    groups = [g async for g in platform.list_groups(name="meters-vienna")]
    devices = sorted([d async for d in platform.group_members(groups[0].group_id)])
    assert len(devices) >= 8, devices
    auto, declined, appointed, *rest = devices
    silent = rest[-2:]  # never answer
    confirmed = rest[:-2]
    owners = {d: f"owner-{i % 3}" for i, d in enumerate(devices)}
    with store.session_scope(db) as s:
        store.import_device_owners(s, rows=list(owners.items()), now=t0)
        tokens = {o: store.issue_owner_token(s, owner_id=o, now=t0) for o in set(owners.values())}
        store.set_auto_upgrade(s, device_id=auto, enabled=True, actor="owner-x", now=t0)
    api_db = store.get_engine(f"sqlite:///{tmp_path / 'consent.db'}")
    server = ConsentServer(create_consent_app(engine=api_db, now=clock.now), "127.0.0.1", 0)
    server.start_in_thread()

    def answer(device: str, action: str, **extra: str) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            return c.post(
                CONFIRM,
                json={"items": [{"deviceId": device, "action": action, **extra}]},
                headers={"Authorization": f"Bearer {tokens[owners[device]]}"},
            )

    try:
        spec = spec_of(SPEC)
        # run 1: plans and offers; only the auto-confirmed device may go
        first = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=1)
        assert first.kind is OutcomeKind.STOPPED
        assert platform.tasks_per_device() == Counter({auto: 1})
        # owners answer over HTTP
        start = (t0 + timedelta(hours=3)).replace(second=0, microsecond=0)
        end = start + timedelta(hours=2)
        for d in confirmed:
            assert answer(d, "confirm").status_code == 200
        resp = answer(d := appointed, "appoint", appointStart=_iso(start), appointEnd=_iso(end))
        assert resp.status_code == 200, resp.text
        assert answer(declined, "cancel").json()["data"]["results"][0]["state"] == "declined"
        # run 2: the confirmed and the appointed devices are sent; the silent ones wait
        await advance(spec, db=db, platform=platform, clock=clock, max_rounds=30)
        runs = device_rows(db, "consent-meters")
        failed = sorted(d for d in confirmed if runs[d].status is D.FAILED)
        assert failed, "the seeded failure rate should fail at least one confirmed device"
        assert {runs[d].status for d in silent} == {D.PENDING}
        # the owner of a failed device retries; a replay of the retry changes nothing
        retried = failed[0]
        again = answer(retried, "confirm").json()["data"]["results"][0]
        assert (again["changed"], again["retries"]) == (True, 1)
        assert answer(retried, "confirm").json()["data"]["results"][0]["changed"] is False
        # run 3: to the end; the answer timeout passes, the silent devices are skipped
        last = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
        assert last.kind is OutcomeKind.COMPLETED, last
    finally:
        server.stop()
        api_db.dispose()

    runs = device_rows(db, "consent-meters")
    per_device = platform.tasks_per_device()
    # declined and silent devices never reached the platform; they are skipped, not failed
    for d, kind in [(declined, "consent_declined"), *[(s, "consent_expired") for s in silent]]:
        assert per_device[d] == 0
        assert (runs[d].status, runs[d].failure_kind) == (D.SKIPPED, kind)
    # every consenting device was sent once, the retried one twice
    assert per_device[retried] == 2
    assert runs[retried].attempt == 2
    for d in [auto, appointed, *confirmed]:
        if d != retried:
            assert per_device[d] == 1, d
        assert runs[d].status.is_final
    # the appointed device went in a task whose platform window is the appointment
    task = next(t for t in platform.tasks.values() if appointed in t.device_ids)
    assert task.policy.execute_type is ExecuteType.CUSTOM
    assert (task.policy.start_time, task.policy.end_time) == (start, end)
    (chunk,) = [c for c in chunks(db, "consent-meters") if appointed in c.device_ids]
    assert chunk.policy["execute_type"] == "custom"
    # the consent states and the log
    with store.session_scope(db) as s:
        cid = store.get_campaign(s, name="consent-meters").id
        assert cid is not None
        counts = store.consent_state_counts(s, campaign_id=cid)
    assert counts == {
        "awaiting": 0,
        "confirmed": len(confirmed),
        "appointed": 1,
        "declined": 1,
        "expired": 2,
        "auto": 1,
    }
    with store.session_scope(db, read_only=True) as s:
        report = load_report(s, "consent-meters")
    assert dict(report.consent)["declined"] == 1
    assert report.to_json()["consent"]["expired"] == 2
    assert "- consent (apart from outcomes): awaiting 0, confirmed " in render_markdown(report)
    kinds = Counter(e.kind for e in events(db, "consent-meters"))
    assert kinds["consent.confirmed"] == len(confirmed)
    assert kinds["consent.retry"] == 1 and kinds["consent_retries"] >= 1
    assert kinds["consent_expired"] == 1


OPT_OUT = """
name: consent-opt-out
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets: {groups: [{name: meters-vienna}]}
waves:
  - percent: 100
policy: {poll_interval: 5m, task_timeout: 2h}
thresholds: {max_failure_percent: 95, min_finished: 3, wave_success_percent: 0}
consent:
  required: false
  answer_timeout: 1h
  period: 1d
  max_declined_percent: {limit}
"""


async def _opt_out_run(tmp_path: Path, limit: int) -> tuple[Outcome, MemoryPlatform, list[str]]:
    clock = ManualClock()
    platform = MemoryPlatform(MemoryConfig(devices=80, seed=3, failure_rate=0.0), clock=clock)
    db = new_store(tmp_path / f"opt-out-{limit}.db")
    groups = [g async for g in platform.list_groups(name="meters-vienna")]
    devices = sorted([d async for d in platform.group_members(groups[0].group_id)])
    spec = spec_of(OPT_OUT.replace("{limit}", str(limit)))
    await advance(spec, db=db, platform=platform, clock=clock, max_rounds=1)
    owners = {d: "owner" for d in devices}
    with store.session_scope(db) as s:
        store.import_device_owners(s, rows=list(owners.items()), now=clock.now())
        token = store.issue_owner_token(s, owner_id="owner", now=clock.now())
    answer_all(db, clock, token, [{"deviceId": d, "action": "cancel"} for d in devices[:3]])
    outcome = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=500)
    return outcome, platform, devices


async def test_declines_have_their_own_limit(tmp_path: Path) -> None:
    outcome, platform, _ = await _opt_out_run(tmp_path, limit=30)
    assert outcome.kind is OutcomeKind.HALTED
    assert "3 of 3 answering owners declined" in outcome.reason
    assert not platform.tasks  # nothing was sent before the owners' answers tripped it


async def test_without_required_consent_silence_proceeds_at_the_timeout(tmp_path: Path) -> None:
    outcome, platform, devices = await _opt_out_run(tmp_path, limit=100)
    assert outcome.kind is OutcomeKind.COMPLETED
    per_device = platform.tasks_per_device()
    assert all(per_device[d] == 0 for d in devices[:3])  # the declined ones
    assert all(per_device[d] == 1 for d in devices[3:])  # silent: sent after the timeout


APP = """
name: consent-ble
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets: {groups: [{name: meters-vienna}]}
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
""" % ("cd" * 32)


async def test_app_delivered_devices_never_get_a_platform_task(tmp_path: Path) -> None:
    clock = ManualClock()
    platform = MemoryPlatform(MemoryConfig(devices=80, seed=3), clock=clock)
    db = new_store(tmp_path / "ble.db")
    groups = [g async for g in platform.list_groups(name="meters-vienna")]
    devices = sorted([d async for d in platform.group_members(groups[0].group_id)])
    spec = spec_of(APP)
    await advance(spec, db=db, platform=platform, clock=clock, max_rounds=1)
    with store.session_scope(db) as s:
        store.import_device_owners(s, rows=[(d, "owner") for d in devices], now=clock.now())
        token = store.issue_owner_token(s, owner_id="owner", now=clock.now())
    ok, retried, silent_app, *never = devices
    server = ConsentServer(create_consent_app(engine=db, now=clock.now), "127.0.0.1", 0)
    server.start_in_thread()
    client = httpx.Client(
        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    )

    def report(device: str, status: str) -> int:
        resp = client.post(
            "/enduserapi/reportUpgradeStatus", json={"deviceId": device, "status": status}
        )
        return resp.status_code

    async def rounds(n: int) -> None:
        await advance(spec, db=db, platform=platform, clock=clock, max_rounds=n)

    try:
        assert {report(d, "confirmed") for d in (ok, retried, silent_app)} == {200}
        await rounds(1)  # released to the apps
        fetch = client.get("/enduserapi/getFetchPlan", params={"deviceId": ok}).json()["data"]
        assert fetch["package"]["sha256"] == "cd" * 32
        assert [report(ok, s) for s in ("downloading", "succeeded")] == [200, 200]
        assert report(retried, "failed") == 200
        await rounds(1)
        assert device_rows(db, "consent-ble")[retried].status is D.FAILED
        again = client.post(
            CONFIRM, json={"items": [{"deviceId": retried, "action": "confirm"}]}
        ).json()["data"]["results"][0]
        assert (again["changed"], again["retries"]) == (True, 1)
        await rounds(1)  # released again
        assert report(retried, "succeeded") == 200
        last = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=500)
        assert last.kind is OutcomeKind.COMPLETED, last
    finally:
        client.close()
        server.stop()
    runs = device_rows(db, "consent-ble")
    assert not platform.tasks  # the apps installed everything
    assert (runs[ok].status, runs[ok].attempt) == (D.SUCCEEDED, 1)
    assert (runs[retried].status, runs[retried].attempt) == (D.SUCCEEDED, 2)
    assert (runs[silent_app].status, runs[silent_app].failure_kind) == (D.TIMED_OUT, "timeout")
    for d in never:
        assert (runs[d].status, runs[d].failure_kind) == (D.SKIPPED, "consent_expired")


FAIL_ON_TIMEOUT = """
name: consent-fail
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets: {groups: [{name: meters-vienna}]}
waves:
  - percent: 100
policy: {poll_interval: 5m, task_timeout: 2h}
thresholds: {max_failure_percent: {limit}, min_finished: 4, wave_success_percent: 0}
consent:
  period: 1d
  answer_timeout: 2h
  on_timeout: fail
"""


async def _fail_on_timeout_run(
    tmp_path: Path, limit: int
) -> tuple[Outcome, MemoryPlatform, Path, list[str], list[str]]:
    """A consent campaign with ``on_timeout: fail`` on a fleet that never fails: the first
    three quarters of the owners confirm over HTTP, the rest never answer."""
    clock = ManualClock()
    platform = MemoryPlatform(MemoryConfig(devices=80, seed=3, failure_rate=0.0), clock=clock)
    path = tmp_path / f"fail-{limit}.db"
    db = new_store(path)
    groups = [g async for g in platform.list_groups(name="meters-vienna")]
    devices = sorted([d async for d in platform.group_members(groups[0].group_id)])
    spec = spec_of(FAIL_ON_TIMEOUT.replace("{limit}", str(limit)))
    await advance(spec, db=db, platform=platform, clock=clock, max_rounds=1)
    cut = len(devices) * 3 // 4
    confirmed, silent = devices[:cut], devices[cut:]
    assert len(silent) >= 2, devices
    with store.session_scope(db) as s:
        store.import_device_owners(s, rows=[(d, "owner") for d in devices], now=clock.now())
        token = store.issue_owner_token(s, owner_id="owner", now=clock.now())
    answer_all(db, clock, token, [{"deviceId": d, "action": "confirm"} for d in confirmed])
    outcome = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=500)
    return outcome, platform, path, confirmed, silent


async def test_on_timeout_fail_fails_the_silent_devices_without_sending_them(
    tmp_path: Path,
) -> None:
    outcome, platform, path, confirmed, silent = await _fail_on_timeout_run(tmp_path, 95)
    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    db = store.get_engine(f"sqlite:///{path}")
    runs = device_rows(db, "consent-fail")
    per_device = platform.tasks_per_device()
    for d in silent:  # failed, never sent: no task, no chunk, no attempt
        assert per_device[d] == 0
        assert (runs[d].status, runs[d].failure_kind) == (D.FAILED, "consent_expired")
        assert (runs[d].chunk_id, runs[d].attempt) == (None, 0)
    assert {runs[d].status for d in confirmed} == {D.SUCCEEDED}
    assert all(per_device[d] == 1 for d in confirmed)
    with store.session_scope(db, read_only=True) as s:
        report = load_report(s, "consent-fail")
        cid = store.get_campaign(s, name="consent-fail").id
        assert cid is not None
        counts = store.consent_state_counts(s, campaign_id=cid)
    assert report.to_json()["consent"]["expired"] == len(silent) == counts["expired"]
    assert report.totals.failed == len(silent)
    kinds = Counter(e.kind for e in events(db, "consent-fail"))
    assert kinds["consent_expired"] == 1
    db.dispose()


async def test_on_timeout_fail_counts_toward_the_failure_threshold(tmp_path: Path) -> None:
    outcome, platform, _path, _confirmed, silent = await _fail_on_timeout_run(tmp_path, 10)
    assert outcome.kind is OutcomeKind.HALTED, outcome
    assert "failure rate" in outcome.reason
    assert not set(silent) & set(platform.tasks_per_device())  # still never sent


async def test_a_seeded_owner_population_over_real_http(tmp_path: Path) -> None:
    clock = ManualClock()
    platform = MemoryPlatform(MemoryConfig(devices=120, seed=5, failure_rate=0.0), clock=clock)
    db = new_store(tmp_path / "population.db")
    groups = [g async for g in platform.list_groups(name="meters-vienna")]
    devices = sorted([d async for d in platform.group_members(groups[0].group_id)])
    owners = {d: f"owner-{i % 4}" for i, d in enumerate(devices)}
    with store.session_scope(db) as s:
        store.import_device_owners(s, rows=list(owners.items()), now=clock.now())
        tokens = {
            o: store.issue_owner_token(s, owner_id=o, now=clock.now()) for o in set(owners.values())
        }
    server = ConsentServer(create_consent_app(engine=db, now=clock.now), "127.0.0.1", 0)
    server.start_in_thread()
    population = OwnerPopulation(server.url, owners=owners, tokens=tokens, seed=11)
    expected = Counter(population.behaviours.values())
    assert len(expected) >= 4, expected  # the seed gives a real mix
    spec = spec_of(SPEC)
    try:
        await population.switch_auto_on()
        await advance(spec, db=db, platform=platform, clock=clock, max_rounds=1)
        answered = await population.answer(clock.now())
        last = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
    finally:
        server.stop()
    assert last.kind is OutcomeKind.COMPLETED, last
    assert answered == Counter(
        {
            b.value: n
            for b, n in expected.items()
            if b in (Behaviour.CONFIRM, Behaviour.APPOINT, Behaviour.CANCEL)
        }
    )
    assert population.calls["userBatchConfirmUpgrade"] <= len(set(owners.values()))
    with store.session_scope(db) as s:
        cid = store.get_campaign(s, name="consent-meters").id
        assert cid is not None
        counts = store.consent_state_counts(s, campaign_id=cid)
    assert counts == {
        "awaiting": 0,
        "confirmed": expected[Behaviour.CONFIRM],
        "appointed": expected[Behaviour.APPOINT],
        "declined": expected[Behaviour.CANCEL],
        "expired": expected[Behaviour.SILENT],
        "auto": expected[Behaviour.AUTO],
    }
    per_device = platform.tasks_per_device()
    for d, b in population.behaviours.items():
        sent = b not in (Behaviour.CANCEL, Behaviour.SILENT)
        assert per_device[d] == (1 if sent else 0), (d, b)
    appointed = {d for d, b in population.behaviours.items() if b is Behaviour.APPOINT}
    for task in platform.tasks.values():
        custom = task.policy.execute_type is ExecuteType.CUSTOM
        assert custom == bool(appointed & set(task.device_ids))


BOUNDED = """
name: consent-bounded
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets: {groups: [{name: meters-vienna}]}
waves:
  - percent: 100
policy: {poll_interval: 5m, task_timeout: 2h, max_devices_per_task: 2, max_inflight_tasks: 2}
thresholds: {max_failure_percent: 95, min_finished: 50, wave_success_percent: 0}
consent:
  period: 2d
  answer_timeout: 4h
"""


async def test_rounds_read_a_bounded_slice_and_still_send_every_consented_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory is flat in the wave: each round reads at most chunk size x in-flight tasks
    (2 x 2) consented devices from the store and never an unanswered one, yet rounds send
    every consented device exactly once; the silent ones are left out at the timeout."""
    clock = ManualClock()
    platform = MemoryPlatform(MemoryConfig(devices=80, seed=3, failure_rate=0.0), clock=clock)
    db = new_store(tmp_path / "bounded.db")
    groups = [g async for g in platform.list_groups(name="meters-vienna")]
    devices = sorted([d async for d in platform.group_members(groups[0].group_id)])
    confirmed, appointed = devices[::2], devices[1::6]
    silent = sorted(set(devices) - set(confirmed) - set(appointed))
    assert len(confirmed) > 2 * 4 and len(silent) >= 3, (confirmed, silent)
    reads: list[tuple[str, list[str]]] = []

    def spy(name: str) -> Any:
        real = getattr(store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            got = real(*args, **kwargs)
            reads.append((name, [r[0] for r in got]))
            return got

        return call

    for name in ("pending_by_consent", "appointed_pending", "owner_retries"):
        monkeypatch.setattr(store, name, spy(name))

    def unbounded(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a consent round read consent rows by device list")

    monkeypatch.setattr(store, "consent_rows", unbounded)
    spec = spec_of(BOUNDED)
    await advance(spec, db=db, platform=platform, clock=clock, max_rounds=1)
    t0 = clock.now()
    owners = {d: "owner" for d in devices}
    with store.session_scope(db) as s:
        store.import_device_owners(s, rows=list(owners.items()), now=t0)
        token = store.issue_owner_token(s, owner_id="owner", now=t0)
    start = (t0 + timedelta(hours=1)).replace(second=0, microsecond=0)
    slot = {"appointStart": _iso(start), "appointEnd": _iso(start + timedelta(hours=2))}
    items = [{"deviceId": d, "action": "confirm"} for d in confirmed]
    items += [{"deviceId": d, "action": "appoint", **slot} for d in appointed]
    answer_all(db, clock, token, items)
    last = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
    assert last.kind is OutcomeKind.COMPLETED, last
    assert reads and max(len(ids) for _, ids in reads) <= 4
    read = {d for _, ids in reads for d in ids}
    assert read == set(confirmed) | set(appointed)  # the silent ones were never read
    per_device = platform.tasks_per_device()
    assert all(per_device[d] == 1 for d in [*confirmed, *appointed])
    assert all(per_device[d] == 0 for d in silent)
    runs = device_rows(db, "consent-bounded")
    assert {(runs[d].status, runs[d].failure_kind) for d in silent} == {
        (D.SKIPPED, "consent_expired")
    }
    assert {runs[d].status for d in [*confirmed, *appointed]} == {D.SUCCEEDED}


LATE = """
name: consent-late
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets: {groups: [{name: meters-vienna}]}
waves:
  - percent: 50
  - percent: 100
policy: {poll_interval: 5m, task_timeout: 2h}
thresholds: {max_failure_percent: 95, min_finished: 50, wave_success_percent: 0}
consent:
  period: 2d
  answer_timeout: 1h
"""


async def test_an_owner_retries_after_the_campaign_completed(tmp_path: Path) -> None:
    """The plan stays open until its period ends, after the waves too: a retry confirmed
    over HTTP once the campaign completed is recorded, and the campaign's next run sends
    it exactly once and ends completed again; after the period the retry is PLAN_ENDED."""
    clock = ManualClock()
    platform = MemoryPlatform(MemoryConfig(devices=80, seed=3, failure_rate=0.4), clock=clock)
    db = new_store(tmp_path / "late.db")
    groups = [g async for g in platform.list_groups(name="meters-vienna")]
    devices = sorted([d async for d in platform.group_members(groups[0].group_id)])
    spec = spec_of(LATE)
    await advance(spec, db=db, platform=platform, clock=clock, max_rounds=1)
    t0 = clock.now()
    with store.session_scope(db) as s:
        store.import_device_owners(s, rows=[(d, "owner") for d in devices], now=t0)
        token = store.issue_owner_token(s, owner_id="owner", now=t0)
    server = ConsentServer(create_consent_app(engine=db, now=clock.now), "127.0.0.1", 0)
    server.start_in_thread()
    client = httpx.Client(
        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    )

    def confirm(*ids: str) -> httpx.Response:
        items = [{"deviceId": d, "action": "confirm"} for d in ids]
        return client.post(CONFIRM, json={"items": items})

    try:
        assert confirm(*devices).status_code == 200
        done = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
        assert done.kind is OutcomeKind.COMPLETED, done
        runs = device_rows(db, "consent-late")
        failed = sorted(d for d in devices if runs[d].status is D.FAILED)
        assert len(failed) >= 2, "the seeded failure rate should fail two devices"
        late, other = failed[0], failed[-1]
        sent_before = platform.tasks_per_device()
        # the campaign completed; the plan is open: the owner retries over HTTP
        clock.advance(600)
        plan = client.get("/enduserapi/v2/getDeviceUpgradePlan", params={"deviceId": late})
        assert plan.status_code == 200, plan.text
        assert plan.json()["data"]["consent"]["upgradeStatus"] == "failed"
        retried = confirm(late)
        assert retried.status_code == 200, retried.text
        assert (retried.json()["data"]["results"][0]["retries"]) == 1
        assert confirm(late).json()["data"]["results"][0]["changed"] is False  # a replay
        # thresholds tightened since (a mutable field) hold the retry back: nothing is sent
        clock.advance(3600)
        strict = spec_of(LATE.replace("max_failure_percent: 95", "max_failures: 1"))
        held = await advance(strict, db=db, platform=platform, clock=clock, max_rounds=2000)
        assert held.kind is OutcomeKind.HALTED, held
        assert (
            held.reason.startswith("1 owner retry held back: ")
            and "above the limit 1" in held.reason
        )
        assert platform.tasks_per_device() == sent_before
        # the next run (the nightly schedule) under the thresholds that allow it sends it, once
        out = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
        assert out.kind is OutcomeKind.COMPLETED, out
        assert "1 owner retry sent" in out.reason
        per_device = platform.tasks_per_device()
        assert per_device[late] == sent_before[late] + 1 == 2
        assert per_device - Counter({late: 1}) == sent_before  # nothing else was sent
        runs = device_rows(db, "consent-late")
        assert runs[late].attempt == 2 and runs[late].status.is_final
        again = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
        assert (again.kind, again.reason) == (OutcomeKind.COMPLETED, "already completed")
        assert platform.tasks_per_device() == per_device
        # past the plan period a retry is refused with its own code, and nothing changes
        clock.advance(2 * 24 * 3600)
        ended = confirm(other)
        assert ended.status_code == 409, ended.text
        error = ended.json()["error"]
        assert error["code"] == "PLAN_ENDED" and "consent-late" in error["message"]
        late_run = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
        assert late_run.reason == "already completed"
    finally:
        client.close()
        server.stop()
    assert platform.tasks_per_device()[other] == 1
    with store.session_scope(db, read_only=True) as s:
        campaign = store.get_campaign(s, name="consent-late")
        assert campaign.status is store.CampaignStatus.COMPLETED
        claims = s.exec(
            select(store.DeviceClaim).where(store.DeviceClaim.campaign_id == campaign.id)
        ).all()
    assert claims == []  # the retry's claim was released when it finished
    kinds = Counter(e.kind for e in events(db, "consent-late"))
    assert kinds["owner_retries_after_completion"] == 2 and kinds["consent.retry"] == 1
    assert kinds["owner_retries_held"] == 1


async def test_an_owner_retry_after_completion_waits_for_the_campaigns_window(
    tmp_path: Path,
) -> None:
    """A retry confirmed after the campaign completed, outside the campaign's windows, is
    not sent then: the run ends waiting for the next window (status still completed), and
    the run at the window sends it, once."""
    clock = ManualClock()  # 2026-01-05 00:00 UTC
    platform = MemoryPlatform(MemoryConfig(devices=80, seed=3, failure_rate=0.4), clock=clock)
    db = new_store(tmp_path / "late-window.db")
    groups = [g async for g in platform.list_groups(name="meters-vienna")]
    devices = sorted([d async for d in platform.group_members(groups[0].group_id)])
    text = LATE.replace("name: consent-late", "name: consent-late-window")
    text += (
        'windows:\n  timezone: UTC\n  allowed:\n    - {days: daily, start: "01:00", end: "05:00"}\n'
    )
    spec = spec_of(text)
    await advance(spec, db=db, platform=platform, clock=clock, max_rounds=1)
    with store.session_scope(db) as s:
        store.import_device_owners(s, rows=[(d, "owner") for d in devices], now=clock.now())
        token = store.issue_owner_token(s, owner_id="owner", now=clock.now())
    server = ConsentServer(create_consent_app(engine=db, now=clock.now), "127.0.0.1", 0)
    server.start_in_thread()
    client = httpx.Client(
        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    )

    def confirm(*ids: str) -> httpx.Response:
        return client.post(
            CONFIRM, json={"items": [{"deviceId": d, "action": "confirm"} for d in ids]}
        )

    try:
        assert confirm(*devices).status_code == 200
        done = await advance(
            spec, db=db, platform=platform, clock=clock, max_rounds=2000, sleep_through_windows=True
        )
        assert done.kind is OutcomeKind.COMPLETED, done
        runs = device_rows(db, "consent-late-window")
        late = next(d for d in devices if runs[d].status is D.FAILED)
        sent_before = platform.tasks_per_device()
        day = clock.now().start_of("day")
        clock.set(day.add(hours=7))  # after the window closed
        assert confirm(late).status_code == 200
        waiting = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
        assert waiting.kind is OutcomeKind.WAITING_WINDOW, waiting
        assert waiting.next_open == day.add(days=1, hours=1)
        assert platform.tasks_per_device() == sent_before  # nothing sent outside the window
        with store.session_scope(db, read_only=True) as s:
            status = store.get_campaign(s, name="consent-late-window").status
        assert status is store.CampaignStatus.COMPLETED
        clock.set(day.add(days=1, hours=1))
        out = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
        assert out.kind is OutcomeKind.COMPLETED and "1 owner retry sent" in out.reason, out
        assert platform.tasks_per_device() - Counter({late: 1}) == sent_before
        assert platform.tasks_per_device()[late] == 2
    finally:
        client.close()
        server.stop()


async def test_an_appointment_that_ended_unsent_is_skipped_never_sent_after(
    tmp_path: Path,
) -> None:
    """No run during the owner's appointment: the device is not sent after it (that would
    upgrade outside the period the owner chose); it is skipped, not failed, and its
    consent expires (asked again in a later campaign)."""
    clock = ManualClock()
    t0 = clock.now()
    platform = MemoryPlatform(MemoryConfig(devices=40, seed=3, failure_rate=0.0), clock=clock)
    db = new_store(tmp_path / "missed.db")
    groups = [g async for g in platform.list_groups(name="meters-vienna")]
    devices = sorted([d async for d in platform.group_members(groups[0].group_id)])
    appointed, confirmed, *silent = devices
    spec = spec_of(SPEC.replace("name: consent-meters", "name: consent-missed"))
    await advance(spec, db=db, platform=platform, clock=clock, max_rounds=1)
    with store.session_scope(db) as s:
        store.import_device_owners(s, rows=[(d, "owner") for d in devices], now=t0)
        token = store.issue_owner_token(s, owner_id="owner", now=t0)
    start = (t0 + timedelta(hours=1)).replace(second=0, microsecond=0)
    slot = {"appointStart": _iso(start), "appointEnd": _iso(start + timedelta(hours=1))}
    answer_all(
        db,
        clock,
        token,
        [
            {"deviceId": appointed, "action": "appoint", **slot},
            {"deviceId": confirmed, "action": "confirm"},
        ],
    )
    clock.advance(3 * 3600)  # nothing ran during the appointment
    last = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
    assert last.kind is OutcomeKind.COMPLETED, last
    per_device = platform.tasks_per_device()
    assert per_device[appointed] == 0
    assert per_device[confirmed] == 1
    runs = device_rows(db, "consent-missed")
    assert (runs[appointed].status, runs[appointed].failure_kind) == (
        D.SKIPPED,
        "consent_appointment_missed",
    )
    with store.session_scope(db, read_only=True) as s:
        cid = store.get_campaign(s, name="consent-missed").id
        assert cid is not None
        rows = store.consent_rows(s, campaign_id=cid, device_ids=[appointed])
    assert rows[appointed].state is store.ConsentState.EXPIRED
    missed = [e for e in events(db, "consent-missed") if e.kind == "consent_appointment_missed"]
    assert [e.data["count"] for e in missed] == [1]
    assert {runs[d].failure_kind for d in silent} == {"consent_expired"}


async def test_an_owner_retry_whose_appointment_ended_unsent_is_never_sent(
    tmp_path: Path,
) -> None:
    """After the campaign completed, one owner retries with an appointment and no run
    comes during it, another with an appointment still ahead: the next run never sends the
    first after its appointment (its consent expires, the device keeps its failed result,
    one event) and books the second inside its appointment, once."""
    clock = ManualClock()
    platform = MemoryPlatform(MemoryConfig(devices=80, seed=3, failure_rate=0.4), clock=clock)
    db = new_store(tmp_path / "retry-missed.db")
    groups = [g async for g in platform.list_groups(name="meters-vienna")]
    devices = sorted([d async for d in platform.group_members(groups[0].group_id)])
    spec = spec_of(LATE.replace("name: consent-late", "name: consent-retry-missed"))
    await advance(spec, db=db, platform=platform, clock=clock, max_rounds=1)
    with store.session_scope(db) as s:
        store.import_device_owners(s, rows=[(d, "owner") for d in devices], now=clock.now())
        token = store.issue_owner_token(s, owner_id="owner", now=clock.now())
    answer_all(db, clock, token, [{"deviceId": d, "action": "confirm"} for d in devices])
    done = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
    assert done.kind is OutcomeKind.COMPLETED, done
    runs = device_rows(db, "consent-retry-missed")
    missed, booked = sorted(d for d in devices if runs[d].status is D.FAILED)[:2]
    sent_before = platform.tasks_per_device()
    clock.advance(600)  # the owners retry after the failures
    start = (clock.now() + timedelta(hours=1)).replace(second=0, microsecond=0)

    def slot(hours: int) -> dict[str, str]:
        begin = start + timedelta(hours=hours)
        return {"appointStart": _iso(begin), "appointEnd": _iso(begin + timedelta(hours=1))}

    answer_all(
        db,
        clock,
        token,
        [
            {"deviceId": missed, "action": "appoint", **slot(0)},
            {"deviceId": booked, "action": "appoint", **slot(6)},
        ],
    )
    clock.advance(3 * 3600)  # no run during the first appointment
    out = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
    assert out.kind is OutcomeKind.COMPLETED, out
    assert "1 owner retry sent after (1 owner retry not sent: appointment ended)" in out.reason
    per_device = platform.tasks_per_device()
    assert per_device[missed] == sent_before[missed] == 1  # never sent after its appointment
    assert per_device[booked] == 2
    assert per_device - Counter({booked: 1}) == sent_before
    task = [t for t in platform.tasks.values() if booked in t.device_ids][-1]
    assert task.policy.execute_type is ExecuteType.CUSTOM
    assert task.policy.start_time == start + timedelta(hours=6)
    runs = device_rows(db, "consent-retry-missed")
    assert (runs[missed].status, runs[missed].attempt) == (D.FAILED, 1)
    with store.session_scope(db, read_only=True) as s:
        cid = store.get_campaign(s, name="consent-retry-missed").id
        assert cid is not None
        rows = store.consent_rows(s, campaign_id=cid, device_ids=[missed])
    assert rows[missed].state is store.ConsentState.EXPIRED
    kinds = Counter(e.kind for e in events(db, "consent-retry-missed"))
    assert kinds["consent_retry_appointment_missed"] == 1


async def test_a_wave_nobody_answered_says_nothing_was_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No owner answers before the timeout: every device is skipped, and the wave's gate
    says that none was sent (one WARNING line), never "100 % success"."""
    clock = ManualClock()
    platform = MemoryPlatform(MemoryConfig(devices=40, seed=3, failure_rate=0.0), clock=clock)
    db = new_store(tmp_path / "silent.db")
    spec = spec_of(SPEC.replace("name: consent-meters", "name: consent-silent"))
    caplog.set_level("WARNING", logger="fleetwave.engine.waves")
    out = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
    assert out.kind is OutcomeKind.COMPLETED, out
    assert not platform.tasks
    runs = device_rows(db, "consent-silent")
    assert runs and {r.failure_kind for r in runs.values()} == {"consent_expired"}
    lines = [r.getMessage() for r in caplog.records if "sent none" in r.getMessage()]
    assert lines == [
        f"consent-silent: wave 1 sent none of its {len(runs)} devices: all skipped "
        "(declined, no answer, up to date or excluded); no success rate to judge"
    ]
    gates = [e for e in events(db, "consent-silent") if "sent none" in str(e.data)]
    assert gates, "the wave's recorded decision says nothing was sent"
    assert not [e for e in events(db, "consent-silent") if "100.0% success" in str(e.data)]

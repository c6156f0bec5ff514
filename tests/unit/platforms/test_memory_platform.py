"""The in-memory platform's own behaviour beyond the contract: offline devices, faults,
retries, profiles, the push body's errors (no HTTP: nothing is subscribed)."""

from __future__ import annotations

import json

import pendulum
import pytest

from fleetwave.clock import ManualClock
from fleetwave.errors import UserError
from fleetwave.platforms.base import (
    DeviceOutcome,
    ExecuteType,
    PackageKind,
    PushParseError,
    TaskPolicy,
    TaskRef,
    TaskState,
    UpgradeEventKind,
)
from fleetwave.platforms.errors import (
    OutcomeUnknown,
    PlatformUnavailable,
    RequestRejected,
    TargetMismatch,
)
from fleetwave.platforms.memory import MemoryConfig, MemoryPlatform, config_of_profile
from fleetwave.platforms.memory.fleet import Fleet


def _meters(p: MemoryPlatform, n: int) -> list[str]:
    return [d.device_id for d in p.fleet.devices if d.model.model == "WM-200"][:n]


async def _create(p: MemoryPlatform, devices: list[str], policy: TaskPolicy | None = None) -> str:
    return await p.create_upgrade_task(
        kind=PackageKind.FIRMWARE,
        file_id="pkg-meters-fw-1.5.0",
        device_ids=devices,
        policy=policy or TaskPolicy(),
    )


async def _outcomes(p: MemoryPlatform, op: str) -> dict[str, DeviceOutcome]:
    return {r.device_id: r.outcome async for r in p.task_results(op)}


def test_the_same_seed_gives_the_same_fleet() -> None:
    a = MemoryPlatform(MemoryConfig(devices=50, seed=4)).fleet
    b = MemoryPlatform(MemoryConfig(devices=50, seed=4)).fleet
    c = MemoryPlatform(MemoryConfig(devices=50, seed=5)).fleet
    assert [(d.device_id, d.group_id) for d in a.devices] == [
        (d.device_id, d.group_id) for d in b.devices
    ]
    assert [d.device_id for d in a.devices] != [d.device_id for d in c.devices]
    assert sum(len(m) for m in a.members.values()) == 50


async def test_offline_devices_wait_until_they_come_online() -> None:
    clock = ManualClock()
    p = MemoryPlatform(MemoryConfig(devices=60, failure_rate=0.0), clock=clock)
    devices = _meters(p, 4)
    await p.set_online(devices[:2], False)
    op = await _create(p, devices)
    clock.advance(6 * 3600)
    out = await _outcomes(p, op)
    assert [out[d] for d in devices] == [DeviceOutcome.PENDING] * 2 + [DeviceOutcome.SUCCEEDED] * 2
    assert (await p.task_progress([TaskRef(op, PackageKind.FIRMWARE)]))[op].state is (
        TaskState.RUNNING
    )
    await p.set_online(devices[:2], True)
    clock.advance(3600)
    assert set((await _outcomes(p, op)).values()) == {DeviceOutcome.SUCCEEDED}


async def test_an_offline_device_times_out_at_the_window_end() -> None:
    clock = ManualClock()
    p = MemoryPlatform(MemoryConfig(devices=60, failure_rate=0.0), clock=clock)
    devices = _meters(p, 2)
    await p.set_online(devices[:1], False)
    start = clock.now().add(minutes=30)
    end = start.add(minutes=40)
    op = await _create(p, devices, TaskPolicy(ExecuteType.CUSTOM, start, end))
    clock.advance(2 * 3600)
    results = {r.device_id: r async for r in p.task_results(op)}
    offline = results[devices[0]]
    assert offline.outcome is DeviceOutcome.TIMED_OUT
    assert offline.stopped_at == end and offline.detail == "device did not come online"


async def test_timeouts_and_failures_come_in_their_configured_shares() -> None:
    clock = ManualClock()
    p = MemoryPlatform(
        MemoryConfig(devices=400, failure_rate=0.0, timeout_rate=1.0, device_timeout_s=600),
        clock=clock,
    )
    op = await _create(p, _meters(p, 10))
    clock.advance(3600)
    assert set((await _outcomes(p, op)).values()) == {DeviceOutcome.TIMED_OUT}


async def test_retries_give_a_failing_device_more_attempts() -> None:
    clock = ManualClock()
    cfg = MemoryConfig(devices=400, failure_rate=0.6, seed=2)
    once = MemoryPlatform(cfg, clock=clock)
    retried = MemoryPlatform(cfg, clock=clock)
    devices = _meters(once, 60)
    a = await _create(once, devices)
    b = await _create(retried, devices, TaskPolicy(retry_times=5))
    clock.advance(24 * 3600)
    failed_once = sum(o is DeviceOutcome.FAILED for o in (await _outcomes(once, a)).values())
    failed_retried = sum(o is DeviceOutcome.FAILED for o in (await _outcomes(retried, b)).values())
    assert failed_retried < failed_once


async def test_faults_apply_to_the_counted_calls() -> None:
    p = MemoryPlatform(MemoryConfig(devices=60), clock=ManualClock())
    devices = _meters(p, 3)
    p.faults.unavailable = 1
    with pytest.raises(PlatformUnavailable):
        await p.get_package("pkg-meters-fw-1.5.0")
    assert (await p.get_package("pkg-meters-fw-1.5.0")).version == "1.5.0"
    p.faults.create_lost = 1
    with pytest.raises(OutcomeUnknown):
        await _create(p, devices)
    assert p.tasks == {}
    p.faults.create_outcome_unknown = 1
    with pytest.raises(OutcomeUnknown):
        await _create(p, devices)
    assert p.tasks_per_device() == dict.fromkeys(devices, 1)
    assert p.call_counts()["create_upgrade_task"] == 2
    assert p.call_counts()["get_package"] == 2


async def test_bad_tasks_are_refused_before_anything_is_created() -> None:
    p = MemoryPlatform(MemoryConfig(devices=200), clock=ManualClock())
    meters = _meters(p, 2)
    sensor = next(d.device_id for d in p.fleet.devices if d.model.model == "NBS-10")
    with pytest.raises(TargetMismatch, match=sensor):
        await _create(p, [*meters, sensor])
    with pytest.raises(RequestRejected, match="twice"):
        await _create(p, [meters[0], meters[0]])
    with pytest.raises(RequestRejected, match="http"):
        await p.subscribe_upgrade_events(PackageKind.FIRMWARE, "ftp://example.invalid/x")
    assert p.tasks == {}


def test_profiles_name_the_fleet_or_say_what_is_wrong() -> None:
    assert config_of_profile("default") == MemoryConfig()
    assert config_of_profile("devices=50,seed=3,failure_rate=0.5") == MemoryConfig(
        devices=50, seed=3, failure_rate=0.5
    )
    with pytest.raises(UserError, match="'colour=red' is not a known setting"):
        config_of_profile("colour=red")
    with pytest.raises(UserError, match="devices='many' is not a number"):
        config_of_profile("devices=many")
    with pytest.raises(UserError, match="failure_rate must be between 0 and 1"):
        config_of_profile("failure_rate=2")


def _body(**event: object) -> bytes:
    base: dict[str, object] = {
        "type": "result",
        "packageKind": "firmware",
        "deviceId": "meters-1-000001",
        "taskId": "mem-1-000001",
        "at": "2026-01-05T00:10:00+00:00",
        "outcome": "succeeded",
    }
    base.update(event)
    return json.dumps({"source": "memory", "events": [base]}).encode()


def test_parse_push_reads_its_own_shape() -> None:
    clock = ManualClock()
    p = MemoryPlatform(MemoryConfig(devices=10), clock=clock)
    [event] = p.parse_push(_body(currentVersion="1.5.0"))
    assert event.kind is UpgradeEventKind.RESULT and event.outcome is DeviceOutcome.SUCCEEDED
    assert event.reported_at == pendulum.datetime(2026, 1, 5, 0, 10, tz="UTC")
    assert event.received_at == clock.now() and event.current_version == "1.5.0"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not JSON"),
        (json.dumps({"source": "other", "events": []}).encode(), "'source' must be 'memory'"),
        (_body(outcome="running"), "events[0]: a result needs a final outcome"),
        (_body(outcome="exploded"), "events[0]: field 'outcome' is 'exploded'"),
        (_body(deviceId=None), "events[0]: field 'deviceId' is missing"),
        (_body(at="yesterday"), "events[0]: field 'at' is not an ISO-8601 time"),
        (_body(type="step", step=None), "events[0]: field 'step' is missing"),
    ],
)
def test_parse_push_names_what_is_wrong(body: bytes, message: str) -> None:
    p = MemoryPlatform(MemoryConfig(devices=10), clock=ManualClock())
    with pytest.raises(PushParseError) as caught:
        p.parse_push(body)
    assert message in str(caught.value)


async def test_a_hand_built_fleet_holds_only_what_the_test_put_there() -> None:
    fleet = Fleet()
    fleet.add_group("g-1", "meters-a", ["d1", "d2", "ghost"])
    fleet.add_device("d1")
    fleet.add_device("d2", model="WM-300", online=False)
    fleet.add_device("d1", fw_version="1.5.0")  # replaces the first d1, keeps its place
    p = MemoryPlatform(fleet=fleet, clock=ManualClock())
    assert [g.name async for g in p.list_groups()] == ["meters-a"]
    assert [d async for d in p.group_members("g-1")] == ["d1", "d2", "ghost"]
    devices = [(d.device_id, d.model, d.fw_version, d.status) async for d in p.devices()]
    assert devices == [("d1", "WM-200", "1.5.0", "ONLINE"), ("d2", "WM-300", "1.4.2", "OFFLINE")]
    assert [x async for x in p.find_packages()] == []


async def test_a_task_put_there_keeps_its_state_and_shown_version() -> None:
    clock = ManualClock()
    p = MemoryPlatform(fleet=Fleet(), clock=clock)
    p.add_task("other-1", ["x1", "x2"], version=None, state=TaskState.RUNNING)
    p.add_task("other-2", ["x3"], version="1.5.0", state=TaskState.PENDING)
    clock.advance(86_400)  # a day later nothing of theirs has moved
    tasks = {t.operation_id: t async for t in p.list_tasks()}
    assert tasks["other-1"].state is TaskState.RUNNING and tasks["other-1"].file_version is None
    assert tasks["other-1"].device_ids == ("x1", "x2")
    assert tasks["other-2"].state is TaskState.PENDING and tasks["other-2"].file_version == "1.5.0"
    assert [t.operation_id async for t in p.list_tasks(device_id="x3")] == ["other-2"]

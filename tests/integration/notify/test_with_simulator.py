"""End to end over real HTTP: subscribe through the IoDM client, create a task on the
simulator, advance its clock, and see the device runs updated by push alone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from fleetwave import store
from fleetwave.clock import ManualClock
from fleetwave.notify import NotifySettings, PushChannel
from fleetwave.platforms.base import DeviceOutcome, PackageKind, TaskPolicy
from fleetwave.platforms.iodm import IoDMPlatform, IoDMSettings, reset_limiters
from fleetwave.sim.testing import SimHandle, run_simulator
from fleetwave.store import DeviceRunStatus
from tests.integration.notify.conftest import NOW, seed_campaign, statuses

SUBSCRIBE = "POST /iodm/app/sub/v1.1.0/subscribe"


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    reset_limiters()
    with run_simulator(devices=300, groups=4, clock="manual", rate_limit=0) as handle:
        yield handle
    reset_limiters()


def _platform(sim: SimHandle) -> IoDMPlatform:
    return IoDMPlatform(
        IoDMSettings(base_url=sim.base_url, app_id=sim.app_id, secret=sim.secret, rate_limit=0)
    )


def _calls(sim: SimHandle, label: str) -> int:
    return sum(sim.stats(tasks=False)["calls"].get(label, {}).values())


async def test_push_updates_device_runs_from_the_simulator(sim: SimHandle, engine: Engine) -> None:
    platform = _platform(sim)
    clock = ManualClock()
    settings = NotifySettings(flush_ms=20, quiet_after=600)
    try:
        with PushChannel(engine, clock=clock, settings=settings) as channel:
            assert not channel.healthy(clock.now())
            await channel.subscribe_all(platform)
            assert _calls(sim, SUBSCRIBE) == 4
            assert channel.healthy(clock.now())

            groups = [g async for g in platform.list_groups(name="meters-berlin")]
            members = [m async for m in platform.group_members(groups[0].group_id)][:6]
            (package,) = [
                p
                async for p in platform.find_packages(
                    kind=PackageKind.FIRMWARE, model="WM-200", version="1.5.0"
                )
            ]
            sim.set_devices(device_ids=members, connectivity="online", failure_rate=0.0)
            sim.set_devices(device_ids=members[:1], failure_rate=1.0)

            camp, chunk_id = seed_campaign(engine, name="sim", devices=members, operation_id=None)
            op = await platform.create_upgrade_task(
                kind=PackageKind.FIRMWARE,
                file_id=package.file_id,
                device_ids=members,
                policy=TaskPolicy(),
            )
            with store.session_scope(engine) as s:
                store.record_operation_id(s, chunk_id=chunk_id, operation_id=op, now=NOW)

            # the 'downloading' steps are due at once: every device is in progress
            _wait(lambda: set(statuses(engine, camp).values()) == {DeviceRunStatus.IN_PROGRESS})
            sim.advance(3 * 3600)
            clock.advance(3 * 3600)
            _wait(lambda: all(st.is_final for st in statuses(engine, camp).values()))
            assert channel.drain()
            got = statuses(engine, camp)
            assert got[members[0]] is DeviceRunStatus.FAILED
            assert {got[m] for m in members[1:]} == {DeviceRunStatus.SUCCEEDED}
            assert channel.healthy(clock.now(), camp)
            assert channel.last_seen(camp) is not None
            stats = channel.stats()
            assert stats.unauthorized == stats.malformed == stats.errors == 0
            assert stats.accepted == 6 * 5  # four steps and one result per device
            # push alone did it: no subtask page was read; the platform agrees with push
            assert (
                _calls(sim, "GET /iodm/northbound/v1.5.0/operations/{operationId}/subOperations")
                == 0
            )
            subtasks = {s.device_id: s async for s in platform.task_results(op)}
            assert subtasks[members[0]].outcome is DeviceOutcome.FAILED
            with store.session_scope(engine, read_only=True) as s:
                for m in members[1:]:
                    run = store.get_device_run(s, campaign_id=camp, device_id=m)
                    assert run is not None
                    assert subtasks[m].outcome is DeviceOutcome.SUCCEEDED
                    assert run.current_version == "1.5.0"
    finally:
        await platform.aclose()
    assert sim.stats(tasks=False)["notifications"]["failed"] == 0


async def test_push_goes_quiet_when_the_receiver_stops(sim: SimHandle, engine: Engine) -> None:
    platform = _platform(sim)
    clock = ManualClock()
    try:
        channel = PushChannel(engine, clock=clock, settings=NotifySettings(quiet_after=60))
        channel.start()
        await channel.subscribe_all(platform, kinds=[PackageKind.SOFTWARE])
        assert _calls(sim, SUBSCRIBE) == 2
        assert channel.healthy(clock.now())
        channel.stop()
        assert not channel.healthy(clock.now())  # the monitor falls back to normal polling
    finally:
        await platform.aclose()


def _wait(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for push to arrive"
        time.sleep(0.05)

"""Throttling, server errors, dropped connections and broken bodies against the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from fleetwave.clock import ManualClock
from fleetwave.platforms.base import PackageKind, TaskPolicy
from fleetwave.platforms.errors import OutcomeUnknown
from fleetwave.platforms.iodm import IoDMPlatform, MalformedResponse, adapter
from fleetwave.sim.testing import SimHandle, run_simulator

from .conftest import SimClock, endpoint_calls, settings_for

DEVICE = "GET /iocm/app/dm/v1.4.0/devices/{deviceId}"
CREATE = "POST /iodm/northbound/v1.5.0/operations/firmwareUpgrade"
OPS = "/iodm/northbound/v1.5.0/operations"


@pytest.fixture
def throttled_sim() -> Iterator[SimHandle]:
    with run_simulator(devices=200, groups=2, rate_limit=10, clock="manual") as handle:
        yield handle


async def test_throttle_storm_is_ridden_out_with_backoff(throttled_sim: SimHandle) -> None:
    sim = throttled_sim
    # no local budget: the platform's 10/min refuses most of the burst with 1010009
    settings = settings_for(sim, rate_limit=0, max_throttle_retries=30, max_retry_seconds=3600)
    start = sim.clock()
    async with IoDMPlatform(settings, clock=SimClock(sim)) as platform:
        ids = [f"dev-{i:08d}" for i in range(30)]
        devices = await asyncio.gather(*(platform.get_device(d) for d in ids))
    assert [d.device_id for d in devices] == ids
    calls = endpoint_calls(sim, DEVICE)
    assert calls["200"] == 30
    assert calls["403"] > 0  # the storm happened
    assert (sim.clock() - start).total_seconds() >= 120  # 31 calls at 10/min need 3 windows


async def test_local_budget_keeps_the_platform_from_throttling(throttled_sim: SimHandle) -> None:
    # One call after another on the simulator's clock: the limiter spaces them so the
    # platform's per-minute window never overflows. (Concurrent spacing is checked in
    # tests/unit/client/test_limiter.py: a shared test clock cannot order concurrent
    # sleepers against requests still in flight.)
    sim = throttled_sim
    settings = settings_for(sim, rate_limit=10)
    start = sim.clock()
    async with IoDMPlatform(settings, clock=SimClock(sim)) as platform:
        ids = [f"dev-{i:08d}" for i in range(25)]
        devices = [await platform.get_device(d) for d in ids]
        assert [d.device_id for d in devices] == ids
        assert platform.client.limiter.waited_seconds > 0
    calls = sim.stats(tasks=False)["calls"]
    assert all("403" not in by_status for by_status in calls.values()), calls
    assert (sim.clock() - start).total_seconds() >= 120  # 26 calls (login included) / 10 a min


async def test_server_errors_and_drops_lose_or_duplicate_no_page_items(
    sim: SimHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(adapter.PAGE_SIZES, "devices", 20)  # 50 pages instead of 4
    settings = settings_for(sim, rate_limit=0, max_attempts=10)
    async with IoDMPlatform(settings, clock=ManualClock()) as platform:
        clean = [d.device_id async for d in platform.devices()]
        sim.set_faults(error_rate=0.1, drop_rate=0.05, methods=["GET"])
        faulty = [d.device_id async for d in platform.devices()]
    assert len(clean) == 1000
    assert faulty == clean
    calls = endpoint_calls(sim, "GET /iocm/app/dm/v1.4.0/devices")
    assert calls.get("500", 0) > 0
    assert calls.get("dropped", 0) > 0


async def test_malformed_bodies_on_reads_are_retried(
    sim: SimHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(adapter.PAGE_SIZES, "members", 25)
    settings = settings_for(sim, rate_limit=0, max_attempts=10)
    async with IoDMPlatform(settings, clock=ManualClock()) as platform:
        groups = [g async for g in platform.list_groups()]
        group = groups[0]
        clean = [m async for m in platform.group_members(group.group_id)]
        sim.set_faults(malformed_rate=0.3, methods=["GET"])
        faulty = [m async for m in platform.group_members(group.group_id)]
        assert faulty == clean
        assert len(clean) == group.device_count

        sim.set_faults(malformed_rate=1.0, methods=["GET"])
        with pytest.raises(MalformedResponse) as caught:
            await platform.get_device("dev-00000000")
        assert "unreadable JSON" in str(caught.value)
        assert caught.value.path == "/iocm/app/dm/v1.4.0/devices/dev-00000000"


async def _firmware_target(platform: IoDMPlatform) -> tuple[str, list[str]]:
    groups = [g async for g in platform.list_groups()]
    group = groups[0]
    members = [m async for m in platform.group_members(group.group_id)][:3]
    device = await platform.get_device(members[0])
    packages = [
        p
        async for p in platform.find_packages(
            kind=PackageKind.FIRMWARE, model=device.model, device_type=device.device_type
        )
    ]
    newer = [p for p in packages if p.version != device.fw_version]
    return newer[0].file_id, members


@pytest.mark.parametrize(
    "faults",
    [
        {"drop_rate": 1.0, "drop_after_commit": True},  # the task IS created
        {"malformed_rate": 1.0},  # created, but the operationId is unreadable
        {"drop_rate": 1.0, "drop_after_commit": False},  # dropped before it took effect
        {"error_rate": 1.0},  # HTTP 500
    ],
    ids=["drop-after-commit", "malformed", "drop-before-commit", "http-500"],
)
async def test_create_task_with_unknown_outcome_is_never_replayed(
    sim: SimHandle, faults: dict[str, object]
) -> None:
    settings = settings_for(sim, rate_limit=0)
    async with IoDMPlatform(settings, clock=ManualClock()) as platform:
        file_id, devices = await _firmware_target(platform)
        sim.set_faults(methods=["POST"], path_prefix=OPS, count=1, **faults)
        with pytest.raises(OutcomeUnknown) as caught:
            await platform.create_upgrade_task(
                kind=PackageKind.FIRMWARE, file_id=file_id, device_ids=devices, policy=TaskPolicy()
            )
        assert caught.value.method == "POST"
        assert caught.value.path == "/iodm/northbound/v1.5.0/operations/firmwareUpgrade"
        assert "reconcile" in str(caught.value)
        assert platform.call_counts()[CREATE] == 1  # sent once, never replayed
        stats = sim.stats()
        committed = faults.get("drop_after_commit") or "malformed_rate" in faults
        assert len(stats["tasks"]) == (1 if committed else 0)
        # the engine's reconciliation path: the task list by device finds it (or nothing)
        found = [t async for t in platform.list_tasks(device_id=devices[0])]
        assert [t.operation_id for t in found] == [t["operationId"] for t in stats["tasks"]]

"""IoDM task progress against the real simulator: tasks the platform keeps ``processing``
(stale: the engine no longer asks about them) no longer cost list pages every round, and
a task that is not where its memo says is still observed. Calls are counted by the
simulator (``GET /sim/stats``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest

from fleetwave.platforms.base import ExecuteType, PackageKind, TaskPolicy, TaskRef, TaskState
from fleetwave.platforms.iodm import IoDMPlatform
from fleetwave.platforms.iodm.progress import Memo
from fleetwave.sim.linked_clock import SimLinkedClock
from fleetwave.sim.testing import SimHandle, run_simulator
from tests.integration.client.conftest import settings_for

LIST = "GET /iodm/northbound/v1.5.0/operations"
GET = "GET /iodm/northbound/v1.5.0/operations/{operationId}"

STALE, OURS = 120, 8
LENGTH = STALE + OURS


@dataclass
class Fleet:
    sim: SimHandle
    platform: IoDMPlatform
    file_id: str
    stale: list[str]
    ours: list[str]


def _calls(sim: SimHandle) -> dict[str, int]:
    calls = sim.stats(tasks=False)["calls"]
    return {ep: sum(v.values()) for ep, v in calls.items()}


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    """120 stale tasks, then 8 of ours, all ``processing`` for good: each task holds one
    device that finished and one that is offline (``device_online``: it waits for it)."""
    n = 2 * (STALE + OURS)
    with run_simulator(
        devices=n + 50, groups=1, seed=7, clock="manual", rate_limit=0, failure_rate=0.0
    ) as sim:
        clock = SimLinkedClock(sim.base_url)
        platform = IoDMPlatform(settings_for(sim, rate_limit=0), clock=clock)
        try:
            packages = [
                p
                async for p in platform.find_packages(
                    kind=PackageKind.FIRMWARE, device_type="WaterMeter", model="WM-200"
                )
            ]
            package = next(p for p in packages if p.version == "1.5.0")
            devices = []
            async for d in platform.devices(device_type=package.device_type, status="ONLINE"):
                if d.model == package.model and d.fw_version != package.version:
                    devices.append(d.device_id)
                    if len(devices) == n:
                        break
            assert len(devices) == n
            sim.set_devices(device_ids=devices[1::2], connectivity="offline")
            policy = TaskPolicy(execute_type=ExecuteType.DEVICE_ONLINE)
            ops = [
                await platform.create_upgrade_task(
                    kind=package.kind,
                    file_id=package.file_id,
                    device_ids=devices[i : i + 2],
                    policy=policy,
                )
                for i in range(0, n, 2)
            ]
            sim.advance(3600)  # the online devices are done; the offline ones keep waiting
            yield Fleet(sim, platform, package.file_id, ops[:STALE], ops[STALE:])
        finally:
            await platform.aclose()
            clock.close()


def _refs(f: Fleet, ops: Sequence[str], memos: dict[str, str | None]) -> list[TaskRef]:
    return [TaskRef(op, PackageKind.FIRMWARE, memo=memos.get(op), file_id=f.file_id) for op in ops]


async def test_stale_processing_tasks_cost_no_extra_pages(fleet: Fleet) -> None:
    f = fleet
    await f.platform.get_package(f.file_id)  # the verify stage looks the package up first
    memos: dict[str, str | None] = {}
    before = _calls(f.sim)
    seen = await f.platform.task_progress(_refs(f, f.ours, memos))
    first = _calls(f.sim)
    # no memo yet: the whole processing list, 128 tasks in 2 pages
    assert first.get(LIST, 0) - before.get(LIST, 0) == 2
    assert set(seen) == set(f.ours)
    for _ in range(3):
        memos = {op: p.memo for op, p in seen.items()}
        before = _calls(f.sim)
        seen = await f.platform.task_progress(_refs(f, f.ours, memos))
        after = _calls(f.sim)
        # one page holds the window of our 8 tasks; the 120 stale ones are not read
        assert after.get(LIST, 0) - before.get(LIST, 0) == 1
        assert after.get(GET, 0) == before.get(GET, 0)
        assert set(seen) == set(f.ours)
        assert all(p.state is TaskState.RUNNING for p in seen.values())
        assert {Memo.parse(p.memo).index for p in seen.values()} == set(range(STALE, STALE + OURS))


async def test_a_task_not_where_its_memo_says_is_still_observed(fleet: Fleet) -> None:
    """The reference documents no order for the list: a task whose memo places it in the
    window but that the window does not hold (here stale task 20, at position 20) is read
    by itself and reported running, not finished."""
    f = fleet
    await f.platform.get_package(f.file_id)
    moved = f.stale[20]
    memos: dict[str, str | None] = {
        op: f"processing#{STALE + i}/{LENGTH}" for i, op in enumerate(f.ours)
    }
    memos[moved] = f"processing#{STALE + 3}/{LENGTH}"
    before = _calls(f.sim)
    seen = await f.platform.task_progress(_refs(f, [*f.ours, moved], memos))
    after = _calls(f.sim)
    assert after.get(LIST, 0) - before.get(LIST, 0) == 1
    assert after.get(GET, 0) - before.get(GET, 0) == 1
    assert set(seen) == {*f.ours, moved}
    assert seen[moved].state is TaskState.RUNNING
    assert Memo.parse(seen[moved].memo).index is None  # its place is forgotten

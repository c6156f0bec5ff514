"""The platform-side duplicate check as a plain function: the in-memory platform's live tasks
against a real SQLite store, counting the task-list pages it spends."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pendulum
import pytest
import sqlalchemy as sa

from fleetwave import store
from fleetwave.engine.live_tasks import (
    DevicesInLiveTasks,
    LiveTaskCheck,
    find_devices_in_live_tasks,
)
from fleetwave.platforms.base import PackageKind, TaskState
from fleetwave.platforms.memory import MemoryPlatform
from tests.fakes import hand_built_platform

NOW = pendulum.datetime(2026, 1, 5, 22, tz="UTC")
LIST = "list_tasks"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = store.get_engine(f"sqlite:///{tmp_path / 'live.db'}")
    store.upgrade_schema(engine)
    yield engine
    engine.dispose()


def _campaign(db: sa.Engine, devices: list[str], skipped: Sequence[str] = ()) -> int:
    with store.session_scope(db) as s:
        c = store.create_or_get_campaign(s, name="c", spec={"name": "c"}, now=NOW)
        assert c.id is not None
        store.create_waves(
            s, campaign_id=c.id, waves=[store.WavePlan(0, "all", len(devices))], now=NOW
        )
        store.add_device_runs(s, campaign_id=c.id, devices=[(d, 0) for d in devices], now=NOW)
        store.add_skipped_device_runs(
            s, campaign_id=c.id, devices=[(d, "up to date") for d in skipped], now=NOW
        )
        return c.id


def _platform_with_tasks(tasks: int, per_task: int = 100) -> MemoryPlatform:
    """``tasks`` live tasks of version 1.5.0 over devices x00000.. (none of the campaign's)."""
    p = hand_built_platform()
    for t in range(tasks):
        ids = [f"x{t:04d}-{i:03d}" for i in range(per_task)]
        p.add_task(f"live-{t:04d}", ids, version="1.5.0", state=TaskState.RUNNING)
    return p


async def test_overlap_is_found_in_list_pages_not_per_device(db: sa.Engine) -> None:
    # 250 running tasks x 100 devices (25,000 target IDs) plus a few more tasks
    p = _platform_with_tasks(250)
    mine = [f"d{i:05d}" for i in range(3000)]
    p.add_task("wait-1", [mine[5], mine[7], "x-other"], version="1.5.0", state=TaskState.PENDING)
    p.add_task("proc-9", [mine[2999]], version=None)  # a task that does not say its version
    p.add_task("older", [mine[1]], version="1.4.0")  # another version: not ours to judge
    p.add_task("done", [mine[2]], version="1.5.0", state=TaskState.FINISHED)  # finished
    p.add_task("sw", [mine[3]], version="1.5.0", kind=PackageKind.SOFTWARE)  # another kind
    p.add_task("skipped", ["s1"], version="1.5.0", state=TaskState.PENDING)
    cid = _campaign(db, mine, skipped=["s1"])

    check = await find_devices_in_live_tasks(
        p, db, campaign_id=cid, kind=PackageKind.FIRMWARE, version="1.5.0"
    )

    assert dict(check.overlap) == {"proc-9": (mine[2999],), "wait-1": (mine[5], mine[7])}
    assert check.devices == [mine[5], mine[7], mine[2999]]
    assert check.tasks_listed == 254 and check.tasks_of_version == 253
    # one page per page size of live tasks and state: 252 running, 2 pending
    page = p.capabilities.page_sizes["tasks"]
    pages = -(-252 // page) + 1
    assert p.calls[LIST] == pages and check.api_calls == pages
    assert sum(p.calls.values()) == pages  # nothing per device or per task


async def test_no_live_tasks_costs_one_page_per_status(db: sa.Engine) -> None:
    p = hand_built_platform()
    cid = _campaign(db, ["a", "b"])
    check = await find_devices_in_live_tasks(
        p, db, campaign_id=cid, kind=PackageKind.FIRMWARE, version="1.5.0"
    )
    assert check == LiveTaskCheck(api_calls=2)
    assert p.calls[LIST] == 2


async def test_devices_the_campaign_will_not_send_are_not_an_overlap(db: sa.Engine) -> None:
    p = hand_built_platform()
    cid = _campaign(db, ["a", "b", "c"])
    with store.session_scope(db) as s:
        store.set_device_status(
            s, campaign_id=cid, device_ids=["a"], status=store.DeviceRunStatus.SKIPPED, now=NOW
        )
    p.add_task("t1", ["a", "z"], version="1.5.0")
    check = await find_devices_in_live_tasks(
        p, db, campaign_id=cid, kind=PackageKind.FIRMWARE, version="1.5.0"
    )
    assert not check.overlap


def test_the_error_names_devices_and_tasks_on_one_line() -> None:
    check = LiveTaskCheck(
        tasks_listed=3,
        tasks_of_version=2,
        overlap={"op-b": ("d3", "d4", "d5", "d6"), "op-a": ("d1", "d2", "d7")},
    )
    err = DevicesInLiveTasks(
        campaign="fw", connection_key="iodm:h:443/app", version="1.5.0", check=check
    )
    text = str(err)
    assert text.startswith("campaign 'fw': 7 of its devices are already in 2 live task(s)")
    assert "on iodm:h:443/app" in text
    assert "devices d1, d2, d3, d4, d5 (+2 more); tasks op-a, op-b" in text
    assert "wait for those tasks to finish" in text.lower() and "exclude" in text
    assert "\n" not in text
    assert err.exit_code == 2

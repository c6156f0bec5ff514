"""What the engine relies on from every platform, run on each of them (see conftest.py).

Capabilities, package lookup, groups, inventory paging, task creation and lookup by
device, progress, results, windows, reconciliation after OutcomeUnknown, and push.
Time moves only through the driver; no test asserts a timing.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pendulum
import pytest

from fleetwave.platforms.base import (
    DeviceOutcome,
    ExecuteType,
    PackageKind,
    Platform,
    PushParseError,
    SubtaskResult,
    TaskPolicy,
    TaskProgress,
    TaskRef,
    TaskState,
    UpgradeEventKind,
)
from fleetwave.platforms.errors import (
    InvalidPolicy,
    NotFound,
    OutcomeUnknown,
    TooManyTargets,
)
from tests.contract.conftest import Case, target

STEP_S = 120.0  # how far time moves between two reads
MAX_STEPS = 200  # hours of platform time: every task here ends long before


async def _progress(platform: Platform, operation_id: str) -> TaskProgress | None:
    answer = await platform.task_progress([TaskRef(operation_id, PackageKind.FIRMWARE)])
    return answer.get(operation_id)


async def _run_to_end(case: Case, operation_id: str) -> list[TaskProgress]:
    """Advance until the task is absent from progress or finished; every read seen."""
    seen: list[TaskProgress] = []
    for _ in range(MAX_STEPS):
        p = await _progress(case.platform, operation_id)
        if p is None or p.state is TaskState.FINISHED:
            if p is not None:
                seen.append(p)
            return seen
        seen.append(p)
        await case.driver.advance(STEP_S)
    raise AssertionError(f"task {operation_id} still {seen[-1].state} after {MAX_STEPS} steps")


async def _results(platform: Platform, operation_id: str) -> dict[str, SubtaskResult]:
    out: dict[str, SubtaskResult] = {}
    async for r in platform.task_results(operation_id):
        assert r.device_id not in out, f"{r.device_id} reported twice"
        out[r.device_id] = r
    return out


async def _create(
    case: Case, count: int, policy: TaskPolicy | None = None
) -> tuple[str, list[str]]:
    package, devices = await target(case.platform, count)
    op = await case.platform.create_upgrade_task(
        kind=package.kind,
        file_id=package.file_id,
        device_ids=devices,
        policy=policy or TaskPolicy(),
    )
    return op, devices


# -- capabilities --------------------------------------------------------------------------


async def test_capabilities_are_consistent(case: Case) -> None:
    caps = case.platform.capabilities
    assert caps.platform == case.platform.name
    assert caps.max_devices_per_task >= 1
    assert PackageKind.FIRMWARE in caps.package_kinds
    assert ExecuteType.NOW in caps.execute_types
    assert caps.window_granularity > timedelta(0)
    if caps.min_window is not None:
        assert ExecuteType.CUSTOM in caps.execute_types
        assert caps.min_window >= caps.window_granularity
    for name in ("tasks", "task_devices", "group_members", "devices"):
        assert caps.page_sizes[name] >= 1, name
    assert caps.rate_limit_per_minute is None or caps.rate_limit_per_minute >= 1


async def test_a_task_takes_at_most_the_largest_task(case: Case) -> None:
    limit = case.platform.capabilities.max_devices_per_task
    package, devices = await target(case.platform, limit + 1)
    with pytest.raises(TooManyTargets):
        await case.platform.create_upgrade_task(
            kind=package.kind, file_id=package.file_id, device_ids=devices, policy=TaskPolicy()
        )
    assert case.driver.tasks_per_device() == {}
    op = await case.platform.create_upgrade_task(
        kind=package.kind, file_id=package.file_id, device_ids=devices[:limit], policy=TaskPolicy()
    )
    assert set((await case.platform.get_task(op)).device_ids) == set(devices[:limit])


def _window(case: Case, start: pendulum.DateTime, length: timedelta) -> TaskPolicy:
    return TaskPolicy(ExecuteType.CUSTOM, start, start + length)


async def test_a_window_must_be_at_least_the_smallest_window(case: Case) -> None:
    caps = case.platform.capabilities
    if caps.min_window is None:
        pytest.skip(f"{case.name} takes no task windows")
    package, devices = await target(case.platform, 2)
    now = case.driver.now()
    start = now.add(hours=1).replace(minute=0, second=0, microsecond=0)
    with pytest.raises(InvalidPolicy):
        await case.platform.create_upgrade_task(
            kind=package.kind,
            file_id=package.file_id,
            device_ids=devices,
            policy=_window(case, start, caps.min_window - caps.window_granularity),
        )
    assert case.driver.tasks_per_device() == {}
    await case.platform.create_upgrade_task(
        kind=package.kind,
        file_id=package.file_id,
        device_ids=devices,
        policy=_window(case, start, caps.min_window + caps.window_granularity),
    )
    assert case.driver.tasks_per_device() == dict.fromkeys(devices, 1)


# -- packages, groups, inventory -----------------------------------------------------------


async def test_package_lookup(case: Case) -> None:
    package, _ = await target(case.platform, 1)
    assert package.kind is PackageKind.FIRMWARE and package.version == "1.5.0"
    assert await case.platform.get_package(package.file_id) == package
    others = [p async for p in case.platform.find_packages(kind=PackageKind.SOFTWARE)]
    assert others and all(p.kind is PackageKind.SOFTWARE for p in others)
    with pytest.raises(NotFound):
        await case.platform.get_package("no-such-package")


async def test_group_members(case: Case) -> None:
    groups = [g async for g in case.platform.list_groups()]
    assert groups
    seen: set[str] = set()
    for g in groups:
        assert [x.group_id async for x in case.platform.list_groups(name=g.name)] == [g.group_id]
        members = [m async for m in case.platform.group_members(g.group_id)]
        assert len(set(members)) == len(members)
        if g.device_count is not None:
            assert len(members) == g.device_count
        seen.update(members)
    assert seen <= {d.device_id async for d in case.platform.devices()}


async def test_inventory_pages_through_the_whole_fleet(case: Case) -> None:
    before = sum(case.platform.call_counts().values())
    ids = [d.device_id async for d in case.platform.devices()]
    assert len(ids) == len(set(ids)) == case.driver.fleet_size
    assert sum(case.platform.call_counts().values()) - before >= 2  # more than one page
    meters = [d async for d in case.platform.devices(device_type="WaterMeter")]
    assert meters and all(d.device_type == "WaterMeter" for d in meters)
    one = await case.platform.get_device(meters[0].device_id)
    assert one.device_id == meters[0].device_id and one.model == meters[0].model
    with pytest.raises(NotFound):
        await case.platform.get_device("no-such-device")


# -- tasks ---------------------------------------------------------------------------------


async def test_tasks_are_found_by_device(case: Case) -> None:
    op, devices = await _create(case, 5)
    task = await case.platform.get_task(op)
    assert task.operation_id == op and task.kind is PackageKind.FIRMWARE
    assert set(task.device_ids) == set(devices) and task.file_version == "1.5.0"
    for device in devices[:3]:
        found = [
            t async for t in case.platform.list_tasks(kind=PackageKind.FIRMWARE, device_id=device)
        ]
        assert [t.operation_id for t in found] == [op]
        assert set(found[0].device_ids) == set(devices)
    _, others = await target(case.platform, 8)
    stranger = next(d for d in others if d not in devices)
    assert [t async for t in case.platform.list_tasks(device_id=stranger)] == []
    assert case.driver.tasks_per_device() == dict.fromkeys(devices, 1)
    with pytest.raises(NotFound):
        await case.platform.get_task("no-such-task")


async def test_progress_counts_add_up_and_the_task_ends(case: Case) -> None:
    op, devices = await _create(case, 12)
    reads = await _run_to_end(case, op)
    assert reads, "a new task is in the progress answer"
    order = [TaskState.PENDING, TaskState.RUNNING, TaskState.FINISHED]
    for before, after in itertools.pairwise(reads):
        assert order.index(after.state) >= order.index(before.state)
    for p in reads:
        c = p.counts
        assert c.total == len(devices)
        assert c.pending + c.running + c.finished == c.total
        if p.state is TaskState.PENDING:
            assert c.pending == c.total
        if p.state is TaskState.FINISHED:
            assert c.finished == c.total
    assert await _progress(case.platform, "no-such-task") is None


async def test_results_give_one_final_outcome_per_device(case: Case) -> None:
    op, devices = await _create(case, 12)
    reads = await _run_to_end(case, op)
    results = await _results(case.platform, op)
    assert set(results) == set(devices)
    outcomes = {d: r.outcome for d, r in results.items()}
    assert all(o.is_final for o in outcomes.values()), outcomes
    for r in results.values():
        if r.outcome is DeviceOutcome.SUCCEEDED:
            assert r.current_version == "1.5.0"
    if reads and reads[-1].state is TaskState.FINISHED:
        c = reads[-1].counts
        assert c.succeeded == sum(o is DeviceOutcome.SUCCEEDED for o in outcomes.values())
        assert c.finished == len(devices)


async def test_nothing_starts_before_the_window_and_nothing_runs_after_it(case: Case) -> None:
    caps = case.platform.capabilities
    if caps.min_window is None:
        pytest.skip(f"{case.name} takes no task windows")
    now = case.driver.now()
    start = now.add(hours=1).replace(minute=0, second=0, microsecond=0)
    end = start + caps.min_window + timedelta(minutes=5)
    op, devices = await _create(case, 20, TaskPolicy(ExecuteType.CUSTOM, start, end))
    await case.driver.advance((start - now).total_seconds() - 60)  # a minute before it opens
    before = await _progress(case.platform, op)
    assert before is not None and before.state is TaskState.PENDING
    assert before.counts.pending == len(devices)
    await _run_to_end(case, op)
    results = await _results(case.platform, op)
    assert set(results) == set(devices)
    for r in results.values():
        assert r.outcome.is_final
        if r.started_at is not None:
            assert start <= r.started_at < end, r
        if r.stopped_at is not None:
            assert r.stopped_at <= end, r


async def test_reconciliation_finds_the_task_of_a_lost_reply(case: Case) -> None:
    package, devices = await target(case.platform, 7)
    case.driver.lose_next_create_reply()
    with pytest.raises(OutcomeUnknown):
        await case.platform.create_upgrade_task(
            kind=package.kind, file_id=package.file_id, device_ids=devices, policy=TaskPolicy()
        )
    probe = min(devices)
    found = [t async for t in case.platform.list_tasks(kind=package.kind, device_id=probe)]
    assert len(found) == 1
    assert set(found[0].device_ids) == set(devices) and found[0].file_version == package.version
    assert case.driver.tasks_per_device() == dict.fromkeys(devices, 1)


async def test_reconciliation_finds_nothing_after_a_lost_request(case: Case) -> None:
    package, devices = await target(case.platform, 7)
    case.driver.lose_next_create_request()
    with pytest.raises(OutcomeUnknown):
        await case.platform.create_upgrade_task(
            kind=package.kind, file_id=package.file_id, device_ids=devices, policy=TaskPolicy()
        )
    assert [t async for t in case.platform.list_tasks(device_id=min(devices))] == []
    assert case.driver.tasks_per_device() == {}


# -- push ----------------------------------------------------------------------------------


class _Receiver:
    """A small HTTP server that keeps every body posted to it."""

    def __init__(self) -> None:
        bodies: list[bytes] = []
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                with lock:
                    bodies.append(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.bodies = bodies
        self.lock = lock
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/push"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def taken(self) -> list[bytes]:
        with self.lock:
            return list(self.bodies)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


async def test_push_reports_every_result(case: Case, receiver: _Receiver) -> None:
    await case.platform.subscribe_upgrade_events(PackageKind.FIRMWARE, receiver.url)
    op, devices = await _create(case, 10)
    await _run_to_end(case, op)
    results = {d: r.outcome for d, r in (await _results(case.platform, op)).items()}
    pushed: dict[str, DeviceOutcome] = {}
    for _ in range(200):  # the platform posts on its own schedule: wait for it (real time)
        pushed = {}
        for body in receiver.taken():
            for e in case.platform.parse_push(body):
                assert e.package_kind is PackageKind.FIRMWARE
                if e.kind is UpgradeEventKind.RESULT and e.device_id in results:
                    assert e.operation_id in (None, op)
                    assert e.outcome is not None and e.outcome.is_final
                    pushed[e.device_id] = e.outcome
        if len(pushed) == len(devices):
            break
        await asyncio.sleep(0.05)
    assert pushed == results
    with pytest.raises(PushParseError):
        case.platform.parse_push(b"{not json")

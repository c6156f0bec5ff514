"""Exactly-once judged from the platform's side when the store cannot be trusted alone:
a second (empty) store for a campaign in flight, two platforms (or a restarted one)
that hand out the same operationIds to campaigns sharing one store."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from fleetwave import store
from fleetwave.engine.live_tasks import DevicesInLiveTasks
from fleetwave.engine.runner import Outcome, OutcomeKind, advance
from fleetwave.platforms.iodm import IoDMPlatform
from fleetwave.sim.config import SimConfig
from fleetwave.sim.server import SimServer
from fleetwave.sim.testing import SimHandle, run_simulator
from fleetwave.store import ChunkStatus, DeviceRunStatus
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

LIST = "GET /iodm/northbound/v1.5.0/operations"
SKIPPED = DeviceRunStatus.SKIPPED

SPEC = """
name: {name}
kind: firmware
package: {{version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}}
targets:
  groups: [{{name: {group}}}]
waves:
  - percent: 100
policy:
  poll_interval: 1m
  task_timeout: 2h
  max_devices_per_task: 20
  max_inflight_tasks: 4
thresholds: {{max_failure_percent: 50, min_finished: 100, wave_success_percent: 50}}
"""

SIM = {"devices": 600, "groups": 6, "seed": 5, "clock": "manual", "rate_limit": 0}


def _spec(name: str, group: str = "meters-berlin") -> Any:
    return spec_of(SPEC.format(name=name, group=group))


async def _advance(
    sim: SimHandle, db: sa.Engine, spec: Any, **kw: Any
) -> tuple[Any, dict[str, int]]:
    """One run; returns (the outcome or the error it raised, the platform calls it made)."""
    with linked(sim.base_url, sim.app_id, sim.secret) as (clock, settings):
        platform = IoDMPlatform(settings, clock=clock)
        try:
            result: Outcome | Exception = await advance(
                spec, db=db, platform=platform, clock=clock, **kw
            )
        except store.StoreError as exc:  # not UserError: the test must see which one
            result = exc
        except DevicesInLiveTasks as exc:
            result = exc
        finally:
            await platform.aclose()
        return result, dict(platform.call_counts())


def _tasks_per_device(sim: SimHandle) -> Counter[str]:
    per: Counter[str] = Counter()
    for t in sim.stats()["tasks"]:
        per.update(t["devices"])
    return per


async def test_second_empty_store_refuses_devices_in_live_tasks(tmp_path: Path) -> None:
    with run_simulator(**SIM) as sim:
        first_db = new_store(tmp_path / "first.db")
        outcome, _ = await _advance(sim, first_db, _spec("twice"), max_rounds=1)
        assert isinstance(outcome, Outcome) and outcome.tasks_submitted == 4, outcome
        live = {c.operation_id for c in chunks(first_db, "twice")}
        in_flight = sorted(
            d for d, r in device_rows(first_db, "twice").items() if r.chunk_id is not None
        )
        assert len(in_flight) == 80
        tasks_before = sim.stats()["tasks_total"]

        # the same campaign with a new, empty store (another directory, an in-memory URL...)
        second_db = new_store(tmp_path / "second.db")
        refused, calls = await _advance(sim, second_db, _spec("twice"), max_rounds=1)
        stats = sim.stats()

    assert isinstance(refused, DevicesInLiveTasks), refused
    text = str(refused)
    assert "80 of its devices are already in 4 live task(s) of version 1.5.0" in text
    assert in_flight[0] in text and "(+75 more)" in text
    assert sorted(live)[0] in text
    assert "exclude" in text and "\n" not in text
    assert set(refused.check.overlap) == live
    # from the platform's side: nothing new was sent, no device is in two tasks
    assert stats["tasks_total"] == tasks_before
    assert max(_tasks_per_device_from(stats).values()) == 1
    # the check read task-list pages (a wait and a processing page), not a call per device
    assert calls[LIST] == 2
    assert not any("{operationId}" in k or "{deviceId}" in k for k in calls)
    # the plan is discarded and, never planned, the campaign leaves no row behind (as any
    # run that ends before planning): the next run resolves afresh, skipping upgraded devices
    with store.session_scope(second_db, read_only=True) as s:
        assert store.find_campaign(s, name="twice") is None


def _tasks_per_device_from(stats: dict[str, Any]) -> Counter[str]:
    per: Counter[str] = Counter()
    for t in stats["tasks"]:
        per.update(t["devices"])
    return per


async def test_two_platforms_with_the_same_operation_ids_share_one_store(tmp_path: Path) -> None:
    db = new_store(tmp_path / "one.db")
    with run_simulator(**SIM) as sim_a, run_simulator(**SIM) as sim_b:
        a, _ = await run(_spec("on-a", "meters-berlin"), db, sim_a)
        b, _ = await run(_spec("on-b", "meters-lisbon"), db, sim_b)
        tasks_a, tasks_b = sim_a.stats()["tasks"], sim_b.stats()["tasks"]
    assert a.kind is OutcomeKind.COMPLETED, a
    assert b.kind is OutcomeKind.COMPLETED, b
    ops_a = {c.operation_id for c in chunks(db, "on-a")}
    ops_b = {c.operation_id for c in chunks(db, "on-b")}
    assert ops_a & ops_b  # the two platforms really handed out the same ids
    for name, tasks in (("on-a", tasks_a), ("on-b", tasks_b)):
        per_device = check_exactly_once(db, name, tasks, {t["fileId"] for t in tasks})
        sent = {d for d, r in device_rows(db, name).items() if r.status is not SKIPPED}
        assert set(per_device) == sent
        assert set(per_device.values()) == {1}
    keys = {c.connection_key for c in chunks(db, "on-a")} | {
        c.connection_key for c in chunks(db, "on-b")
    }
    assert len(keys) == 2 and all(k.startswith("iodm:127.0.0.1:") for k in keys)


async def test_restarted_platform_reusing_an_operation_id_stops_without_resubmitting(
    tmp_path: Path,
) -> None:
    db = new_store(tmp_path / "one.db")
    config = dataclasses.replace(SimConfig(), **SIM)
    first = SimServer(config, "127.0.0.1", 0)
    first.start_in_thread()
    port = first.port
    sim = SimHandle(first.base_url, config)
    try:
        done, _ = await _advance(sim, db, _spec("before", "meters-berlin"), max_rounds=2000)
        assert isinstance(done, Outcome) and done.kind is OutcomeKind.COMPLETED, done
    finally:
        sim.close()
        first.stop()
    # the platform restarts at the same address with its memory (and id sequence) reset
    second = SimServer(config, "127.0.0.1", port)
    second.start_in_thread()
    sim = SimHandle(second.base_url, config)
    try:
        failed, _ = await _advance(sim, db, _spec("after", "meters-lisbon"))
        tasks_once = sim.stats()["tasks"]
        again, _ = await _advance(sim, db, _spec("after", "meters-lisbon"))
        tasks_twice = sim.stats()["tasks"]
    finally:
        sim.close()
        second.stop()

    for err in (failed, again):
        assert isinstance(err, store.OperationIdCollisionError), err
        assert not isinstance(err, sa.exc.IntegrityError)
    first_op = chunks(db, "before")[0].operation_id
    assert first_op is not None and first_op in str(failed)
    assert "'before'" in str(failed) and "'after'" in str(failed)
    assert f"chunk {chunks(db, 'before')[0].id}" in str(failed)
    # one task on the restarted platform, never a second one for its devices
    assert len(tasks_once) == 1 and tasks_twice == tasks_once
    assert max(_tasks_per_device_from({"tasks": tasks_twice}).values()) == 1
    # the run wrote its first intents together; the collided one is kept, none was sent again
    after = chunks(db, "after")
    assert {c.status for c in after} == {ChunkStatus.INTENT}
    (kept,) = [c for c in after if c.collided_operation_id is not None]
    assert kept.collided_operation_id == first_op
    queued = [r for r in device_rows(db, "after").values() if r.chunk_id == kept.id]
    assert len(queued) == kept.device_count
    assert {r.status for r in queued} == {DeviceRunStatus.QUEUED}
    assert events(db, "after", ["operation_id_collision"])


@pytest.fixture(autouse=True)
def _no_limiter_leak() -> Any:
    from fleetwave.platforms.iodm import reset_limiters

    reset_limiters()
    yield
    reset_limiters()

"""Whole campaigns on the in-memory platform, where the platform is not the point.

The engine runs on a ManualClock shared with the platform; exactly-once is judged from
the platform's side (its own tasks per device), as on the simulator.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fleetwave import store
from fleetwave.clock import ManualClock
from fleetwave.engine.runner import Outcome, OutcomeKind, advance
from fleetwave.platforms.memory import MemoryConfig, MemoryPlatform
from fleetwave.spec import CampaignSpec
from tests.e2e.engine.helpers import (
    Recorder,
    campaign_row,
    check_exactly_once,
    chunks,
    device_rows,
    events,
    new_store,
    spec_of,
    waves,
)

D = store.DeviceRunStatus

METERS = """
name: memory-meters
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets:
  groups: [{name: meters-vienna}, {name: meters-oslo}]
waves:
  - count: 20
  - percent: 30
  - percent: 100
policy:
  poll_interval: 5m
  task_timeout: 1h
  resubmit:
    fail: {rounds: 1, backoff: 10m}
thresholds: {max_failure_percent: 20, min_finished: 20, wave_success_percent: 80}
"""

FLAKY_FW = """
name: memory-flaky-halt
kind: firmware
package:
  {version: "0.2.0", device_type: MultiSensor, model: FLAKY-1, manufacturer_name: Flakeworks}
targets: {groups: [{name: flaky-vienna}]}
waves:
  - count: 10
  - percent: 100
policy: {poll_interval: 5m, task_timeout: 1h, max_devices_per_task: 20}
thresholds: {max_failure_percent: 10, min_finished: 5, on_breach: halt}
"""

FLAKY_SW_ROLLBACK = """
name: memory-flaky-rollback
kind: software
package:
  {version: "0.6.0", device_type: MultiSensor, model: FLAKY-1, manufacturer_name: Flakeworks}
rollback:
  {version: "0.5.0", device_type: MultiSensor, model: FLAKY-1, manufacturer_name: Flakeworks}
targets: {groups: [{name: flaky-vienna}]}
waves:
  - count: 30
  - percent: 100
policy: {poll_interval: 5m, task_timeout: 1h, max_devices_per_task: 10}
thresholds: {max_failure_percent: 30, min_finished: 10, on_breach: rollback}
"""


def _platform(clock: ManualClock, **config: Any) -> MemoryPlatform:
    settings: dict[str, Any] = {"devices": 1200, "seed": 7, "failure_rate": 0.03}
    settings.update(config)
    return MemoryPlatform(MemoryConfig(**settings), clock=clock)


async def _run(
    spec: CampaignSpec,
    db: sa.Engine,
    platform: MemoryPlatform,
    clock: ManualClock,
    recorder: Recorder | None = None,
) -> tuple[Outcome, dict[str, int]]:
    before = Counter(platform.call_counts())
    outcome = await advance(
        spec, db=db, platform=platform, clock=clock, progress=recorder, max_rounds=2000
    )
    return outcome, dict(Counter(platform.call_counts()) - before)


def _exactly_once(db: sa.Engine, name: str, platform: MemoryPlatform) -> Counter[str]:
    """check_exactly_once with the memory platform's own task list as the truth."""
    tasks = [
        {"operationId": t.operation_id, "fileId": t.package.file_id, "devices": t.device_ids}
        for t in platform.tasks.values()
    ]
    file_ids = {c.file_id for c in chunks(db, name)}
    per_device = check_exactly_once(db, name, tasks, file_ids)
    assert per_device == platform.tasks_per_device(file_ids)
    return per_device


async def test_full_campaign_runs_exactly_once_in_the_platforms_chunks(tmp_path: Path) -> None:
    clock = ManualClock()
    platform = _platform(clock)
    db = new_store(tmp_path / "meters.db")
    spec = spec_of(METERS)
    rec = Recorder()
    outcome, calls = await _run(spec, db, platform, clock, rec)

    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    assert campaign_row(db, spec.name).status is store.CampaignStatus.COMPLETED
    assert [w.status for w in waves(db, spec.name)] == [store.WaveStatus.SUCCEEDED] * 3
    rows = device_rows(db, spec.name)
    members = set(platform.fleet.members["grp-0001"]) | set(platform.fleet.members["grp-0002"])
    assert set(rows) == members
    assert {r.status for r in rows.values()} <= {D.SUCCEEDED, D.FAILED, D.TIMED_OUT}
    # the engine sizes tasks by the platform's limit (100 here), not by IoDM's 256
    sent = [c for c in chunks(db, spec.name) if c.operation_id]
    assert max(c.device_count for c in sent) == platform.capabilities.max_devices_per_task
    per_device = _exactly_once(db, spec.name, platform)
    assert set(per_device) == set(rows)
    assert all(per_device[d] == rows[d].attempt for d in rows)
    assert calls["create_upgrade_task"] == len(sent)
    # the platform agrees: the succeeded devices run the new firmware
    ok = [d for d, r in rows.items() if r.status is D.SUCCEEDED]
    assert ok and {platform.fleet.by_id[d].fw_version for d in ok} == {"1.5.0"}
    assert rec.events[-1].kind == "outcome"

    again, calls2 = await _run(spec, db, platform, clock)
    assert again.kind is OutcomeKind.COMPLETED and sum(calls2.values()) == 0


async def test_threshold_halts_the_canary(tmp_path: Path) -> None:
    clock = ManualClock()
    platform = _platform(clock)
    db = new_store(tmp_path / "halt.db")
    spec = spec_of(FLAKY_FW)
    outcome, _ = await _run(spec, db, platform, clock)

    assert outcome.kind is OutcomeKind.HALTED, outcome
    assert "failure rate" in outcome.reason
    breach = events(db, spec.name, ["threshold_breach"])
    assert len(breach) == 1 and breach[0].data["verdict"] == "halt"
    assert {c.wave_index for c in chunks(db, spec.name)} == {0}
    rows = device_rows(db, spec.name)
    assert {r.status for r in rows.values() if r.wave_index == 1} == {D.PENDING}
    per_device = _exactly_once(db, spec.name, platform)
    assert len(per_device) == 10  # the canary only

    again, calls = await _run(spec, db, platform, clock)
    assert again.kind is OutcomeKind.HALTED and sum(calls.values()) == 0
    assert platform.tasks_per_device() == per_device


async def test_rollback_after_breach_restores_the_old_version(tmp_path: Path) -> None:
    clock = ManualClock()
    platform = _platform(clock)
    db = new_store(tmp_path / "rb.db")
    spec = spec_of(FLAKY_SW_ROLLBACK)
    rec = Recorder()
    outcome, _ = await _run(spec, db, platform, clock, rec)

    assert outcome.kind is OutcomeKind.ROLLED_BACK, outcome
    rows = device_rows(db, spec.name)
    statuses = {r.status for r in rows.values()}
    assert D.SUCCEEDED not in statuses and D.ROLLED_BACK in statuses
    all_chunks = chunks(db, spec.name)
    rollback = [c for c in all_chunks if c.kind is store.ChunkKind.ROLLBACK]
    rolled = {d for c in rollback for d in c.device_ids}
    assert rolled == {d for d, r in rows.items() if r.status in (D.ROLLED_BACK, D.ROLLBACK_FAILED)}
    _exactly_once(db, spec.name, platform)
    # each device got at most one upgrade and one rollback task
    upgrade_file = next(c.file_id for c in all_chunks if c.kind is store.ChunkKind.UPGRADE)
    rollback_file = rollback[0].file_id
    assert max(platform.tasks_per_device({upgrade_file}).values()) == 1
    assert max(platform.tasks_per_device({rollback_file}).values()) == 1
    back = [d for d, r in rows.items() if r.status is D.ROLLED_BACK]
    assert {platform.fleet.by_id[d].sw_version for d in back} == {"0.5.0"}
    assert any(e.phase == "rollback" and e.kind == "round" for e in rec.events)


async def test_a_lost_create_reply_is_reconciled_not_resent(tmp_path: Path) -> None:
    clock = ManualClock()
    platform = _platform(clock, failure_rate=0.0)
    platform.faults.create_outcome_unknown = 1  # the first task is created, its reply lost
    db = new_store(tmp_path / "lost.db")
    spec = spec_of(METERS.replace("memory-meters", "memory-lost-reply"))
    outcome, _ = await _run(spec, db, platform, clock)
    for _ in range(3):  # the next run reconciles the intent, if this one did not
        if outcome.kind is OutcomeKind.COMPLETED:
            break
        outcome, _ = await _run(spec, db, platform, clock)

    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    assert events(db, spec.name, ["chunk_reconciled"])
    per_device = _exactly_once(db, spec.name, platform)
    assert set(per_device.values()) == {1}


HALT_CANCELS = """
name: memory-halt-cancels
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets: {groups: [{name: meters-vienna}]}
waves:
  - percent: 100
policy: {poll_interval: 5m, task_timeout: 6h, max_devices_per_task: 10}
"""


async def test_an_operator_halt_cancels_the_tasks_that_have_not_started(tmp_path: Path) -> None:
    from fleetwave.engine.control import halt_campaign
    from fleetwave.platforms.base import DeviceOutcome, TaskState

    clock = ManualClock()
    platform = _platform(clock, failure_rate=0.0)
    (group,) = [g for g in platform.fleet.groups if g.name == "meters-vienna"]
    members = platform.fleet.members[group.group_id]
    late = members[: len(members) // 2]  # offline: their tasks cannot start
    await platform.set_online(late, False)
    db = new_store(tmp_path / "halt.db")
    spec = spec_of(HALT_CANCELS)

    def halt_after_submitting(event: Any) -> None:
        if event.kind == "submitted":
            halt_campaign(db, name=spec.name, by="test", reason="stop", now=clock.now())

    outcome = await advance(
        spec, db=db, platform=platform, clock=clock, progress=halt_after_submitting
    )
    assert outcome.kind is OutcomeKind.HALTED, outcome
    ops = [c.operation_id for c in chunks(db, spec.name) if c.operation_id]
    assert ops
    cancelled = [op for op in ops if platform.tasks[op].state is TaskState.FINISHED]
    assert cancelled, "the tasks were halted before they started"
    for op in cancelled:
        assert {p.state for p in platform.tasks[op].parts} == {DeviceOutcome.CANCELLED}
    (done,) = [e for e in events(db, spec.name, ["tasks_cancelled"])]
    assert sorted(done.data["cancelled"]) == sorted(cancelled)
    decision = [e for e in events(db, spec.name, ["decision"]) if "cancel" in e.data["inputs"]]
    assert decision and decision[-1].data["inputs"]["cancel"] == done.data["cancelled"]

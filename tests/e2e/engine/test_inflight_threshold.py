"""Thresholds count failures the task list already shows, before the task has finished.

A FLAKY-1 canary of 20 devices in one task on the in-memory platform, one of them offline
for good: its task stays running for the whole timeout, yet the threshold must trip from
the per-task counts of the monitoring rounds, long before.
"""

from __future__ import annotations

from pathlib import Path

import pendulum

from fleetwave import store
from fleetwave.engine.runner import OutcomeKind
from tests.e2e.engine.helpers import (
    chunks,
    device_rows,
    events,
    memory_platform,
    new_store,
    run_memory,
    spec_of,
)

D = store.DeviceRunStatus

CANARY = """
name: flaky-inflight
kind: firmware
package:
  {{version: "0.2.0", device_type: MultiSensor, model: FLAKY-1, manufacturer_name: Flakeworks}}
targets: {{devices: [{devices}]}}
waves:
  - {{name: canary, count: 20}}
  - percent: 100
policy: {{execute: now, poll_interval: 1m, task_timeout: 2h}}
thresholds: {{max_failure_percent: 20, min_finished: 10, on_breach: halt}}
"""


async def test_canary_trips_on_polled_failures_before_its_task_times_out(
    tmp_path: Path,
) -> None:
    platform = memory_platform(seed=5)
    (group,) = [g for g in platform.fleet.groups if g.name == "flaky-vienna"]
    devices = platform.fleet.members[group.group_id][:20]
    assert len(devices) == 20
    stuck = devices[0]
    # offline for good: its part waits, so the task runs until its 2 h timeout
    await platform.set_online([stuck], False)
    db = new_store(tmp_path / "inflight.db")
    spec = spec_of(CANARY.format(devices=", ".join(devices)))

    outcome, _ = await run_memory(spec, db, platform)

    assert outcome.kind is OutcomeKind.HALTED, outcome
    (canary_task,) = [c for c in chunks(db, spec.name) if c.operation_id]
    assert stuck in canary_task.device_ids
    submitted = pendulum.instance(canary_task.submitted_at)
    (breach,) = events(db, spec.name, ["threshold_breach"])
    tripped = pendulum.instance(breach.at)
    # campaign time: long before the task timeout (2 h), while the task still runs
    assert (tripped - submitted).total_seconds() < 3600
    assert canary_task.status is store.ChunkStatus.SUBMITTED
    assert device_rows(db, spec.name)[stuck].status in (D.SUBMITTED, D.IN_PROGRESS)
    # the decision records both parts of its counts: stored results and polled ones
    inputs = breach.data["inputs"]
    parts = inputs["parts"]
    assert parts["in_flight"]["failed"] > 0
    assert inputs["failed"] == parts["recorded"]["failed"] + parts["in_flight"]["failed"]
    assert inputs["finished"] >= 10

"""Thresholds count failures the task list already shows, before the task has finished.

A FLAKY-1 canary of 20 devices in one platform task, one of them a sleeper that never
wakes within the task timeout: its task stays running for the whole timeout, yet the
threshold must trip from the per-task statistics of the monitoring rounds, long before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pendulum
import pytest

from fleetwave import store
from fleetwave.engine.runner import OutcomeKind
from fleetwave.platforms.iodm import IoDMPlatform
from fleetwave.sim.testing import SimHandle, run_simulator
from tests.e2e.engine.helpers import chunks, device_rows, events, linked, new_store, run, spec_of

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


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_simulator(devices=3000, groups=8, seed=5, clock="manual", rate_limit=0) as handle:
        yield handle


async def _flaky_devices(sim: SimHandle, n: int) -> list[str]:
    with linked(sim.base_url, sim.app_id, sim.secret) as (clock, settings):
        platform = IoDMPlatform(settings, clock=clock)
        try:
            (group,) = [g async for g in platform.list_groups(name="flaky-vienna")]
            out: list[str] = []
            async for device_id in platform.group_members(group.group_id):
                out.append(device_id)
                if len(out) == n:
                    break
            return out
        finally:
            await platform.aclose()


async def test_canary_trips_on_polled_failures_before_its_task_times_out(
    sim: SimHandle, tmp_path: Path
) -> None:
    devices = await _flaky_devices(sim, 20)
    assert len(devices) == 20
    stuck = devices[0]
    # asleep for weeks: its subtask waits, so the task runs until its 2 h timeout
    sim.set_devices(device_ids=[stuck], connectivity="sleeper", wake_minutes=100_000)
    db = new_store(tmp_path / "inflight.db")
    spec = spec_of(CANARY.format(devices=", ".join(devices)))

    outcome, _ = await run(spec, db, sim)

    assert outcome.kind is OutcomeKind.HALTED, outcome
    (canary_task,) = [c for c in chunks(db, spec.name) if c.operation_id]
    assert stuck in canary_task.device_ids
    submitted = pendulum.instance(canary_task.submitted_at)
    (breach,) = events(db, spec.name, ["threshold_breach"])
    tripped = pendulum.instance(breach.at)
    # simulated time: long before the task timeout (2 h), while the task still runs
    assert (tripped - submitted).total_seconds() < 3600
    assert canary_task.status is store.ChunkStatus.SUBMITTED
    assert device_rows(db, spec.name)[stuck].status in (D.SUBMITTED, D.IN_PROGRESS)
    # the decision records both parts of its counts: stored results and polled ones
    inputs = breach.data["inputs"]
    parts = inputs["parts"]
    assert parts["in_flight"]["failed"] > 0
    assert inputs["failed"] == parts["recorded"]["failed"] + parts["in_flight"]["failed"]
    assert inputs["finished"] >= 10

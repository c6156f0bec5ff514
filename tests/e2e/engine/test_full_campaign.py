"""A full campaign of a few thousand devices against the simulator on a manual clock."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwave import store
from fleetwave.engine.runner import OutcomeKind
from fleetwave.sim.testing import SimHandle, run_simulator
from tests.e2e.engine.helpers import (
    Recorder,
    campaign_row,
    check_exactly_once,
    chunks,
    device_rows,
    events,
    new_store,
    run,
    spec_of,
    waves,
)

SUBTASKS = "GET /iodm/northbound/v1.5.0/operations/{operationId}/subOperations"
CREATE = "POST /iodm/northbound/v1.5.0/operations/firmwareUpgrade"

FULL = """
name: full-meters
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
rollback: {version: "1.4.2", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets:
  groups: [{name: meters-berlin}, {name: meters-lisbon}]
waves:
  - count: 50
  - percent: 30
  - percent: 100
policy:
  poll_interval: 5m
  task_timeout: 1h
  max_inflight_tasks: 8
  resubmit:
    fail: {rounds: 1, backoff: 10m}
thresholds: {max_failure_percent: 20, min_finished: 20, wave_success_percent: 80}
"""


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_simulator(devices=6000, groups=8, seed=3, clock="manual", rate_limit=0) as handle:
        yield handle


async def test_full_campaign_of_thousands_of_devices(sim: SimHandle, tmp_path: Path) -> None:
    db = new_store(tmp_path / "full.db")
    spec = spec_of(FULL)
    rec = Recorder()
    outcome, calls = await run(spec, db, sim, recorder=rec)

    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    assert campaign_row(db, spec.name).status is store.CampaignStatus.COMPLETED
    every = device_rows(db, spec.name)
    # devices the pre-flight skipped are SKIPPED rows with their reason, in no wave
    skipped = {d: r for d, r in every.items() if r.status is store.DeviceRunStatus.SKIPPED}
    assert skipped, "the simulated fleet has devices the pre-flight skips"
    assert all(
        r.wave_index == store.RESOLVE_SKIPPED_WAVE and r.failure_detail for r in skipped.values()
    )
    planned = next(e for e in events(db, spec.name, ["planned"]))
    assert len(skipped) == sum(planned.data["skipped"].values())
    rows = {d: r for d, r in every.items() if d not in skipped}
    assert len(rows) > 2000  # both meter groups, minus devices skipped by the pre-flight
    final = {
        store.DeviceRunStatus.SUCCEEDED,
        store.DeviceRunStatus.FAILED,
        store.DeviceRunStatus.TIMED_OUT,
    }
    assert {r.status for r in rows.values()} <= final
    succeeded = sum(r.status is store.DeviceRunStatus.SUCCEEDED for r in rows.values())
    assert succeeded / len(rows) > 0.9
    assert [w.status for w in waves(db, spec.name)] == [store.WaveStatus.SUCCEEDED] * 3
    assert waves(db, spec.name)[0].planned_size == 50

    # exactly once: every platform task is a recorded chunk; no device twice in a round
    stats = sim.stats()
    file_ids = {c.file_id for c in chunks(db, spec.name)}
    per_device = check_exactly_once(db, spec.name, stats["tasks"], file_ids)
    assert set(per_device) == set(rows)
    retried = {d for d, r in rows.items() if r.attempt > 1}
    assert all(per_device[d] == rows[d].attempt for d in rows)
    assert retried, "the simulator's failures should have caused resubmissions"

    # the API budget: one create per chunk, each finished task's subtasks read once
    done = [c for c in chunks(db, spec.name) if c.operation_id]
    assert calls[CREATE] == len(done)
    lower = sum(math.ceil(c.device_count / 100) for c in done)
    assert lower <= calls[SUBTASKS] <= lower + len(done)
    assert sum(calls.values()) < 3 * (len(done) + lower) + 10 * outcome.tasks_submitted + 200

    # decisions are in the event log with their inputs
    decisions = [e.data for e in events(db, spec.name, ["decision"])]
    gates = [d for d in decisions if d["decision"] == "wave_gate"]
    assert [g["verdict"] for g in gates] == ["proceed"] * 3
    assert all("success_rate" in g["inputs"] for g in gates)
    assert any(d["decision"] == "failure_threshold" for d in decisions)
    assert any(d["decision"] == "resubmission" for d in decisions)
    assert rec.kinds()["round"] > 3 and rec.events[-1].kind == "outcome"

    # a second run has nothing left to do and sends nothing
    again, calls2 = await run(spec, db, sim)
    assert again.kind is OutcomeKind.COMPLETED and sum(calls2.values()) == 0

"""Whole campaigns on the in-memory platform, where the platform is not the point (halts
and rollbacks: test_halt_rollback.py).

The engine runs on a ManualClock shared with the platform; exactly-once is judged from
the platform's side (its own tasks per device), as on the simulator.
"""

from __future__ import annotations

from pathlib import Path

from fleetwave import store
from fleetwave.engine.runner import OutcomeKind
from tests.e2e.engine.helpers import (
    Recorder,
    campaign_row,
    chunks,
    device_rows,
    events,
    memory_exactly_once,
    memory_platform,
    new_store,
    run_memory,
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


async def test_full_campaign_runs_exactly_once_in_the_platforms_chunks(tmp_path: Path) -> None:
    platform = memory_platform()
    db = new_store(tmp_path / "meters.db")
    spec = spec_of(METERS)
    rec = Recorder()
    outcome, calls = await run_memory(spec, db, platform, recorder=rec)

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
    per_device = memory_exactly_once(db, spec.name, platform)
    assert set(per_device) == set(rows)
    assert all(per_device[d] == rows[d].attempt for d in rows)
    assert calls["create_upgrade_task"] == len(sent)
    # the platform agrees: the succeeded devices run the new firmware
    ok = [d for d, r in rows.items() if r.status is D.SUCCEEDED]
    assert ok and {platform.fleet.by_id[d].fw_version for d in ok} == {"1.5.0"}
    assert rec.events[-1].kind == "outcome"

    again, calls2 = await run_memory(spec, db, platform)
    assert again.kind is OutcomeKind.COMPLETED and sum(calls2.values()) == 0


async def test_a_lost_create_reply_is_reconciled_not_resent(tmp_path: Path) -> None:
    platform = memory_platform(failure_rate=0.0)
    platform.faults.create_outcome_unknown = 1  # the first task is created, its reply lost
    db = new_store(tmp_path / "lost.db")
    spec = spec_of(METERS.replace("memory-meters", "memory-lost-reply"))
    outcome, _ = await run_memory(spec, db, platform)
    for _ in range(3):  # the next run reconciles the intent, if this one did not
        if outcome.kind is OutcomeKind.COMPLETED:
            break
        outcome, _ = await run_memory(spec, db, platform)

    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    assert events(db, spec.name, ["chunk_reconciled"])
    per_device = memory_exactly_once(db, spec.name, platform)
    assert set(per_device.values()) == {1}

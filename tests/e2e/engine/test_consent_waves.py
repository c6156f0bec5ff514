"""Waves of a consent campaign count consenting devices (a decline is not a failure at a
wave's gate, unless the spec says declines count), and appointed devices go in tasks
batched by appointment, each task's platform window the appointment."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from fleetwave import store
from fleetwave.clock import ManualClock
from fleetwave.engine.runner import OutcomeKind, advance
from fleetwave.platforms.base import ExecuteType
from fleetwave.platforms.memory import MemoryConfig, MemoryPlatform
from tests.e2e.engine.helpers import answer_all, device_rows, new_store, spec_of
from tests.e2e.engine.test_consent_campaign import _iso

D = store.DeviceRunStatus

WAVES = """
name: consent-waves
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets: {groups: [{name: meters-vienna}]}
waves:
  - percent: 50
  - percent: 100
policy: {poll_interval: 5m, task_timeout: 2h}
thresholds: {max_failure_percent: 10, min_finished: 1, wave_success_percent: 100}
consent:
  period: 2d
  answer_timeout: 6h
  declines_count: {declines_count}
"""


@pytest.mark.parametrize("declines_count", [False, True])
async def test_waves_count_consenting_devices_and_appointments_batch_tasks(
    tmp_path: Path, declines_count: bool
) -> None:
    clock = ManualClock()
    t0 = clock.now()
    platform = MemoryPlatform(MemoryConfig(devices=40, seed=3, failure_rate=0.0), clock=clock)
    db = new_store(tmp_path / "waves.db")
    spec = spec_of(WAVES.replace("{declines_count}", str(declines_count).lower()))
    await advance(spec, db=db, platform=platform, clock=clock, max_rounds=1)  # plans, offers
    runs = device_rows(db, "consent-waves")
    first = sorted(d for d, r in runs.items() if r.wave_index == 0)
    second = sorted(d for d, r in runs.items() if r.wave_index == 1)
    assert len(first) >= 3 and len(second) >= 4, (first, second)
    declined = first[:2]
    slot_a, slot_b = second[:2], second[2:3]
    a = (t0 + timedelta(hours=3)).replace(second=0, microsecond=0)
    b = a + timedelta(hours=5)
    items = [{"deviceId": d, "action": "cancel"} for d in declined]
    items += [{"deviceId": d, "action": "confirm"} for d in first[2:] + second[3:]]
    for ids, start in ((slot_a, a), (slot_b, b)):
        items += [
            {
                "deviceId": d,
                "action": "appoint",
                "appointStart": _iso(start),
                "appointEnd": _iso(start + timedelta(hours=2)),
            }
            for d in ids
        ]
    with store.session_scope(db) as s:
        store.import_device_owners(s, rows=[(d, "owner") for d in runs], now=t0)
        token = store.issue_owner_token(s, owner_id="owner", now=t0)
    answer_all(db, clock, token, items)
    last = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
    runs = device_rows(db, "consent-waves")
    per_device = platform.tasks_per_device()
    assert all(per_device[d] == 0 for d in declined)
    if declines_count:
        # 2 declines of the first wave's devices pass the 10 % failure limit: halted there
        assert last.kind is OutcomeKind.HALTED, last
        assert all(per_device[d] == 0 for d in second)
        return
    # the declined devices are skipped; every consenting one succeeded: the first wave's
    # gate (100 % success) passes and the second wave runs
    assert last.kind is OutcomeKind.COMPLETED, last
    assert {(runs[d].status, runs[d].failure_kind) for d in declined} == {
        (D.SKIPPED, "consent_declined")
    }
    assert {runs[d].status for d in runs if d not in declined} == {D.SUCCEEDED}
    # one task per appointment, its window the appointment; nothing else in custom tasks
    custom = [t for t in platform.tasks.values() if t.policy.execute_type is ExecuteType.CUSTOM]
    windows = Counter((t.policy.start_time, t.policy.end_time) for t in custom)
    assert windows == {(a, a + timedelta(hours=2)): 1, (b, b + timedelta(hours=2)): 1}
    by_window = {(t.policy.start_time, t.policy.end_time): sorted(t.device_ids) for t in custom}
    assert by_window[(a, a + timedelta(hours=2))] == slot_a
    assert by_window[(b, b + timedelta(hours=2))] == slot_b

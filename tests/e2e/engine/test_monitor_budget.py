"""The monitor's API budget against the simulator: one progress page a round when polling,
and with push a campaign that subscribes, completes, and sends each device one task."""

from __future__ import annotations

from pathlib import Path

from fleetwave.engine.runner import OutcomeKind
from fleetwave.notify import PushChannel
from fleetwave.sim.linked_clock import SimLinkedClock
from fleetwave.sim.testing import run_simulator
from tests.e2e.engine.helpers import (
    Recorder,
    check_exactly_once,
    chunks,
    device_rows,
    new_store,
    run,
    spec_of,
)

LIST = "GET /iodm/northbound/v1.5.0/operations"
GET = "GET /iodm/northbound/v1.5.0/operations/{operationId}"
SUBSCRIBE = "POST /iodm/app/sub/v1.1.0/subscribe"

SPEC = """
name: budget-meters
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets:
  groups: [{name: meters-berlin}]
  skip_up_to_date: false
waves:
  - percent: 100
policy:
  poll_interval: 1m
  task_timeout: 1h
  max_devices_per_task: 50
  max_inflight_tasks: 6
thresholds: {max_failure_percent: 50, min_finished: 100, wave_success_percent: 50}
"""


async def test_polling_reads_one_list_page_a_round(tmp_path: Path) -> None:
    with run_simulator(devices=600, groups=1, seed=5, clock="manual", rate_limit=0) as sim:
        db = new_store(tmp_path / "poll.db")
        rec = Recorder()
        outcome, calls = await run(spec_of(SPEC), db, sim, recorder=rec)
    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    rounds = rec.kinds()["round"]
    # at most 6 active tasks: one processing page covers them (no separate wait list),
    # plus single reads of new tasks missing from it
    assert calls.get(LIST, 0) <= rounds
    assert calls.get(LIST, 0) + calls.get(GET, 0) <= rounds + len(chunks(db, "budget-meters"))


async def test_push_campaign_subscribes_and_completes_exactly_once(tmp_path: Path) -> None:
    with run_simulator(devices=600, groups=1, seed=5, clock="manual", rate_limit=0) as sim:
        db = new_store(tmp_path / "push.db")
        clock = SimLinkedClock(sim.base_url)
        channel = PushChannel(db, clock=clock).start()
        try:
            outcome, calls = await run(spec_of(SPEC), db, sim, push=channel)
            stats = channel.stats()
        finally:
            channel.stop()
            clock.close()
        sim_tasks = sim.stats()["tasks"]
    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    assert calls[SUBSCRIBE] == 2  # the firmware kind's state-change and result notifications
    assert stats.accepted > 0 and stats.unauthorized == 0
    rows = device_rows(db, "budget-meters")
    file_ids = {c.file_id for c in chunks(db, "budget-meters")}
    per_device = check_exactly_once(db, "budget-meters", sim_tasks, file_ids)
    assert set(per_device) == set(rows)
    assert all(r.status.is_final for r in rows.values())

"""Halting on a threshold, an operator's halt and resume, and a rollback (model FLAKY-1).

Engine behaviour, so on the in-memory platform (a fresh fleet per test, its ManualClock
shared with the engine); exactly-once is judged from the platform's own task list.
"""

from __future__ import annotations

from pathlib import Path

from fleetwave import store
from fleetwave.engine.control import approve_campaign, halt_campaign, resume_campaign
from fleetwave.engine.progress import ProgressEvent
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

FLAKY_FW = """
name: {name}
kind: firmware
package:
  {{version: "0.2.0", device_type: MultiSensor, model: FLAKY-1, manufacturer_name: Flakeworks}}
targets: {{groups: [{{name: flaky-vienna}}]}}
waves:
  - count: 10
  - percent: 100
policy: {{poll_interval: 5m, task_timeout: 1h, max_devices_per_task: 20}}
thresholds: {{max_failure_percent: 20, min_finished: 5, on_breach: halt}}
"""

FLAKY_SW_ROLLBACK = """
name: flaky-sw-rollback
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


async def test_threshold_halts_and_resume_continues(tmp_path: Path) -> None:
    platform = memory_platform()
    db = new_store(tmp_path / "halt.db")
    spec = spec_of(FLAKY_FW.format(name="flaky-halt"))
    outcome, _ = await run_memory(spec, db, platform)

    assert outcome.kind is OutcomeKind.HALTED, outcome
    assert "failure rate" in outcome.reason
    assert campaign_row(db, spec.name).status is store.CampaignStatus.HALTED
    breach = events(db, spec.name, ["threshold_breach"])
    assert len(breach) == 1 and breach[0].data["verdict"] == "halt"
    assert breach[0].data["inputs"]["max_failure_rate"] == 0.2
    assert breach[0].data["inputs"]["failed"] > 0
    # the canary tripped it: nothing of wave 1 was submitted, its devices wait
    assert {c.wave_index for c in chunks(db, spec.name)} == {0}
    rows = device_rows(db, spec.name)
    assert {r.status for r in rows.values() if r.wave_index == 1} == {D.PENDING}
    assert [w.status for w in waves(db, spec.name)][:1] == [store.WaveStatus.HALTED]

    # a halted campaign stays halted: another run sends nothing
    again, calls = await run_memory(spec, db, platform)
    assert again.kind is OutcomeKind.HALTED and sum(calls.values()) == 0

    # resume: the failures so far become the baseline; the flaky model trips it again
    resume_campaign(db, name=spec.name, by="test", now=platform.clock.now())
    third, _ = await run_memory(spec, db, platform)
    assert third.kind is OutcomeKind.HALTED, third
    assert 1 in {c.wave_index for c in chunks(db, spec.name)}
    assert len(events(db, spec.name, ["threshold_override"])) == 1
    assert len(events(db, spec.name, ["threshold_breach"])) == 2
    memory_exactly_once(db, spec.name, platform)


async def test_operator_halt_stops_a_running_campaign(tmp_path: Path) -> None:
    platform = memory_platform()
    db = new_store(tmp_path / "op.db")
    spec = spec_of(
        FLAKY_FW.format(name="flaky-operator-halt").replace(
            "max_failure_percent: 20", "max_failure_percent: 100"
        )
    )

    def halt_on_first_submit(event: ProgressEvent) -> None:
        if event.kind == "submitted":
            halt_campaign(
                db, name=spec.name, by="operator", reason="test", now=platform.clock.now()
            )

    outcome, _ = await run_memory(spec, db, platform, recorder=halt_on_first_submit)
    assert outcome.kind is OutcomeKind.HALTED
    assert outcome.reason == "halted by an operator"
    assert len(chunks(db, spec.name)) == 1  # one task, then the halt was seen
    row = campaign_row(db, spec.name)
    assert row.status is store.CampaignStatus.HALTED and "operator" in (row.status_reason or "")


async def test_rollback_after_breach(tmp_path: Path) -> None:
    platform = memory_platform()
    db = new_store(tmp_path / "rb.db")
    spec = spec_of(FLAKY_SW_ROLLBACK)
    rec = Recorder()
    outcome, _ = await run_memory(spec, db, platform, recorder=rec)

    assert outcome.kind is OutcomeKind.ROLLED_BACK, outcome
    assert campaign_row(db, spec.name).status is store.CampaignStatus.ROLLED_BACK
    rows = device_rows(db, spec.name)
    statuses = {r.status for r in rows.values()}
    assert D.SUCCEEDED not in statuses and D.ROLLED_BACK in statuses
    assert statuses <= {
        D.ROLLED_BACK,
        D.ROLLBACK_FAILED,
        D.FAILED,
        D.TIMED_OUT,
        D.CANCELLED,
        D.SKIPPED,
    }
    assert any(r.status is D.CANCELLED for r in rows.values())  # wave 1 never ran
    # history is kept: failures stay failures, only never-sent devices are cancelled
    assert D.FAILED in statuses
    cancelled = [r for r in rows.values() if r.status is D.CANCELLED]
    assert all(r.attempt == 0 and r.failure_kind is None for r in cancelled)
    sent = {
        d for c in chunks(db, spec.name) if c.kind is store.ChunkKind.UPGRADE for d in c.device_ids
    }
    assert sent.isdisjoint(r.device_id for r in cancelled)

    all_chunks = chunks(db, spec.name)
    rollback = [c for c in all_chunks if c.kind is store.ChunkKind.ROLLBACK]
    upgrade = [c for c in all_chunks if c.kind is store.ChunkKind.UPGRADE]
    assert rollback and upgrade
    rolled = {d for c in rollback for d in c.device_ids}
    assert rolled == {d for d, r in rows.items() if r.status in (D.ROLLED_BACK, D.ROLLBACK_FAILED)}
    assert len({c.file_id for c in rollback}) == 1
    assert {c.file_id for c in rollback}.isdisjoint({c.file_id for c in upgrade})
    memory_exactly_once(db, spec.name, platform)
    # each device got at most one upgrade and one rollback task
    assert max(platform.tasks_per_device({c.file_id for c in upgrade}).values()) == 1
    assert max(platform.tasks_per_device({c.file_id for c in rollback}).values()) == 1
    assert any(e.phase == "rollback" and e.kind == "round" for e in rec.events)
    statuses_logged = [e.data["to"] for e in events(db, spec.name, ["campaign_status"])]
    assert statuses_logged[-2:] == ["rolling_back", "rolled_back"]

    # the platform agrees: the rolled back devices run the old software again
    back = [d for d, r in rows.items() if r.status is D.ROLLED_BACK]
    assert back and {platform.fleet.by_id[d].sw_version for d in back} == {"0.5.0"}


async def test_breach_pauses_for_approval_then_continues(tmp_path: Path) -> None:
    platform = memory_platform()
    db = new_store(tmp_path / "pause.db")
    spec = spec_of(
        FLAKY_FW.format(name="flaky-pause")
        .replace("on_breach: halt", "on_breach: pause")
        .replace('version: "0.2.0"', 'version: "0.1.0"')
        .replace(
            "targets: {groups: [{name: flaky-vienna}]}",
            "targets: {groups: [{name: flaky-vienna}], skip_up_to_date: false}",
        )
    )
    first, _ = await run_memory(spec, db, platform)
    assert first.kind is OutcomeKind.AWAITING_APPROVAL and first.wave == 0, first
    assert campaign_row(db, spec.name).status is store.CampaignStatus.PAUSED
    assert waves(db, spec.name)[0].status is store.WaveStatus.WAITING_APPROVAL

    # without a decision a run only says so again
    again, _ = await run_memory(spec, db, platform)
    assert again.kind is OutcomeKind.AWAITING_APPROVAL

    approve_campaign(db, name=spec.name, by="ops", now=platform.clock.now(), comment="known flaky")
    third, _ = await run_memory(spec, db, platform)
    # the override lets wave 0 pass its gate; the flaky wave 1 breaches the limit anew
    assert third.kind is OutcomeKind.AWAITING_APPROVAL and third.wave == 1, third
    assert waves(db, spec.name)[0].status is store.WaveStatus.SUCCEEDED
    assert len(events(db, spec.name, ["threshold_override"])) == 1
    assert len(events(db, spec.name, ["threshold_breach"])) == 2

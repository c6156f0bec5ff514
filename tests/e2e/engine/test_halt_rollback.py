"""Halting on a threshold, an operator's halt and resume, and a rollback (model FLAKY-1)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwave import store
from fleetwave.engine.control import halt_campaign, resume_campaign
from fleetwave.engine.progress import ProgressEvent
from fleetwave.engine.runner import OutcomeKind
from fleetwave.platforms.iodm import IoDMPlatform
from fleetwave.sim.testing import SimHandle, run_simulator
from tests.e2e.engine.helpers import (
    Recorder,
    campaign_row,
    check_exactly_once,
    chunks,
    device_rows,
    events,
    linked,
    new_store,
    run,
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


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_simulator(devices=3000, groups=8, seed=5, clock="manual", rate_limit=0) as handle:
        yield handle


async def test_threshold_halts_and_resume_continues(sim: SimHandle, tmp_path: Path) -> None:
    db = new_store(tmp_path / "halt.db")
    spec = spec_of(FLAKY_FW.format(name="flaky-halt"))
    outcome, _ = await run(spec, db, sim)

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
    again, calls = await run(spec, db, sim)
    assert again.kind is OutcomeKind.HALTED and sum(calls.values()) == 0

    # resume: the failures so far become the baseline; the flaky model trips it again
    resume_campaign(db, name=spec.name, by="test", now=sim.clock())
    third, _ = await run(spec, db, sim)
    assert third.kind is OutcomeKind.HALTED, third
    assert 1 in {c.wave_index for c in chunks(db, spec.name)}
    assert len(events(db, spec.name, ["threshold_override"])) == 1
    assert len(events(db, spec.name, ["threshold_breach"])) == 2
    check_exactly_once(
        db, spec.name, sim.stats()["tasks"], {c.file_id for c in chunks(db, spec.name)}
    )


async def test_operator_halt_stops_a_running_campaign(sim: SimHandle, tmp_path: Path) -> None:
    db = new_store(tmp_path / "op.db")
    spec = spec_of(
        FLAKY_FW.format(name="flaky-operator-halt").replace(
            "max_failure_percent: 20", "max_failure_percent: 100"
        )
    )

    def halt_on_first_submit(event: ProgressEvent) -> None:
        if event.kind == "submitted":
            halt_campaign(db, name=spec.name, by="operator", reason="test", now=sim.clock())

    outcome, _ = await run(spec, db, sim, recorder=halt_on_first_submit)  # type: ignore[arg-type]
    assert outcome.kind is OutcomeKind.HALTED
    assert outcome.reason == "halted by an operator"
    assert len(chunks(db, spec.name)) == 1  # one task, then the halt was seen
    row = campaign_row(db, spec.name)
    assert row.status is store.CampaignStatus.HALTED and "operator" in (row.status_reason or "")


async def test_rollback_after_breach(sim: SimHandle, tmp_path: Path) -> None:
    db = new_store(tmp_path / "rb.db")
    spec = spec_of(FLAKY_SW_ROLLBACK)
    rec = Recorder()
    outcome, _ = await run(spec, db, sim, recorder=rec)

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
    check_exactly_once(db, spec.name, sim.stats()["tasks"], {c.file_id for c in all_chunks})
    assert any(e.phase == "rollback" and e.kind == "round" for e in rec.events)
    statuses_logged = [e.data["to"] for e in events(db, spec.name, ["campaign_status"])]
    assert statuses_logged[-2:] == ["rolling_back", "rolled_back"]

    # the platform agrees: the rolled back devices run the old software again
    with linked(sim.base_url, sim.app_id, sim.secret) as (clock, settings):
        platform = IoDMPlatform(settings, clock=clock)
        try:
            back = [d for d, r in rows.items() if r.status is D.ROLLED_BACK][:5]
            infos = await asyncio.gather(*(platform.get_device(d) for d in back))
        finally:
            await platform.aclose()
    assert {i.sw_version for i in infos} == {"0.5.0"}


async def test_breach_pauses_for_approval_then_continues(sim: SimHandle, tmp_path: Path) -> None:
    from fleetwave.engine.control import approve_campaign

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
    first, _ = await run(spec, db, sim)
    assert first.kind is OutcomeKind.AWAITING_APPROVAL and first.wave == 0, first
    assert campaign_row(db, spec.name).status is store.CampaignStatus.PAUSED
    assert waves(db, spec.name)[0].status is store.WaveStatus.WAITING_APPROVAL

    # without a decision a run only says so again
    again, _ = await run(spec, db, sim)
    assert again.kind is OutcomeKind.AWAITING_APPROVAL

    approve_campaign(db, name=spec.name, by="ops", now=sim.clock(), comment="known flaky")
    third, _ = await run(spec, db, sim)
    # the override lets wave 0 pass its gate; the flaky wave 1 breaches the limit anew
    assert third.kind is OutcomeKind.AWAITING_APPROVAL and third.wave == 1, third
    assert waves(db, spec.name)[0].status is store.WaveStatus.SUCCEEDED
    assert len(events(db, spec.name, ["threshold_override"])) == 1
    assert len(events(db, spec.name, ["threshold_breach"])) == 2

"""The approval gate with an approver that answers in this process, on the in-memory platform.

A refused answer (an appointment the engine's rules refuse) is asked again with the reason,
never lost; while the run waits for an answer it keeps the campaign's lease, so a run
elsewhere is refused (naming the waiting flow run) however long the answer takes; and a run
cancelled mid-wave leaves a status that says no run is active.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from fleetwave import store
from fleetwave.clock import ManualClock, utc_instant
from fleetwave.engine.context import ApprovalReply, ApprovalRequest
from fleetwave.engine.lease import LeaseHeldError
from fleetwave.engine.progress import ProgressEvent
from fleetwave.engine.runner import OutcomeKind, advance
from fleetwave.platforms.memory import MemoryConfig, MemoryPlatform
from tests.e2e.engine.helpers import campaign_row, events, fleetwave_cli, new_store, spec_of, waves

GATED = """
name: {name}
kind: firmware
package: {{version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}}
targets: {{groups: [{{name: meters-vienna}}]}}
waves:
  - count: 5
  - percent: 100
    approval: true
policy: {{poll_interval: 5m, task_timeout: 1h}}
thresholds: {{max_failure_percent: 50, min_finished: 5, wave_success_percent: 50}}
"""


def _platform(clock: ManualClock) -> MemoryPlatform:
    return MemoryPlatform(MemoryConfig(devices=1200, seed=7, failure_rate=0.0), clock=clock)


async def test_a_refused_answer_is_asked_again_with_the_reason(tmp_path: Path) -> None:
    clock = ManualClock()
    db = new_store(tmp_path / "gate.db")
    spec = spec_of(GATED.format(name="gate-refused-answer"))
    asked: list[ApprovalRequest] = []

    async def approver(req: ApprovalRequest) -> ApprovalReply:
        asked.append(req)
        if len(asked) == 1:  # a zero-length appointment: the form accepts it, the rules not
            at = clock.now().add(hours=2)
            return ApprovalReply(approve=True, by="ui", start=at, end=at)
        return ApprovalReply(approve=True, by="ui", comment="second try")

    outcome = await advance(
        spec, db=db, platform=_platform(clock), clock=clock, approver=approver, max_rounds=500
    )

    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    assert [r.attempt for r in asked] == [0, 1]
    assert asked[0].problem == ""
    assert "lasts 0 minutes" in asked[1].problem, asked[1].problem
    (refused,) = events(db, spec.name, ["approval_invalid"])
    assert refused.subject == "wave 1" and "lasts 0 minutes" in refused.data["error"]
    wave = waves(db, spec.name)[1]
    assert wave.approval_decision is store.ApprovalDecision.APPROVED
    assert wave.approval_comment == "second try"


def _lease_until(db: sa.Engine, name: str) -> Any:
    return utc_instant(campaign_row(db, name).lease_expires_at)


async def test_a_run_waiting_for_approval_keeps_its_lease(tmp_path: Path) -> None:
    """The answer takes longer than the lease: it is renewed meanwhile, and a run from
    another host (whose liveness only the lease tells) is refused, naming the flow run."""
    clock = ManualClock()
    db = new_store(tmp_path / "lease.db")
    name = "gate-keeps-lease"
    spec = spec_of(GATED.format(name=name))
    ttl = timedelta(seconds=2)  # renewed every 0.5 s of real time while the gate waits
    refused: list[LeaseHeldError] = []

    async def approver(req: ApprovalRequest) -> ApprovalReply:
        for _ in range(3):  # three lease lengths pass on the campaign clock
            clock.advance(ttl.total_seconds())
            deadline = time.monotonic() + 30
            while _lease_until(db, name) <= clock.now():
                assert time.monotonic() < deadline, "the lease was not renewed while waiting"
                await asyncio.sleep(0.05)
        with pytest.raises(LeaseHeldError) as info:
            await advance(
                spec,
                db=db,
                platform=_platform(clock),
                clock=clock,
                holder="other-host/4026531836:4242:0:cafe0001",
                lease_ttl=ttl,
            )
        refused.append(info.value)
        return ApprovalReply(approve=True, by="ui")

    outcome = await advance(
        spec,
        db=db,
        platform=_platform(clock),
        clock=clock,
        approver=approver,
        flow_run_id="flow-run-0001",
        lease_ttl=ttl,
        max_rounds=500,
    )

    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    (err,) = refused
    assert err.flow_run_id == "flow-run-0001" and err.campaign == name
    assert "flow run flow-run-0001" in str(err), str(err)


async def test_status_after_a_cancelled_run_says_no_run_is_active(tmp_path: Path) -> None:
    clock = ManualClock()
    db = new_store(tmp_path / "status.db")
    name = "gate-status-after-cancel"
    spec = spec_of(GATED.format(name=name))

    async def approver(req: ApprovalRequest) -> ApprovalReply:
        return ApprovalReply(approve=True, by="ui")

    def cancel_in_wave_1(event: ProgressEvent) -> None:
        if event.kind == "submitted" and "wave 1" in (event.message or ""):
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # delivered at the run's next await, as a stop signal is

    run = asyncio.create_task(
        advance(
            spec,
            db=db,
            platform=_platform(clock),
            clock=clock,
            approver=approver,
            progress=cancel_in_wave_1,
            max_rounds=500,
        )
    )
    with pytest.raises(asyncio.CancelledError):
        await run
    row = campaign_row(db, name)
    assert row.status is store.CampaignStatus.RUNNING and row.lease_holder is None
    db.dispose()

    env = {**os.environ, "FLEETWAVE_DB_URL": f"sqlite:///{tmp_path / 'status.db'}"}
    env.pop("PREFECT_API_URL", None)
    detail = fleetwave_cli(["status", name], env, tmp_path)
    assert detail.returncode == 0, detail.stderr
    header = detail.stdout.splitlines()[0]
    assert header.startswith(f"{name}: running, no run active"), detail.stdout
    assert "run: no run is active; the last one ended at " in detail.stdout, detail.stdout
    assert "CancelledError" in detail.stdout, detail.stdout

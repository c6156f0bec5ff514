"""An approval gate approved through Prefect's input API, and ``fleetwave approve``.

The campaign flow runs in this process against a real local Prefect server (the session
fixture ``prefect_server``); when it reaches the wave that needs approval it pauses with
``pause_flow_run(wait_for_input=ApprovalInput)``. The test answers the way the Prefect UI
does (``resume_flow_run(id, run_input=...)``) and the flow continues to completion.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.flow_runs import resume_flow_run

from fleetwave import store
from fleetwave.engine.control import approve_campaign
from fleetwave.sim.config import DEMO_APP_ID, DEMO_SECRET
from fleetwave.sim.testing import run_simulator
from tests.e2e.engine.helpers import campaign_row, new_store, waves

CAMPAIGN = """
name: {name}
kind: firmware
package: {{version: "1.0.0", device_type: Tracker, model: TRK-9, manufacturer_name: Roamly}}
targets: {{groups: [{{name: trackers-madrid}}]}}
waves:
  - count: 5
  - percent: 100
    approval: true
policy: {{poll_interval: 5m, task_timeout: 1h, max_devices_per_task: 50}}
thresholds: {{max_failure_percent: 50, min_finished: 5, wave_success_percent: 50}}
"""


def _flow_run_state(flow_run_id: str) -> str | None:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
    return run.state.type.value if run.state else None


async def _wait_paused(db: Any, name: str, flow: asyncio.Task[Any], timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if flow.done():
            raise AssertionError(f"the flow run ended before pausing: {flow.result()}")
        try:
            row = campaign_row(db, name)
        except store.NotFoundError:
            row = None
        if row is not None and row.flow_run_id:
            state = await asyncio.to_thread(_flow_run_state, row.flow_run_id)
            if state == "PAUSED":
                return row.flow_run_id
        await asyncio.sleep(0.25)
    raise AssertionError("the flow run never paused for approval")


@pytest.fixture
def platform_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    with run_simulator(devices=600, groups=6, seed=9, clock="manual", rate_limit=0) as sim:
        monkeypatch.setenv("IODM_BASE_URL", sim.base_url)
        monkeypatch.setenv("IODM_APP_ID", DEMO_APP_ID)
        monkeypatch.setenv("IODM_SECRET", DEMO_SECRET)
        monkeypatch.setenv("IODM_RATE_LIMIT", "0")
        monkeypatch.setenv("FLEETWAVE_DB_URL", f"sqlite:///{tmp_path / 'flow.db'}")
        yield sim, new_store(tmp_path / "flow.db")


async def test_approval_through_prefect_input_api(
    prefect_server: str, platform_env: Any, tmp_path: Path
) -> None:
    from flows.campaign import run_campaign

    _sim, db = platform_env
    name = "approve-via-prefect"
    path = tmp_path / "campaign.yaml"
    path.write_text(CAMPAIGN.format(name=name))
    flow_task = asyncio.create_task(
        run_campaign(campaign=str(path), clock="sim", approval_poll_interval=1)
    )
    try:
        flow_run_id = await _wait_paused(db, name, flow_task)
        assert campaign_row(db, name).status is store.CampaignStatus.PAUSED
        assert [w.status for w in waves(db, name)] == [
            store.WaveStatus.SUCCEEDED,
            store.WaveStatus.WAITING_APPROVAL,
        ]
        await asyncio.to_thread(
            resume_flow_run,
            UUID(flow_run_id),
            run_input={"decision": "approve", "comment": "canary looks good"},
        )
        result = await asyncio.wait_for(flow_task, timeout=180)
    finally:
        if not flow_task.done():
            flow_task.cancel()

    assert result["kind"] == "completed", result
    wave = waves(db, name)[1]
    assert wave.approval_decision is store.ApprovalDecision.APPROVED
    assert wave.approval_by == "prefect" and wave.approval_comment == "canary looks good"
    assert _flow_run_state(flow_run_id) == "COMPLETED"

    # Prefect task runs scale with stages and chunks, not devices
    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
        )
    names = [r.name for r in runs]
    assert any(n.startswith("submit wave 1") for n in names)
    assert any(n.startswith("verify package") for n in names)
    assert len(runs) < 100


async def test_fleetwave_approve_resumes_the_paused_flow_run(
    prefect_server: str, platform_env: Any, tmp_path: Path
) -> None:
    from flows.campaign import run_campaign

    sim, db = platform_env
    name = "approve-via-cli"
    path = tmp_path / "campaign.yaml"
    path.write_text(CAMPAIGN.format(name=name))
    flow_task = asyncio.create_task(
        run_campaign(campaign=str(path), clock="sim", approval_poll_interval=1)
    )
    try:
        flow_run_id = await _wait_paused(db, name, flow_task)
        result = await asyncio.to_thread(
            approve_campaign, db, name=name, by="cli:ops", now=sim.clock(), comment="go"
        )
        assert result.wave == 1 and result.resumed_flow_run == flow_run_id
        outcome = await asyncio.wait_for(flow_task, timeout=180)
    finally:
        if not flow_task.done():
            flow_task.cancel()
    assert outcome["kind"] == "completed", outcome
    wave = waves(db, name)[1]
    assert wave.approval_by == "cli:ops"  # recorded once, by the operator who approved


def _paused_state(flow_run_id: str) -> Any:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id)).state


async def _wait_paused_again(flow_run_id: str, old_key: str, timeout: float = 120) -> Any:
    """The run's Paused state once it paused with a key other than ``old_key``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = await asyncio.to_thread(_paused_state, flow_run_id)
        if state is not None and state.is_paused() and state.state_details.pause_key != old_key:
            return state
        if state is not None and state.is_final():
            raise AssertionError(f"the flow run ended instead of asking again: {state!r}")
        await asyncio.sleep(0.25)
    raise AssertionError("the flow run never paused again")


async def test_a_second_run_a_refused_answer_and_a_rejection_end_in_named_states(
    prefect_server: str, platform_env: Any, tmp_path: Path
) -> None:
    """While a run waits at the gate: a second run of the campaign is refused naming it
    (Cancelled "AlreadyRunning"); a zero-length appointment is asked again with the reason
    in the form (no ValidationError); a rejection ends the run Failed "Halted"."""
    from prefect.input.actions import read_flow_run_input

    from flows.campaign import run_campaign

    sim, db = platform_env
    name = "second-run-and-refusal"
    path = tmp_path / "campaign.yaml"
    path.write_text(CAMPAIGN.format(name=name))
    flow_task = asyncio.create_task(
        run_campaign(campaign=str(path), clock="sim", approval_poll_interval=1, return_state=True)
    )
    try:
        flow_run_id = await _wait_paused(db, name, flow_task)
        async with get_client() as client:
            first = await client.read_flow_run(UUID(flow_run_id))
        assert first.state is not None
        first_key = first.state.state_details.pause_key

        second = await run_campaign(campaign=str(path), clock="sim", return_state=True)
        assert (second.type.value, second.name) == ("CANCELLED", "AlreadyRunning")
        assert second.message is not None
        assert f"flow run '{first.name}' ({flow_run_id}, Paused)" in second.message, second
        assert "process" not in second.message

        at = sim.clock().add(hours=2).isoformat()
        await asyncio.to_thread(
            resume_flow_run,
            UUID(flow_run_id),
            run_input={"decision": "approve", "start": at, "end": at},
        )
        again = await _wait_paused_again(flow_run_id, first_key)
        description = await read_flow_run_input(
            f"{again.name.lower()}-{again.state_details.pause_key}-description",
            flow_run_id=UUID(flow_run_id),
        )
        assert description.startswith("**Your last answer was refused:** the appointment ")
        assert "lasts 0 minutes" in description, description
        assert campaign_row(db, name).status is store.CampaignStatus.PAUSED

        await asyncio.to_thread(
            resume_flow_run,
            UUID(flow_run_id),
            run_input={"decision": "reject", "comment": "not tonight"},
        )
        final = await asyncio.wait_for(flow_task, timeout=180)
    finally:
        if not flow_task.done():
            flow_task.cancel()
    assert (final.type.value, final.name) == ("FAILED", "Halted"), final
    assert final.message.startswith("wave 2 rejected by prefect: not tonight")  # waves from 1
    assert _flow_run_state(flow_run_id) == "FAILED"
    assert waves(db, name)[1].status is store.WaveStatus.REJECTED


async def test_a_wrong_campaign_path_is_one_error_line(prefect_server: str, tmp_path: Path) -> None:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from flows.campaign import run_campaign
    from tests.e2e.conftest import drain_prefect_workers

    state = await run_campaign(campaign="campaigns/e2e/missing.yaml", return_state=True)
    assert (state.type.value, state.name) == ("FAILED", "Failed")
    assert state.message is not None
    assert "campaigns/e2e/missing.yaml: no such file in the working directory" in state.message
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    await asyncio.to_thread(drain_prefect_workers)
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    messages = [log.message for log in logs]
    assert not any("Traceback" in m for m in messages), messages
    ours = [log for log in logs if "no such file in the working directory" in log.message]
    assert ours and ours[0].level == 40 and "\n" not in ours[0].message, messages

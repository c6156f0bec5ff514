"""Prefect task runs grow with chunks and status changes, never with monitoring rounds.

The formula (docs/performance.md, "Prefect task runs"): a run that plans and completes a
campaign makes 4 fixed stages (verify package, resolve and plan, reconcile, check live
platform tasks), then per wave one stage for its running rounds plus one per submission
batch inside it. Monitoring rounds are steps inside their wave's stage, not task runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from fleetwave import store
from fleetwave.clock import ManualClock
from fleetwave.engine.runner import OutcomeKind, advance
from fleetwave.platforms.memory import MemoryConfig, MemoryPlatform
from fleetwave.sim.config import DEMO_APP_ID, DEMO_SECRET
from fleetwave.sim.testing import run_simulator
from tests.e2e.engine.helpers import campaign_row, new_store, spec_of

T = TypeVar("T")

FIXED_STAGES = 4  # verify package, resolve and plan, reconcile, check live platform tasks

MEMORY_CAMPAIGN = """
name: task-runs-memory
kind: firmware
package: {version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets: {groups: [{name: meters-vienna}]}
waves:
  - count: 20
  - percent: 30
  - percent: 100
policy: {poll_interval: 1m, task_timeout: 1h}
thresholds: {max_failure_percent: 20, min_finished: 20, wave_success_percent: 80}
"""

SIM_CAMPAIGN = """
name: task-runs-prefect
kind: firmware
package: {version: "1.0.0", device_type: Tracker, model: TRK-9, manufacturer_name: Roamly}
targets: {groups: [{name: trackers-madrid}]}
waves:
  - count: 5
  - percent: 100
policy: {poll_interval: 1m, task_timeout: 1h, max_devices_per_task: 50}
thresholds: {max_failure_percent: 50, min_finished: 5, wave_success_percent: 50}
"""


class Names:
    """A stage runner and a step runner recording what they ran, in order."""

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.steps: list[str] = []

    async def stage(self, name: str, fn: Callable[[], Awaitable[T]]) -> T:
        self.stages.append(name)
        return await fn()

    async def step(self, name: str, fn: Callable[[], Awaitable[T]]) -> T:
        self.steps.append(name)
        return await fn()


def expected_stages(waves: int, submit_batches: int) -> int:
    """The documented formula for a run that plans a campaign and completes it."""
    return FIXED_STAGES + waves + submit_batches


async def test_stage_count_is_the_formula_not_the_rounds(tmp_path: Path) -> None:
    clock = ManualClock()
    platform = MemoryPlatform(MemoryConfig(devices=1200, seed=7, failure_rate=0.0), clock=clock)
    db = new_store(tmp_path / "stages.db")
    spec = spec_of(MEMORY_CAMPAIGN)
    names = Names()
    outcome = await advance(
        spec, db=db, platform=platform, clock=clock, stage=names.stage, step=names.step
    )
    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    submits = [n for n in names.stages if n.startswith("submit ")]
    assert len(submits) == 3  # every wave fits in the in-flight caps: one batch each
    assert len(names.stages) == expected_stages(waves=3, submit_batches=len(submits))
    assert [n for n in names.stages if n.startswith("wave ")] == [
        f"wave {i}: submit and monitor"
        for i in (1, 2, 3)  # numbered from 1
    ]
    # the rounds polled are steps; a stage per round would have made these task runs
    assert len(names.steps) >= 3
    assert all(n.startswith("monitor round") for n in names.steps)


@pytest.fixture
def sim_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    with run_simulator(devices=600, groups=6, seed=9, clock="manual", rate_limit=0) as sim:
        monkeypatch.setenv("IODM_BASE_URL", sim.base_url)
        monkeypatch.setenv("IODM_APP_ID", DEMO_APP_ID)
        monkeypatch.setenv("IODM_SECRET", DEMO_SECRET)
        monkeypatch.setenv("IODM_RATE_LIMIT", "0")
        monkeypatch.setenv("FLEETWAVE_DB_URL", f"sqlite:///{tmp_path / 'flow.db'}")
        yield sim, new_store(tmp_path / "flow.db")


async def test_prefect_task_runs_of_a_flow_run_match_the_formula(
    prefect_server: str, sim_env: Any, tmp_path: Path
) -> None:
    from flows.campaign import run_campaign

    _sim, db = sim_env
    path = tmp_path / "campaign.yaml"
    path.write_text(SIM_CAMPAIGN)
    result = await asyncio.wait_for(run_campaign(campaign=str(path), clock="sim"), timeout=240)
    assert result["kind"] == "completed", result
    flow_run_id = campaign_row(db, "task-runs-prefect").flow_run_id
    assert flow_run_id is None  # released at the end; find the run by its events instead
    with store.session_scope(db, read_only=True) as s:
        campaign = store.get_campaign(s, name="task-runs-prefect")
        assert campaign.id is not None
        ended = store.recent_events(s, campaign_id=campaign.id, limit=1, kinds=["run_ended"])
    (event,) = ended
    assert event.flow_run_id
    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(event.flow_run_id)]))
        )
    names = sorted(r.name for r in runs)
    submits = [n for n in names if n.startswith("submit ")]
    assert len(submits) == 2, names
    assert len(runs) == expected_stages(waves=2, submit_batches=len(submits)), names
    assert not any(n.startswith("monitor round") for n in names), names

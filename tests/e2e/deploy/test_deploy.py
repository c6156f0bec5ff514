"""Deploy from prefect.yaml to a real local Prefect server, trigger a run through its API, and
let a process worker execute it; then check the campaign's effect in the store and simulator.

The project (prefect.yaml, flows/, campaigns/) is copied to a temporary directory so the
worker's working directory, and everything the flow writes there, stays out of the checkout.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetwave import store
from fleetwave.report.store import load_report
from fleetwave.sim import DEMO_APP_ID, DEMO_SECRET
from tests.e2e.conftest import PrefectServer, SimProcess
from tests.e2e.deploy.harness import (
    Timings,
    deploy,
    deployment_names,
    ensure_pool,
    group_members,
    read_flow_run,
    run_worker_once,
    trigger,
)

ROOT = Path(__file__).resolve().parents[3]

# A small campaign on one group of the session simulator's fleet: canary, then the rest.
E2E_CAMPAIGN = """\
name: e2e-deploy-gas
description: GasMeter GM-50 to firmware 2.3.1, run by a process worker from a deployment.
kind: firmware
package:
  version: "2.3.1"
  device_type: GasMeter
  model: GM-50
  manufacturer_name: Gasmetrix
targets:
  groups:
    - name: gas-rome
waves:
  - name: canary
    count: 5
  - percent: 100
policy:
  execute: now
  poll_interval: 1m
  task_timeout: 2h
thresholds:
  max_failure_percent: 50
  min_finished: 5
  wave_success_percent: 50
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the deployable project, plus the test's campaign file."""
    proj = tmp_path / "project"
    proj.mkdir()
    shutil.copy2(ROOT / "prefect.yaml", proj / "prefect.yaml")
    shutil.copytree(ROOT / "flows", proj / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "campaigns", proj / "campaigns")
    (proj / "campaigns" / "e2e").mkdir()
    (proj / "campaigns" / "e2e" / "gas.yaml").write_text(E2E_CAMPAIGN)
    return proj


@contextmanager
def _northbound(sim: SimProcess) -> Iterator[httpx.Client]:
    """A logged-in httpx client on the simulator's northbound API."""
    with httpx.Client(base_url=sim.base_url, timeout=10) as client:
        login = client.post(
            "/iocm/app/sec/v1.1.0/login", data={"appId": DEMO_APP_ID, "secret": DEMO_SECRET}
        ).json()
        client.headers.update(
            {"app_key": DEMO_APP_ID, "Authorization": f"Bearer {login['accessToken']}"}
        )
        yield client


def _fw_version(sim: SimProcess, device_id: str) -> str:
    with _northbound(sim) as client:
        body = client.get(f"/iocm/app/dm/v1.4.0/devices/{device_id}").json()
    return str(body["deviceInfo"]["fwVersion"])


def test_deploy_trigger_and_run_with_a_process_worker(
    prefect_server_handle: PrefectServer,
    simulator_process: SimProcess,
    project: Path,
    tmp_path: Path,
) -> None:
    server = prefect_server_handle
    timings = Timings()
    ensure_pool(server, project)
    deploy(server, project, timings=timings)

    deployments = deployment_names(server)
    assert {"run-campaign", "nightly-meters-firmware"} <= set(deployments)
    nightly = deployments["nightly-meters-firmware"]
    (schedule,) = nightly.schedules
    assert schedule.schedule.cron == "0 22 * * 1-5"  # its window opens Mon-Fri only
    assert schedule.schedule.timezone == "Europe/Berlin"
    assert "Mon-Fri 22:00-05:00 (Europe/Berlin)" in (nightly.description or "")
    assert len(deployments["nightly-trackers-rollback"].schedules) == 2  # one per window
    assert nightly.parameters == {"campaign": "campaigns/nightly-meters-firmware.yaml"}
    assert deployments["run-campaign"].work_pool_name == "fleetwave"

    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = store.get_engine(db_url)
    store.upgrade_schema(engine)
    calls_before = simulator_process_stats(simulator_process)["calls_total"]

    parameters: dict[str, Any] = {"campaign": "campaigns/e2e/gas.yaml", "clock": "sim"}
    flow_run_id = trigger(deployments["run-campaign"].id, parameters)
    log = run_worker_once(
        server,
        tmp_path,
        env={
            "FLEETWAVE_DB_URL": db_url,
            **simulator_process.driver_env(),
        },
        timings=timings,
    )
    flow_run = read_flow_run(flow_run_id)
    assert flow_run.state is not None
    assert flow_run.state.is_completed(), f"{flow_run.state!r}\n{log}"
    assert flow_run.deployment_id == deployments["run-campaign"].id

    # The effect: every gas meter got exactly one upgrade task, and the store says so.
    members = set(group_members(simulator_process, "gas-rome"))
    with store.session_scope(engine, read_only=True) as session:
        report = load_report(session, "e2e-deploy-gas")
        campaign = store.get_campaign(session, name="e2e-deploy-gas")
        assert campaign.id is not None
        in_store = set(store.iter_device_ids(session, campaign_id=campaign.id))
        skipped = set(
            store.iter_device_ids(
                session, campaign_id=campaign.id, statuses=[store.DeviceRunStatus.SKIPPED]
            )
        )
    engine.dispose()
    assert report.status == "completed", report
    # Members left out of the campaign were already on the target version (skip_up_to_date).
    assert in_store <= members
    assert all(_fw_version(simulator_process, d) == "2.3.1" for d in members - in_store)
    assert report.totals.devices == len(in_store)
    assert report.totals.succeeded + report.totals.failed + report.totals.skipped == len(in_store)
    stats = simulator_process_stats(simulator_process, tasks=True)
    counts = stats["device_task_counts"]
    sent = {d for d in members if counts.get(d)}
    assert sent == in_store - skipped
    assert all(counts[d] == 1 for d in sent), "no device may get two tasks (no resubmission)"
    assert stats["calls_total"] > calls_before
    print(
        f"\nPrefect server start {server.startup_seconds:.1f} s, deploy --all "
        f"{timings.deploy:.1f} s, worker run {timings.worker:.1f} s, "
        f"{stats['calls_total'] - calls_before} platform calls"
    )


def simulator_process_stats(sim: SimProcess, *, tasks: bool = False) -> dict[str, Any]:
    params = {} if tasks else {"tasks": "false"}
    result: dict[str, Any] = httpx.get(
        f"{sim.base_url}/sim/stats", params=params, timeout=30
    ).json()
    return result

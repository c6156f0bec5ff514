"""A consent campaign run as in production: deployed from prefect.yaml, triggered through the
Prefect API, executed by a process worker (the flow run is the worker's subprocess), which
serves the end-user consent API on ``FLEETWAVE_CONSENT_PORT`` while owners answer over HTTP.

The test's own simulator (manual clock, so nothing else of the session sends these
trackers a task) drives the run's clock (``clock: sim``); the API the run serves stamps
the owners' answers with that same clock, so answers and tasks compare.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from fleetwave import store
from fleetwave.consent.serve import probe_consent_api
from fleetwave.serving import stop_process_group
from fleetwave.sim import DEMO_SECRET
from fleetwave.sim.linked_clock import parse_sim_time
from fleetwave.sim.owners import Behaviour, OwnerMix, OwnerPopulation
from fleetwave.sim.testing import start_simulator_process
from tests.e2e.conftest import PREFECT_QUIET_ENV, PrefectServer, free_port
from tests.e2e.deploy.harness import (
    POOL,
    Timings,
    deploy,
    deployment_names,
    ensure_pool,
    group_members,
    read_flow_run,
    trigger,
)
from tests.e2e.deploy.test_deploy import (  # noqa: F401
    project,
    simulator_process_stats,
)
from tests.e2e.engine.helpers import six_owners

D = store.DeviceRunStatus
NAME = "e2e-deploy-consent"
GROUP = "trackers-madrid"

# One group, one wave, no windows. The run's clock jumps a poll_interval per round while
# it waits for answers, so the answer window is long (30 days: 8,640 rounds, about two
# minutes of real time, where owners answer within a second of the offer); every owner
# answers, so the run ends once the answers are in and the consenting devices upgraded.
CAMPAIGN = f"""\
name: {NAME}
kind: firmware
package: {{version: "1.0.0", device_type: Tracker, model: TRK-9, manufacturer_name: Roamly}}
targets: {{groups: [{{name: {GROUP}}}]}}
waves:
  - percent: 100
policy: {{execute: now, poll_interval: 5m, task_timeout: 2h}}
thresholds: {{max_failure_percent: 60, min_finished: 5, wave_success_percent: 0}}
consent: {{period: 30d, answer_timeout: 30d}}
"""

# Owners confirm or cancel; none stays silent (no wait for the timeout), none appoints.
MIX = OwnerMix(confirm=0.7, appoint=0, cancel=0.3, silent=0, auto=0)

API_TIMEOUT = 120.0  # seconds from the worker's start until the run's API must answer
RUN_TIMEOUT = 240.0  # seconds from the worker's start until the flow run must have ended

WORKER = ["worker", "start", "--pool", POOL, "--type", "process", "--run-once", "--limit", "2"]


def _start_worker(
    server: PrefectServer, cwd: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """``prefect worker start --run-once`` in the background (its own process group, so the
    flow run it starts is stopped with it)."""
    full_env = server.env()
    full_env.update(PREFECT_QUIET_ENV)
    full_env.update(env)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "--no-prompt", *WORKER],
            cwd=cwd,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_a_worker_run_serves_the_consent_api_while_owners_answer_over_http(
    prefect_server_handle: PrefectServer,
    project: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = prefect_server_handle
    timings = Timings()
    (project / "campaigns" / "e2e" / "consent.yaml").write_text(CAMPAIGN)
    ensure_pool(server, project)
    deploy(server, project, "run-campaign", timings=timings)
    deployment = deployment_names(server)["run-campaign"]

    sim = start_simulator_process(
        tmp_path / "sim", devices=200, groups=4, seed=9, clock="manual", rate_limit=0
    )
    worker = None
    try:
        db_url = f"sqlite:///{tmp_path / 'store.db'}"
        db = store.get_engine(db_url)
        store.upgrade_schema(db)
        members = group_members(sim, GROUP)
        owners, tokens = six_owners(db, members)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        population = OwnerPopulation(url, owners=owners, tokens=tokens, seed=1, mix=MIX)
        assert probe_consent_api(url, timeout=1) is None  # nobody serves it before the run

        flow_run_id = trigger(
            deployment.id, {"campaign": "campaigns/e2e/consent.yaml", "clock": "sim"}
        )
        worker_log = tmp_path / "worker.log"
        env = {
            "FLEETWAVE_DB_URL": db_url,
            **sim.driver_env(),
            "FLEETWAVE_CONSENT_PORT": str(port),
            "FLEETWAVE_CONSENT_HOST": "127.0.0.1",
            "FLEETWAVE_CONSENT_SERVE": "true",
        }
        t0 = time.monotonic()
        worker = _start_worker(server, tmp_path, env, worker_log)

        # the run serves the API as it starts; owners answer once the plan is offered
        fingerprint = store.store_fingerprint(db)
        served_at = None
        answered: dict[str, int] = {}
        while worker.poll() is None:
            elapsed = time.monotonic() - t0
            assert elapsed < RUN_TIMEOUT, f"the flow run did not end\n{worker_log.read_text()}"
            found = probe_consent_api(url, timeout=1)
            if found is None:
                assert served_at is not None or elapsed < API_TIMEOUT, (
                    f"the flow run's consent API never answered on {url} within "
                    f"{API_TIMEOUT:.0f} s\n{worker_log.read_text()}"
                )
            else:
                served_at = served_at or elapsed
                assert found.store == fingerprint, (found, fingerprint)
                sim_now = parse_sim_time(httpx.get(f"{sim.base_url}/sim/clock").json())
                try:
                    for action, n in asyncio.run(population.answer(sim_now)).items():
                        answered[action] = answered.get(action, 0) + n
                except httpx.TransportError:  # the run ended between probe and answer
                    pass
            time.sleep(0.2)
        timings.worker = time.monotonic() - t0
        log = worker_log.read_text(errors="replace")
        assert worker.returncode == 0, log
        assert served_at is not None, f"the consent API never answered on {url}\n{log}"

        flow_run = read_flow_run(flow_run_id)
        assert flow_run.state is not None
        assert flow_run.state.is_completed(), f"{flow_run.state!r}\n{log}"
        assert flow_run.deployment_id == deployment.id
        # served for the life of the run only
        assert probe_consent_api(url, timeout=2) is None

        with store.session_scope(db, read_only=True) as s:
            campaign = store.get_campaign(s, name=NAME)
            assert campaign.id is not None
            runs = {r.device_id: r for r in store.iter_device_runs(s, campaign_id=campaign.id)}
            consent = store.consent_rows(s, campaign_id=campaign.id, device_ids=list(runs))
            counts = store.consent_state_counts(s, campaign_id=campaign.id)
            first_sent: dict[str, Any] = {}
            chunks = store.list_chunks(s, campaign_id=campaign.id)
            for c in sorted(chunks, key=lambda c: c.created_at):
                for d in c.device_ids:
                    first_sent.setdefault(d, c.created_at)
        db.dispose()
        assert campaign.status is store.CampaignStatus.COMPLETED

        # the devices offered the plan (those already on the version are never offered)
        offered = set(consent)
        confirm = {d for d in offered if population.behaviours[d] is Behaviour.CONFIRM}
        cancel = {d for d in offered if population.behaviours[d] is Behaviour.CANCEL}
        assert confirm and cancel, population.behaviours
        assert answered == {"confirm": len(confirm), "cancel": len(cancel)}, answered
        assert counts == {
            "awaiting": 0,
            "confirmed": len(confirm),
            "appointed": 0,
            "declined": len(cancel),
            "expired": 0,
            "auto": 0,
        }

        # the platform's side: one task for each consenting device, none for anyone else
        tasks = simulator_process_stats(sim, tasks=True)["device_task_counts"]
        sent = {d: n for d, n in tasks.items() if n}
        assert sent == dict.fromkeys(confirm, 1), "one task per consenting device, no other"
        for d in confirm:
            answered_at = consent[d].answered_at
            assert answered_at is not None and first_sent[d] >= answered_at, d
            assert runs[d].status.is_final, (d, runs[d].status)
        for d in cancel:
            assert (runs[d].status, runs[d].failure_kind) == (D.SKIPPED, "consent_declined")

        # the log is the flow run's too (it says it served), and holds no credential
        assert f"serving this store ({fingerprint}) on {url} for this run" in log, log
        leaked = [t for t in tokens.values() if t in log]
        assert not leaked, f"{len(leaked)} owner token(s) in the worker's log"
        assert DEMO_SECRET not in log, "the IoDM secret is in the worker's log"
        print(
            f"\ndeploy {timings.deploy:.1f} s, API up after {served_at:.1f} s, worker run "
            f"{timings.worker:.1f} s; {len(confirm)} confirmed, {len(cancel)} declined"
        )
    finally:
        if worker is not None:
            stop_process_group(worker)
        sim.stop()

"""A nightly deployment's run pauses at an approval gate for longer than Prefect's lease
renewal interval, then resumes and completes (issue: approvals crashed nightly runs).

Prefect 3.9 revokes a deployment concurrency slot when its run pauses, and the run's next
renewal of that lease (every 0.75 x 300 s, hard-coded in ``prefect/flow_engine.py``; no
setting shortens it) then crashed the run. The deployments no longer carry a
``concurrency_limit`` (one run per campaign is the store's lease). To make the proof cost
seconds, the worker's processes import a ``sitecustomize`` that shortens Prefect's renewal
interval to 3 s (``prefect.concurrency._leases._RENEWAL_FRACTION``, private: the shim writes
a marker file only when it could set it, and the test checks the marker), so the pause below
outlasts several renewals.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.flow_runs import resume_flow_run

from fleetwave import store
from tests.e2e.conftest import PrefectServer, SimProcess
from tests.e2e.deploy.harness import (
    Timings,
    deploy,
    deployment_names,
    ensure_pool,
    read_flow_run,
    run_worker_once,
    trigger,
)
from tests.e2e.deploy.test_deploy import project, simulator_process_stats  # noqa: F401

NIGHTLY = "nightly-trackers-rollback"

# Trackers of one group to a software version no other test of the session sends.
GATED = """\
name: e2e-nightly-approval
kind: software
package: {version: "5.3.0", device_type: Tracker, model: TRK-9, manufacturer_name: Roamly}
targets: {groups: [{name: trackers-madrid}]}
waves:
  - count: 5
  - percent: 100
    approval: true
policy: {poll_interval: 1m, task_timeout: 2h}
thresholds: {max_failure_percent: 50, min_finished: 5, wave_success_percent: 50}
"""

#: Seconds between two renewals of a Prefect concurrency lease in the worker's processes.
RENEWAL_SECONDS = 3.0
#: How long the run stays paused: several renewals, and the retries of a failed one.
PAUSE_SECONDS = 25.0

SHIM = f"""\
import os

try:
    import prefect.concurrency._leases as _leases
except Exception:
    _leases = None
if _leases is not None and hasattr(_leases, "_RENEWAL_FRACTION"):
    _leases._RENEWAL_FRACTION = {RENEWAL_SECONDS} / 300
    marker = os.environ.get("FLEETWAVE_TEST_SHIM_MARKER")
    if marker:
        with open(marker, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
"""


def _state(flow_run_id: UUID) -> Any:
    return read_flow_run(flow_run_id).state


def _wait_for(flow_run_id: UUID, what: str, ok: Any, log: list[str], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _state(flow_run_id)
        if state is not None and ok(state):
            return state
        if state is not None and state.is_final():
            raise AssertionError(f"the flow run ended {state!r} before {what}\n{''.join(log)}")
        time.sleep(0.5)
    raise AssertionError(f"the flow run never {what}: {_state(flow_run_id)!r}\n{''.join(log)}")


@pytest.mark.slow  # a deploy, a worker and a 25 s pause: about 2.5 min on a loaded machine
def test_a_nightly_run_paused_for_approval_outlives_lease_renewals_and_completes(
    prefect_server_handle: PrefectServer,
    simulator_process: SimProcess,
    project: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = prefect_server_handle
    timings = Timings()
    (project / "campaigns" / "e2e" / "approval.yaml").write_text(GATED)
    ensure_pool(server, project)
    deploy(server, project, NIGHTLY, timings=timings)
    nightly = deployment_names(server)[NIGHTLY]
    assert nightly.global_concurrency_limit is None, "one run per campaign is the campaign lease"

    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = store.get_engine(db_url)
    store.upgrade_schema(engine)
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM)
    marker = tmp_path / "shim-loaded"
    pythonpath = os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))

    flow_run_id = trigger(
        nightly.id,
        {"campaign": "campaigns/e2e/approval.yaml", "clock": "sim", "approval_poll_interval": 1},
    )
    log: list[str] = []
    failure: list[BaseException] = []

    def _worker() -> None:
        try:
            log.append(
                run_worker_once(
                    server,
                    tmp_path,
                    env={
                        "PYTHONPATH": pythonpath,
                        "FLEETWAVE_TEST_SHIM_MARKER": str(marker),
                        "FLEETWAVE_DB_URL": db_url,
                        **simulator_process.driver_env(),
                    },
                    timings=timings,
                    timeout=420,
                )
            )
        except BaseException as exc:  # re-raised by the test thread
            failure.append(exc)

    worker = threading.Thread(target=_worker, daemon=True)
    worker.start()
    try:
        _wait_for(flow_run_id, "paused", lambda s: s.is_paused(), log, timeout=300)
        paused_at = time.monotonic()
        while time.monotonic() - paused_at < PAUSE_SECONDS:  # several renewal intervals
            state = _state(flow_run_id)
            assert state is not None and state.is_paused(), f"{state!r}\n{''.join(log)}"
            time.sleep(1.0)
        resume_flow_run(flow_run_id, run_input={"decision": "approve", "comment": "at last"})
    finally:
        worker.join(timeout=420)
    if failure:
        raise failure[0]
    assert not worker.is_alive(), "the worker did not finish"
    # the flow-run process (not only the worker) ran with the short renewal interval
    assert len(marker.read_text().split()) >= 2, "the renewal shim was not loaded"

    final = _state(flow_run_id)
    assert final is not None
    assert (final.type.value, final.name) == ("COMPLETED", "Completed"), f"{final!r}\n{log}"
    with store.session_scope(engine, read_only=True) as s:
        campaign = store.get_campaign(s, name="e2e-nightly-approval")
        assert campaign.id is not None
        wave = store.get_waves(s, campaign_id=campaign.id)[1]
        devices = set(store.iter_device_ids(s, campaign_id=campaign.id))
    engine.dispose()
    assert campaign.status is store.CampaignStatus.COMPLETED
    assert wave.approval_decision is store.ApprovalDecision.APPROVED
    assert wave.approval_comment == "at last"
    counts = simulator_process_stats(simulator_process, tasks=True)["device_task_counts"]
    sent = {d: counts[d] for d in devices if counts.get(d)}
    assert sent and max(sent.values()) == 1, "no device may get two tasks"
    print(
        f"\npaused {PAUSE_SECONDS:.0f} s (renewal every {RENEWAL_SECONDS:.0f} s in the worker), "
        f"worker run {timings.worker:.1f} s"
    )

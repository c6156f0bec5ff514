"""A lost worker's flow run ends Crashed in Prefect instead of staying Running.

Live: a real Prefect server, the deployments of prefect.yaml (heartbeats every 30 s in the
flow-run process), the automation of ``fleetwave prefect setup`` (run twice: one
automation), and a process worker in its own process group. The run sleeps until its
campaign's window opens (hours away), so it stays Running. Once Prefect holds two of its
heartbeats (they repeat every 30 s, and the healthy run stays Running meanwhile), the
worker's whole process group (the worker and the flow-run process) is killed with SIGKILL,
as a lost machine would be. Nothing reports the run any more: only the automation can end
it, within a heartbeat plus the window (plus the server's proactive evaluation, every 5 s)
of the kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pendulum
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from fleetwave import store
from fleetwave.sim.testing import SimProcess, start_simulator_process
from flows.heartbeats import AUTOMATION_NAME, HEARTBEAT_SECONDS, WINDOW_SECONDS
from tests.e2e.conftest import PrefectServer
from tests.e2e.deploy.harness import Timings, deploy, ensure_pool, read_flow_run, trigger
from tests.e2e.deploy.test_deploy import project  # noqa: F401
from tests.e2e.deploy.test_topology import Worker, _tree, start_worker

ROOT = Path(__file__).resolve().parents[3]

#: How long after the kill the run must be Crashed: its last heartbeat may be up to one
#: heartbeat old at the kill, the window runs from it, the server evaluates every 5 s; the
#: rest is slack for a loaded machine.
CRASH_BOUND = HEARTBEAT_SECONDS + WINDOW_SECONDS + 5 + 25

# Trackers of one group, allowed only in a daily hour that starts six hours from now: the run
# (sleep_through_windows) sleeps Running until then and sends nothing.
SLEEPER = """\
name: e2e-lost-worker
kind: software
package: {{version: "5.3.0", device_type: Tracker, model: TRK-9, manufacturer_name: Roamly}}
targets: {{groups: [{{name: trackers-madrid}}]}}
waves: [{{percent: 100}}]
windows:
  timezone: UTC
  allowed:
    - {{days: daily, start: "{start}", end: "{end}"}}
policy: {{poll_interval: 1m, task_timeout: 2h}}
"""


@pytest.fixture
def own_simulator(tmp_path: Path) -> Iterator[SimProcess]:
    """A simulator of this test's own: the session's may hold other tests' live tasks for
    the same trackers, and the campaign would then refuse to plan (rightly)."""
    sim = start_simulator_process(
        tmp_path / "sim", devices=200, groups=4, seed=9, clock="manual", rate_limit=0
    )
    try:
        yield sim
    finally:
        sim.stop()


def _fleetwave_prefect_setup(server: PrefectServer) -> str:
    """``fleetwave prefect setup`` against ``server``, as an operator runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "fleetwave", "prefect", "setup"],
        cwd=ROOT,
        env={**server.env(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _heartbeats(flow_run_id: UUID) -> int:
    """How many heartbeat events of the flow run the server holds."""
    with get_client(sync_client=True) as client:
        page = client.read_events(
            EventFilter(
                event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
            ),
            limit=50,
        )
    return len(page.events)


def _kill_group(worker: Worker) -> None:
    """SIGKILL the worker's process group and every process it started (a flow-run process
    in a session of its own included): the machine is gone."""
    pids = _tree(worker.process.pid)
    with suppress(ProcessLookupError):
        os.killpg(worker.process.pid, signal.SIGKILL)
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.process.wait(timeout=30)


def _wait(what: str, check: Any, seconds: float, worker: Worker) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1.0)
    log = worker.log.read_text(errors="replace")[-4000:]
    raise AssertionError(f"no {what} within {seconds:.0f} s\n--- {worker.name}\n{log}")


@pytest.mark.slow  # a deploy, two heartbeats, then up to CRASH_BOUND s: about 2.5 min
@pytest.mark.timeout(420)
def test_a_lost_workers_run_ends_crashed(
    prefect_server_handle: PrefectServer,
    own_simulator: SimProcess,
    project: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = prefect_server_handle
    t0 = time.monotonic()
    opens = pendulum.now("UTC").add(hours=6)
    (project / "campaigns" / "e2e" / "sleeper.yaml").write_text(
        SLEEPER.format(start=opens.format("HH:00"), end=opens.add(hours=1).format("HH:00"))
    )
    ensure_pool(server, project)
    deploy(server, project, "run-campaign", timings=Timings())

    # the automation, made twice: one automation on the server
    first, again = _fleetwave_prefect_setup(server), _fleetwave_prefect_setup(server)
    assert "created" in first and "unchanged" in again, (first, again)
    with get_client(sync_client=True) as client:
        (automation,) = [a for a in client.read_automations() if a.name == AUTOMATION_NAME]
    assert automation.enabled
    assert automation.trigger.within == timedelta(seconds=WINDOW_SECONDS)  # type: ignore[union-attr]

    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = store.get_engine(db_url)
    store.upgrade_schema(engine)
    engine.dispose()
    flow_run_id = trigger(
        "advance-campaign/run-campaign",
        {"campaign": "campaigns/e2e/sleeper.yaml", "sleep_through_windows": True},
    )
    work = tmp_path / "work"
    work.mkdir()
    env = {
        "FLEETWAVE_DB_URL": db_url,
        **own_simulator.driver_env(),
    }
    worker = start_worker(server, "worker-lost", work, env, False, limit=1)
    try:

        def beating() -> bool:
            state = read_flow_run(flow_run_id).state
            assert state is None or not state.is_final(), state
            return state is not None and state.is_running() and _heartbeats(flow_run_id) >= 2

        # two heartbeats: they repeat every HEARTBEAT_SECONDS (prefect.yaml; Prefect's own
        # default, 180 s, would not come in time), and the run outlives one interval alive
        _wait("Running flow run with two heartbeats", beating, 2 * HEARTBEAT_SECONDS + 60, worker)
        _kill_group(worker)
        killed = time.monotonic()
        assert read_flow_run(flow_run_id).state_type is StateType.RUNNING  # nothing reported

        def crashed() -> bool:
            state = read_flow_run(flow_run_id).state
            assert state is not None
            assert state.type in (StateType.RUNNING, StateType.CRASHED), state
            return state.type is StateType.CRASHED

        _wait(f"Crashed state (run {flow_run_id})", crashed, CRASH_BOUND, worker)
        after = time.monotonic() - killed
    finally:
        worker.stop()
    state = read_flow_run(flow_run_id).state
    assert state is not None and "no heartbeat" in (state.message or ""), state
    print(
        f"\nrun Crashed {after:.0f} s after its worker was killed (bound {CRASH_BOUND} s); "
        f"test {time.monotonic() - t0:.0f} s"
    )

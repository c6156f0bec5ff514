"""The campaign flow of a consent campaign serves the end-user consent API while it runs.

The flow runs in this process against a real local Prefect server and the simulator (its
manual clock linked to the run); simulated owners (``fleetwave.sim.owners``) answer over
real HTTP at the address the worker settings name (``FLEETWAVE_CONSENT_PORT``). Either the
flow run serves it, or it reuses the API ``fleetwave consent serve`` already serves on that
port for the same store; a port taken by anything else fails the run with one ERROR line.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pendulum
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

from fleetwave import store
from fleetwave.consent.serve import probe_consent_api
from fleetwave.serving import stop_process_group
from fleetwave.sim.config import DEMO_APP_ID, DEMO_SECRET
from fleetwave.sim.owners import Behaviour, OwnerMix, OwnerPopulation
from fleetwave.sim.testing import run_simulator
from tests.e2e.conftest import drain_prefect_workers, free_port
from tests.e2e.engine.helpers import campaign_row, chunks, device_rows, linked, six_owners

D = store.DeviceRunStatus

CAMPAIGN = """
name: {name}
kind: firmware
package: {{version: "1.0.0", device_type: Tracker, model: TRK-9, manufacturer_name: Roamly}}
targets: {{groups: [{{name: trackers-madrid}}]}}
waves:
  - percent: 100
policy: {{execute: now, poll_interval: 5m, task_timeout: 2h}}
thresholds: {{max_failure_percent: 60, min_finished: 5, wave_success_percent: 0}}
consent: {{period: 3d, answer_timeout: 2d}}
"""

# nobody stays silent, so the wave ends once everyone answered (no 2-day wait); nobody
# appoints (an appointment must start after the API's clock, which the run moves on)
MIX = OwnerMix(confirm=0.6, appoint=0, cancel=0.2, silent=0, auto=0.2)


@pytest.fixture
def flow_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, Any, int]]:
    """The simulator (its clock starting now, so a real-clock API shares the plan period),
    a store, and the consent API's port in the worker settings."""
    start = pendulum.now("UTC").replace(microsecond=0)
    with run_simulator(
        devices=600, groups=6, seed=9, clock="manual", rate_limit=0, start=start
    ) as sim:
        port = free_port()
        monkeypatch.setenv("IODM_BASE_URL", sim.base_url)
        monkeypatch.setenv("IODM_APP_ID", DEMO_APP_ID)
        monkeypatch.setenv("IODM_SECRET", DEMO_SECRET)
        monkeypatch.setenv("IODM_RATE_LIMIT", "0")
        monkeypatch.setenv("FLEETWAVE_DB_URL", f"sqlite:///{tmp_path / 'flow.db'}")
        monkeypatch.setenv("FLEETWAVE_CONSENT_PORT", str(port))
        monkeypatch.delenv("FLEETWAVE_CONSENT_SERVE", raising=False)
        monkeypatch.delenv("FLEETWAVE_CONSENT_HOST", raising=False)
        db = store.get_engine(f"sqlite:///{tmp_path / 'flow.db'}")
        store.upgrade_schema(db)
        yield sim, db, port
        db.dispose()


async def _trackers(sim: Any) -> list[str]:
    from fleetwave.platforms.iodm import IoDMPlatform

    with linked(sim.base_url, DEMO_APP_ID, DEMO_SECRET) as (clock, settings):
        platform = IoDMPlatform(settings, clock=clock)
        try:
            groups = [g async for g in platform.list_groups(name="trackers-madrid")]
            return sorted({d for g in groups async for d in platform.group_members(g.group_id)})
        finally:
            await platform.aclose()


def _sent(db: Any, name: str) -> set[str]:
    """The devices in the campaign's tasks so far."""
    try:
        return {d for c in chunks(db, name) for d in c.device_ids}
    except store.NotFoundError:  # not planned yet
        return set()


async def _flow_logs(flow_run_id: str) -> list[Any]:
    await asyncio.to_thread(drain_prefect_workers)
    async with get_client() as client:
        return list(
            await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)]))
            )
        )


def _cli_service(db_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``fleetwave consent serve`` on ``port`` (as an operator runs it as a service)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetwave", "consent", "serve", "--db", db_url],
            env={
                **os.environ,
                "FLEETWAVE_CONSENT_PORT": str(port),
                "PYTHONPATH": os.pathsep.join(sys.path),
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while probe_consent_api(f"http://127.0.0.1:{port}", timeout=1) is None:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return proc


@pytest.mark.parametrize("served_by", ["flow-run", "consent-serve"])
async def test_owners_answer_the_api_the_flow_run_serves(
    prefect_server: str, flow_env: Any, tmp_path: Path, served_by: str
) -> None:
    from flows.campaign import run_campaign

    sim, db, port = flow_env
    url = f"http://127.0.0.1:{port}"
    name = f"consent-flow-{served_by}"
    path = tmp_path / "campaign.yaml"
    path.write_text(CAMPAIGN.format(name=name))
    devices = await _trackers(sim)
    owners, tokens = six_owners(db, devices)
    population = OwnerPopulation(url, owners=owners, tokens=tokens, seed=1, mix=MIX)
    auto = [d for d, b in population.behaviours.items() if b is Behaviour.AUTO]
    with store.session_scope(db) as s:
        for d in auto:
            store.set_auto_upgrade(s, device_id=d, enabled=True, actor="owner", now=sim.clock())
    service = None
    if served_by == "consent-serve":
        service = _cli_service(str(db.url), port, tmp_path / "consent-serve.log")
    assert (probe_consent_api(url) is not None) == (service is not None)

    flow_task = asyncio.create_task(
        run_campaign(campaign=str(path), clock="sim", return_state=True)
    )
    answered = 0
    try:
        # the flow run offers the plan, then the owners answer; with no silent owner the
        # run ends once every device was answered for and upgraded
        deadline = time.monotonic() + 180
        while not flow_task.done():
            assert time.monotonic() < deadline, "the flow run did not end"
            if answered == 0:
                consenting = {
                    d for d, b in population.behaviours.items() if b is not Behaviour.AUTO
                }
                assert not _sent(db, name) & consenting, "sent before the owner answered"
            found = await asyncio.to_thread(probe_consent_api, url)
            if found is not None:
                assert found.store == store.store_fingerprint(db)
                try:
                    answered += sum((await population.answer(sim.clock())).values())
                except httpx.TransportError:  # the run is ending: its API stopped
                    break
            await asyncio.sleep(0.1)
        state = await asyncio.wait_for(flow_task, timeout=60)
    finally:
        if not flow_task.done():
            flow_task.cancel()
        if service is not None:
            assert service.poll() is None  # the flow run left the service alone
            stop_process_group(service)

    result = await state.aresult()
    assert result["kind"] == "completed", result
    runs = device_rows(db, name)
    with store.session_scope(db, read_only=True) as s:
        cid = campaign_row(db, name).id
        assert cid is not None
        consent = store.consent_rows(s, campaign_id=cid, device_ids=list(runs))
        counts = store.consent_state_counts(s, campaign_id=cid)
    # the devices offered the plan (one already on the version is skipped, never offered)
    by = {
        b: sorted(d for d, x in population.behaviours.items() if x is b and d in consent)
        for b in Behaviour
    }
    confirm, cancel, auto = by[Behaviour.CONFIRM], by[Behaviour.CANCEL], by[Behaviour.AUTO]
    assert confirm and cancel and auto, by
    assert answered  # (the consent states below say every owner's answer arrived)
    assert counts == {
        "awaiting": 0,
        "confirmed": len(confirm),
        "appointed": 0,
        "declined": len(cancel),
        "expired": 0,
        "auto": len(auto),
    }
    first_chunk: dict[str, Any] = {}
    for c in sorted(chunks(db, name), key=lambda c: c.created_at):
        for d in c.device_ids:
            first_chunk.setdefault(d, c)
    # cancelled devices never reached the platform; every consenting one did, after consent
    for d in cancel:
        assert d not in first_chunk
        assert (runs[d].status, runs[d].failure_kind) == (D.SKIPPED, "consent_declined")
    for d in [*confirm, *auto]:
        assert d in first_chunk and runs[d].status.is_final, d
    if served_by == "flow-run":  # the API ran on the run's clock: times compare
        for d in confirm:
            answered_at = consent[d].answered_at
            assert answered_at is not None
            assert first_chunk[d].created_at >= answered_at, d

    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    messages = [log.message for log in await _flow_logs(str(flow_run_id))]
    if served_by == "flow-run":
        line = f"serving this store ({store.store_fingerprint(db)}) on {url} for this run"
        assert any(line in m for m in messages), messages
        with pytest.raises(httpx.ConnectError):  # served for the life of the run only
            httpx.get(f"{url}/health", timeout=5)
    else:
        assert any(f"reusing the one already serving this store on {url}" in m for m in messages)


class _Other(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


async def test_a_port_taken_by_another_service_fails_the_run_with_one_line(
    prefect_server: str, flow_env: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from flows.campaign import run_campaign

    _sim, db, port = flow_env
    other = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    path = tmp_path / "campaign.yaml"
    path.write_text(CAMPAIGN.format(name="consent-port-taken"))
    try:
        state = await run_campaign(campaign=str(path), clock="sim", return_state=True)
    finally:
        other.shutdown()
        other.server_close()
    assert (state.type.value, state.name) == ("FAILED", "Failed")
    expected = (
        f"the consent API cannot listen on 127.0.0.1:{port}: Address already in use, and "
        "what listens there is not a fleetwave consent API"
    )
    assert state.message is not None and expected in state.message
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    logs = await _flow_logs(str(flow_run_id))
    ours = [
        log for log in logs if expected in log.message and "Finished in state" not in log.message
    ]
    assert len(ours) == 1 and ours[0].level == 40, [x.message for x in logs]
    assert "\n" not in ours[0].message
    assert "Traceback" not in capfd.readouterr().err
    with pytest.raises(store.NotFoundError):  # refused before the engine touched anything
        campaign_row(db, "consent-port-taken")

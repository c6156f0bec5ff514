"""The lost-run automation's definition (``flows.heartbeats``), no Prefect server: which
events it watches and expects, judged by the Prefect server's own trigger model, how
``ensure_automation`` keeps exactly one of it, and ``fleetwave prefect setup``'s one-line
errors (no server, a window too short)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import Automation, AutomationCore
from prefect.server.events.schemas.automations import EventTrigger as ServerEventTrigger
from prefect.server.events.schemas.events import ReceivedEvent

from flows.campaign import FLOW_NAME
from flows.heartbeats import (
    AUTOMATION_NAME,
    HEARTBEAT_SECONDS,
    MIN_WINDOW_SECONDS,
    WINDOW_SECONDS,
    ensure_automation,
    final_state_names,
    lost_run_automation,
)
from flows.states import ALREADY_RUNNING, OUTCOME_STATES

RUN = f"prefect.flow-run.{uuid.uuid4()}"
ROOT = Path(__file__).resolve().parents[3]


def _server_trigger(automation: AutomationCore) -> ServerEventTrigger:
    """The trigger as the Prefect server reads it (what it evaluates events with)."""
    return ServerEventTrigger.model_validate(automation.trigger.model_dump(mode="json"))


def _event(
    name: str, *, flow: str = FLOW_NAME, deployment: bool = True, resource: str = RUN
) -> ReceivedEvent:
    related: list[dict[str, str]] = [
        {
            "prefect.resource.id": f"prefect.flow.{uuid.uuid4()}",
            "prefect.resource.role": "flow",
            "prefect.resource.name": flow,
        }
    ]
    if deployment:
        related.append(
            {
                "prefect.resource.id": f"prefect.deployment.{uuid.uuid4()}",
                "prefect.resource.role": "deployment",
            }
        )
    return ReceivedEvent.model_validate(
        {
            "occurred": pendulum.now("UTC"),
            "event": name,
            "resource": {"prefect.resource.id": resource},
            "related": related,
            "id": uuid.uuid4(),
        }
    )


def test_a_deployment_run_of_the_campaign_flow_is_watched_from_its_heartbeats() -> None:
    trigger = _server_trigger(lost_run_automation())
    beat = _event("prefect.flow-run.heartbeat")
    assert trigger.covers(beat) and trigger.starts_after(beat.event) and trigger.expects(beat.event)
    assert trigger.for_each == {"prefect.resource.id"}  # one window per flow run
    assert trigger.posture == "Proactive" and trigger.threshold == 1
    assert trigger.within == timedelta(seconds=WINDOW_SECONDS)


def test_other_flows_and_runs_without_a_deployment_are_left_alone() -> None:
    trigger = _server_trigger(lost_run_automation())
    # another flow on the same server
    assert not trigger.covers(_event("prefect.flow-run.heartbeat", flow="someone-elses-flow"))
    # `fleetwave run` with PREFECT_API_URL: in-process, no deployment, Prefect's 180 s beat
    assert not trigger.covers(_event("prefect.flow-run.heartbeat", deployment=False))
    # a task run is not a flow run
    task_run = f"prefect.task-run.{uuid.uuid4()}"
    assert not trigger.covers(_event("prefect.task-run.Running", resource=task_run))


@pytest.mark.parametrize("name", sorted({n for _t, n in OUTCOME_STATES.values()}))
def test_every_state_a_campaign_run_ends_in_ends_the_wait(name: str) -> None:
    """A run ending AwaitingWindow (say) sends ``prefect.flow-run.AwaitingWindow``, not
    ``...Completed``: without it the automation would try to crash a finished run."""
    trigger = _server_trigger(lost_run_automation())
    event = _event(f"prefect.flow-run.{name}")
    assert trigger.covers(event) and trigger.expects(event.event)
    assert not trigger.starts_after(event.event)


def test_prefects_final_states_and_a_refused_run_end_the_wait_too() -> None:
    names = final_state_names()
    assert {"Completed", "Failed", "Cancelled", "Crashed", ALREADY_RUNNING} <= set(names)
    trigger = _server_trigger(lost_run_automation())
    for name in names:
        assert trigger.expects(f"prefect.flow-run.{name}"), name


@pytest.mark.parametrize("name", ["Paused", "Running", "Cancelling", "Pending"])
def test_a_state_that_is_not_final_does_not_end_the_wait(name: str) -> None:
    """A paused run keeps heartbeating (its process waits for the answer); one whose process
    died while paused or cancelling must still end Crashed."""
    assert not _server_trigger(lost_run_automation()).expects(f"prefect.flow-run.{name}")


def test_the_action_sets_the_run_crashed_without_forcing_a_final_run() -> None:
    (action,) = lost_run_automation().actions
    assert isinstance(action, ChangeFlowRunState)
    assert action.state is StateType.CRASHED
    assert not action.force  # a run that did end keeps its own final state
    assert "no heartbeat" in (action.message or "")


def test_the_window_is_three_heartbeats_and_never_below_two() -> None:
    assert HEARTBEAT_SECONDS >= 30  # Prefect's minimum (prefect/settings/models/flows.py)
    assert WINDOW_SECONDS == 3 * HEARTBEAT_SECONDS
    assert lost_run_automation(120).trigger.within == timedelta(seconds=120)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=f"at least {MIN_WINDOW_SECONDS} s"):
        lost_run_automation(MIN_WINDOW_SECONDS - 1)


class FakeAutomations:
    """The automation calls of a Prefect client, on a dict (what a server would hold)."""

    def __init__(self) -> None:
        self.held: dict[uuid.UUID, Automation] = {}
        self.calls: list[str] = []

    async def read_automations_by_name(self, name: str) -> list[Automation]:
        return [a for a in self.held.values() if a.name == name]

    async def create_automation(self, automation: AutomationCore) -> uuid.UUID:
        self.calls.append("create")
        new_id = uuid.uuid4()
        # as the server does: a new trigger id and every field read back
        data = automation.model_dump(mode="json")
        data["trigger"]["id"] = str(uuid.uuid4())
        self.held[new_id] = Automation.model_validate({**data, "id": new_id})
        return new_id

    async def update_automation(self, automation_id: uuid.UUID, automation: AutomationCore) -> None:
        self.calls.append("update")
        data = automation.model_dump(mode="json")
        self.held[automation_id] = Automation.model_validate({**data, "id": automation_id})

    async def delete_automation(self, automation_id: uuid.UUID) -> None:
        self.calls.append("delete")
        del self.held[automation_id]


async def test_ensure_creates_once_then_leaves_it_or_updates_a_changed_one() -> None:
    client: Any = FakeAutomations()
    assert await ensure_automation(client, lost_run_automation()) == "created"
    assert await ensure_automation(client, lost_run_automation()) == "unchanged"
    assert await ensure_automation(client, lost_run_automation(120)) == "updated"
    assert await ensure_automation(client, lost_run_automation(120)) == "unchanged"
    assert client.calls == ["create", "update"]
    (held,) = client.held.values()
    assert held.name == AUTOMATION_NAME
    assert held.trigger.within == timedelta(seconds=120)


async def test_ensure_leaves_one_automation_of_its_name() -> None:
    client: Any = FakeAutomations()
    for _ in range(3):  # e.g. made by hand from the docs, or by two operators at once
        await client.create_automation(lost_run_automation())
    assert await ensure_automation(client, lost_run_automation()) == "updated"
    assert len(client.held) == 1
    assert client.calls.count("delete") == 2


def _setup_cli(tmp_path: Path, *args: str, api_url: str | None) -> subprocess.CompletedProcess[str]:
    """``fleetwave prefect setup ARGS`` as an operator runs it, with its own PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path), PYTHONPATH=str(ROOT), DO_NOT_TRACK="1")
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_TELEMETRY_ENABLED="false")
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    return subprocess.run(
        [sys.executable, "-m", "fleetwave", "prefect", "setup", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_setup_without_prefect_api_url_says_to_set_it(tmp_path: Path) -> None:
    result = _setup_cli(tmp_path, api_url=None)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: PREFECT_API_URL is not set"), line
    assert "export PREFECT_API_URL=" in line


def test_setup_against_no_server_names_prefect_api_url_in_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/api"
    result = _setup_cli(tmp_path, api_url=url)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()  # no traceback
    assert f"Prefect server at {url} (PREFECT_API_URL)" in line, line


def test_setup_refuses_a_window_shorter_than_two_heartbeats(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/api"
    result = _setup_cli(tmp_path, "--window", "45", api_url=url)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: --window 45: the window must be at least {MIN_WINDOW_SECONDS}")

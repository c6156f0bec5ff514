"""Lost flow runs end Crashed: the heartbeat frequency fleetwave's deployments use and the
Prefect automation that crashes a run whose heartbeats stopped (README "A lost worker").

A flow run of a deployment emits the event ``prefect.flow-run.heartbeat`` every
``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (``prefect.yaml`` sets it to
:data:`HEARTBEAT_SECONDS` in every flow-run process). A worker that dies (SIGKILL, machine
lost) stops them, and nothing else reports its runs: they would stay Running. The automation
built by :func:`lost_run_automation` expects, after each heartbeat of a run of
``advance-campaign`` started from a deployment, another heartbeat or a final state within
the window, and otherwise sets the run Crashed. :func:`ensure_automation` writes it to the
Prefect server idempotently (``fleetwave prefect setup``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Literal

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from flows.campaign import FLOW_NAME
from flows.states import ALREADY_RUNNING, OUTCOME_STATES, REFUSED

__all__ = [
    "AUTOMATION_NAME",
    "HEARTBEAT_SECONDS",
    "HEARTBEAT_SETTING",
    "MIN_WINDOW_SECONDS",
    "WINDOW_SECONDS",
    "ensure_automation",
    "final_state_names",
    "lost_run_automation",
]

#: The Prefect setting (environment variable) of the flow-run process that turns heartbeats
#: on; Prefect 3.9 reads it in ``prefect/settings/models/flows.py`` (``flows.heartbeat_frequency``,
#: default 180, at least 30; ``PREFECT_RUNNER_HEARTBEAT_FREQUENCY`` is its old name).
HEARTBEAT_SETTING = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
#: Seconds between two heartbeats of a flow run (prefect.yaml sets it; Prefect's minimum).
HEARTBEAT_SECONDS = 30
#: Seconds without a heartbeat or a final state before a run is set Crashed: three missed
#: heartbeats, so one late event never crashes a healthy run.
WINDOW_SECONDS = 3 * HEARTBEAT_SECONDS
#: The shortest window ``fleetwave prefect setup --window`` accepts: two heartbeats.
MIN_WINDOW_SECONDS = 2 * HEARTBEAT_SECONDS
#: The automation's name on the Prefect server (one automation of that name).
AUTOMATION_NAME = "fleetwave: crash lost flow runs"

#: Prefect's own names of final states (a run crashed, cancelled or timed out by Prefect).
_PREFECT_FINAL_NAMES = ("Completed", "Failed", "Cancelled", "Crashed", "TimedOut")


def final_state_names() -> list[str]:
    """Every name a run of the campaign flow may end with: fleetwave's outcome states
    (``flows.states``) and Prefect's own final states, sorted. A state event is named after
    the state (``prefect.flow-run.AwaitingWindow``), so each must end a heartbeat's wait."""
    names = {name for _type, name in OUTCOME_STATES.values()}
    names.update((ALREADY_RUNNING, REFUSED, *_PREFECT_FINAL_NAMES))
    return sorted(names)


def lost_run_automation(window: int = WINDOW_SECONDS) -> AutomationCore:
    """The automation that sets a run of ``advance-campaign`` Crashed when neither a
    heartbeat nor a final state follows its last heartbeat within ``window`` seconds.

    Scope: flow runs of the flow ``advance-campaign`` that belong to a deployment (the
    heartbeat and state events of such a run name the flow and the deployment among their
    related resources). A run started in-process (``fleetwave run`` with PREFECT_API_URL set)
    has no deployment and is left alone: it heartbeats at Prefect's default (180 s), slower
    than the window. A paused run keeps heartbeating (its process waits for the answer).
    Raises ValueError for a window shorter than :data:`MIN_WINDOW_SECONDS`.
    """
    if window < MIN_WINDOW_SECONDS:
        raise ValueError(
            f"the window must be at least {MIN_WINDOW_SECONDS} s (two heartbeats of "
            f"{HEARTBEAT_SECONDS} s), got {window} s"
        )
    expect = {"prefect.flow-run.heartbeat"}
    expect.update(f"prefect.flow-run.{name}" for name in final_state_names())
    return AutomationCore(
        name=AUTOMATION_NAME,
        description=(
            f"Sets a deployment's run of the flow {FLOW_NAME} Crashed when neither a "
            f"heartbeat nor a final state arrives within {window} s of its last heartbeat "
            f"(its worker died; heartbeats every {HEARTBEAT_SECONDS} s, {HEARTBEAT_SETTING} "
            "in prefect.yaml). Made by `fleetwave prefect setup`; the campaign itself "
            "continues with its next run."
        ),
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect=expect,
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            match_related=[
                ResourceSpecification(
                    {"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAME}
                ),
                ResourceSpecification({"prefect.resource.role": "deployment"}),
            ],
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"no heartbeat for {window} s: the worker running this flow run was "
                    "lost; the campaign continues with its next run"
                ),
            )
        ],
    )


def _fingerprint(automation: AutomationCore) -> str:
    """What makes two automations the same, as JSON: name, description, enabled and the
    trigger and actions, without the trigger's id and with sets in a stable order."""
    data: dict[str, Any] = automation.model_dump(
        mode="json",
        include={"name", "description", "enabled", "trigger", "actions"},
    )
    trigger = data["trigger"]
    trigger.pop("id", None)
    for key in ("after", "expect", "for_each"):
        trigger[key] = sorted(trigger.get(key) or [])
    return json.dumps(data, sort_keys=True)


async def ensure_automation(
    client: PrefectClient, wanted: AutomationCore
) -> Literal["created", "updated", "unchanged"]:
    """Make the server hold exactly one automation named like ``wanted``, equal to it:
    create it, update the one there if it differs, delete any further ones of that name."""
    existing = sorted(await client.read_automations_by_name(wanted.name), key=lambda a: str(a.id))
    if not existing:
        await client.create_automation(wanted)
        return "created"
    first, *extra = existing
    for other in extra:
        await client.delete_automation(other.id)
    if _fingerprint(first) == _fingerprint(wanted):
        return "updated" if extra else "unchanged"
    await client.update_automation(first.id, wanted)
    return "updated"

"""How a campaign run ends in Prefect: one named flow-run state per outcome kind, and the
states of a run refused before it started (a lease held by another run, a bad input).

A Prefect automation alerts on a state's name (the event ``prefect.flow-run.<Name>``) or
type; README "Prefect states" lists them. :func:`campaign_result` turns the state back into
the outcome dict (or raises the error) for callers that run the flow in their process.
"""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import State, StateType
from prefect.states import Cancelled, Completed, Failed

from fleetwave.engine.lease import LeaseHeldError
from fleetwave.engine.outcome import OutcomeKind
from fleetwave.errors import UserError

__all__ = [
    "ALREADY_RUNNING",
    "OUTCOME_STATES",
    "REFUSED",
    "campaign_result",
    "error_state",
    "outcome_state",
]

#: Outcome kind -> (Prefect state type, state name). Completed means nothing is wrong (the
#: campaign finished, or rests until a window, an approval or the next run); Failed means
#: a person must look (the campaign failed, was halted or rolled back).
OUTCOME_STATES: dict[OutcomeKind, tuple[StateType, str]] = {
    OutcomeKind.COMPLETED: (StateType.COMPLETED, "Completed"),
    OutcomeKind.WAITING_WINDOW: (StateType.COMPLETED, "AwaitingWindow"),
    OutcomeKind.AWAITING_APPROVAL: (StateType.COMPLETED, "AwaitingApproval"),
    OutcomeKind.STOPPED: (StateType.COMPLETED, "Stopped"),
    OutcomeKind.HALTED: (StateType.FAILED, "Halted"),
    OutcomeKind.ROLLED_BACK: (StateType.FAILED, "RolledBack"),
    OutcomeKind.FAILED: (StateType.FAILED, "Failed"),
}

#: The state of a run that found another run advancing its campaign (nothing was done).
ALREADY_RUNNING = "AlreadyRunning"
#: The state of a run refused for an input or environment the operator must fix.
REFUSED = "Failed"


def outcome_state(outcome: dict[str, Any]) -> State[Any]:
    """The final flow-run state of a run that ended with ``outcome`` (``Outcome.as_dict()``);
    its data is the outcome, its message the outcome's reason."""
    kind = OutcomeKind(outcome["kind"])
    type_, name = OUTCOME_STATES[kind]
    message = outcome.get("reason") or kind.value.replace("_", " ")
    if type_ is StateType.FAILED:
        return Failed(name=name, message=message, data=outcome)
    return Completed(name=name, message=message, data=outcome)


def error_state(exc: UserError, message: str | None = None) -> State[Any]:
    """The final state of a run refused by ``exc``: Cancelled ``AlreadyRunning`` when another
    run holds the campaign's lease, else Failed; its message is ``message`` (default: the
    error's one line)."""
    text = message or str(exc)
    if isinstance(exc, LeaseHeldError):
        return Cancelled(name=ALREADY_RUNNING, message=text, data=exc)
    return Failed(name=REFUSED, message=text, data=exc)


async def campaign_result(state: State[Any]) -> dict[str, Any]:
    """The outcome dict of a finished run of the campaign flow; raises the run's error
    (a :class:`UserError` keeps its exit code) when it was refused."""
    result = await state.aresult(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if not isinstance(result, dict):
        raise RuntimeError(f"the campaign flow ended in state {state.name} without an outcome")
    return result

"""The typed input of an approval gate: what the Prefect UI shows as a form when a wave waits,
and the form's description (:func:`approval_description`).

The model checks types only; the rules of an appointment (both ends, at least an hour, in
the future, inside a window) are the engine's (``fleetwave.engine.approval.check_appointment``),
applied alike to the form's answer and to ``fleetwave approve``. Importing this module
registers :func:`resume_paused_flow_run` as the engine's way to resume a flow run paused at
an approval gate (``fleetwave.engine.control.register_flow_resumer``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from prefect.input import RunInput
from pydantic import Field, WithJsonSchema

from fleetwave.engine.approval import MIN_APPOINTMENT
from fleetwave.engine.context import ApprovalRequest
from fleetwave.engine.control import register_flow_resumer

__all__ = [
    "MIN_APPOINTMENT",
    "ApprovalInput",
    "approval_description",
    "input_problem",
    "resume_paused_flow_run",
]

#: A date-time field the Prefect UI renders as a date and time picker. Optional in the model
#: but never ``anyOf [date-time, null]`` in the schema: the UI shows that union as a type
#: menu whose "None" branch reads 'Property is type "None"'.
_DateTime = Annotated[datetime | None, WithJsonSchema({"type": "string", "format": "date-time"})]


def _no_default(schema: dict[str, Any]) -> None:
    """Leave an empty field out of the schema's defaults (``null`` is not a date-time)."""
    schema.pop("default", None)


class ApprovalInput(RunInput):
    """Approve or reject the next wave; optionally book an appointment (start/end, >= 1 h).

    Only the types are checked here, so any answer the form accepts reaches the flow; the
    appointment's rules (both ends, at least an hour, in the future, inside a window) are
    the engine's (``check_appointment``), and a refused answer is asked again with the
    reason in the form's description."""

    decision: Literal["approve", "reject"] = Field(
        description="approve: the wave may start; reject: the campaign halts."
    )
    comment: str = Field(default="", max_length=2000, description="Why (kept in the event log).")
    start: _DateTime = Field(
        default=None,
        json_schema_extra=_no_default,
        description="Optional appointment start, date and time (UTC unless an offset is given); "
        "leave empty to start at once.",
    )
    end: _DateTime = Field(
        default=None,
        json_schema_extra=_no_default,
        description="Optional appointment end, at least one hour after the start.",
    )


def input_problem(errors: list[Any]) -> str:
    """One line from pydantic's ``ValidationError.errors()`` of an answer to the form."""
    parts = []
    for err in errors:
        where = ".".join(str(x) for x in err.get("loc", ())) or "input"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "the answer could not be read"


def approval_description(req: ApprovalRequest) -> str:
    """The text the approval form shows above its fields (markdown): the wave, why it
    waits, the counts, and the reason the previous answer was refused, if it was."""
    text = (
        f"Campaign **{req.campaign}**: approve wave {req.wave} ({req.wave_name}, "
        f"{req.devices} devices)? Reason: {req.reason}. Counts so far: "
        f"{dict(req.summary)}. An appointment (start/end) must lie inside one of the "
        "campaign's windows and last at least one hour."
    )
    if req.problem:
        text = f"**Your last answer was refused:** {req.problem}. Answer again.\n\n{text}"
    return text


def resume_paused_flow_run(flow_run_id: str, run_input: dict[str, Any]) -> str | None:
    """Resume the Prefect flow run if it is paused (it then reads the input); None when
    there is no Prefect API server or the run is not paused."""
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        return None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
    if run.state is None or not run.state.is_paused():
        return None
    resume_flow_run(UUID(flow_run_id), run_input=run_input)  # raises if Prefect refuses it
    return flow_run_id


register_flow_resumer(resume_paused_flow_run)

"""The typed input of an approval gate: what the Prefect UI shows as a form when a wave waits,
and the form's description (:func:`approval_description`).

The model checks types only; the rules of an appointment (both ends, at least an hour, in
the future, inside a window) are the engine's (``fleetwave.engine.approval.check_appointment``),
applied alike to the form's answer and to ``fleetwave approve``. Importing this module
registers :func:`resume_paused_flow_run` as the engine's way to resume a flow run paused at
an approval gate (``fleetwave.engine.control.register_flow_resumer``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from prefect.input import RunInput
from pydantic import Field, WithJsonSchema

from fleetwave.clock import utc_instant
from fleetwave.engine.approval import MIN_APPOINTMENT
from fleetwave.engine.context import ApprovalReply, ApprovalRequest
from fleetwave.engine.control import register_flow_resumer

__all__ = [
    "MIN_APPOINTMENT",
    "ApprovalInput",
    "describe_approval",
    "describe_counts",
    "describe_decision",
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


def describe_counts(counts: Mapping[str, Any]) -> str:
    """The campaign's device counts for people: ``"750 targeted: 55 succeeded, 0 failed,
    0 timed out, 695 not finished; 52 skipped (never sent)"``."""
    total, skipped = int(counts.get("total", 0)), int(counts.get("skipped", 0))
    ok, failed = int(counts.get("succeeded", 0)), int(counts.get("failed", 0))
    timed_out = int(counts.get("timed_out", 0))
    other = int(counts.get("ignored", 0))
    targeted = total - skipped
    rest = max(0, targeted - ok - failed - timed_out - other)
    text = f"{targeted} targeted: {ok} succeeded, {failed} failed, {timed_out} timed out"
    if other:
        text += f", {other} failed uncounted"
    if rest:
        text += f", {rest} not finished"
    if skipped:
        text += f"; {skipped} skipped (never sent)"
    return text


def describe_approval(req: ApprovalRequest, *, waves: int, windows: str | None) -> str:
    """The text above the approval form: the reason the previous answer was refused (if it
    was), which wave (named once, numbered from 1), why it waits, the campaign's counts,
    and what an appointment must satisfy. ``windows``: the
    campaign's windows in words (``flows.schedules.describe_windows``), None if it has none."""
    noun = "device" if req.devices == 1 else "devices"
    head = (
        f"Campaign **{req.campaign}**: approve wave {req.wave + 1} of {waves} "
        f"({req.wave_name}, {req.devices} {noun})?"
    )
    lines = [head, "", f"Why it waits: {req.reason}.", ""]
    if req.problem:  # the previous answer was refused: say why, first
        lines = [f"**Your last answer was refused:** {req.problem}. Answer again.", "", *lines]
    if req.summary:
        lines += [f"So far: {describe_counts(req.summary)}.", ""]
    if windows:
        lines.append(
            f"An appointment (start and end, UTC unless an offset is given) is optional; it "
            f"must lie inside one of the campaign's windows, {windows}, and last at least "
            "one hour."
        )
    else:
        lines.append(
            "An appointment (start and end, UTC unless an offset is given) is optional; it "
            "must last at least one hour."
        )
    return "\n".join(lines)


def describe_decision(req: ApprovalRequest, reply: ApprovalReply) -> str:
    """The flow run's log line for an answer given in the form, written when it arrives and
    before the engine checks it (a refused appointment is then an ERROR line of its own)."""
    verb = "approve" if reply.approve else "reject"
    text = f"wave {req.wave + 1} ({req.wave_name}): the Prefect UI answered {verb}"
    if reply.start is not None and reply.end is not None:
        text += (
            f" for {utc_instant(reply.start).isoformat()} .. {utc_instant(reply.end).isoformat()}"
        )
    if reply.comment:
        text += f": {reply.comment}"
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

"""The typed input of an approval gate: what the Prefect UI shows as a form when a wave waits.

``fleetwave approve`` builds the same model, so the shell and the UI validate alike. The
check that an appointment lies inside the campaign's windows needs the campaign, so it is
done by the engine (``fleetwave.engine.approval.check_appointment``). Importing this
module registers :func:`resume_paused_flow_run` as the engine's way to resume a flow run
paused at an approval gate (``fleetwave.engine.control.register_flow_resumer``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from prefect.input import RunInput
from pydantic import Field, model_validator

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
    "resume_paused_flow_run",
]


class ApprovalInput(RunInput):
    """Approve or reject the next wave; optionally book an appointment (start/end, >= 1 h)."""

    decision: Literal["approve", "reject"] = Field(
        description="approve: the wave may start; reject: the campaign halts."
    )
    comment: str = Field(default="", max_length=2000, description="Why (kept in the event log).")
    start: datetime | None = Field(
        default=None, description="Appointment start (UTC unless an offset is given)."
    )
    end: datetime | None = Field(
        default=None, description="Appointment end; at least one hour after start."
    )

    @model_validator(mode="after")
    def _check_appointment(self) -> ApprovalInput:
        if (self.start is None) != (self.end is None):
            raise ValueError("an appointment needs both start and end (or neither)")
        if self.start is not None and self.end is not None:
            start, end = utc_instant(self.start), utc_instant(self.end)
            if end - start < MIN_APPOINTMENT:
                raise ValueError(
                    f"the appointment {start.isoformat()} .. {end.isoformat()} is shorter than "
                    "one hour; give an end at least one hour after the start"
                )
            self.start, self.end = start, end
        return self


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
    """The text above the approval form: which wave (named once, numbered from 1), why it
    waits, the campaign's counts, and what an appointment must satisfy. ``windows``: the
    campaign's windows in words (``flows.schedules.describe_windows``), None if it has none."""
    noun = "device" if req.devices == 1 else "devices"
    head = (
        f"Campaign **{req.campaign}**: approve wave {req.wave + 1} of {waves} "
        f"({req.wave_name}, {req.devices} {noun})?"
    )
    lines = [head, "", f"Why it waits: {req.reason}.", ""]
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
    """The flow run's log line for an answer given in the form."""
    verb = "approved" if reply.approve else "rejected"
    text = f"wave {req.wave + 1} ({req.wave_name}) {verb} in the Prefect UI"
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
    resume_flow_run(UUID(flow_run_id), run_input=run_input)
    return flow_run_id


register_flow_resumer(resume_paused_flow_run)

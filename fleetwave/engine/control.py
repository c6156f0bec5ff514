"""Operator controls outside a run: halt, resume and approve a campaign by name.

``fleetwave halt|resume|approve`` call these; a running flow notices a halt at its next
round (it re-reads the campaign's status), and an approval at its gate. ``approve`` also
resumes the campaign's flow run when it is paused waiting for that input, through a
:data:`FlowResumer` the orchestration layer registers (``flows.approval`` registers
Prefect's): the engine itself imports no orchestrator.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from fleetwave import store
from fleetwave.engine.approval import (
    REJECTED_HINT,
    StandingDecision,
    check_appointment,
    check_wave_decision,
    record_decision,
)
from fleetwave.engine.runner import threshold_counts
from fleetwave.errors import UserError
from fleetwave.plan.windows import WindowSchedule
from fleetwave.spec.model import ConsentTimeoutAction, FailureKind, WindowsSpec
from fleetwave.store import CampaignStatus, WaveStatus

__all__ = [
    "ApprovalResult",
    "FlowResumer",
    "approve_campaign",
    "halt_campaign",
    "register_flow_resumer",
    "resume_campaign",
    "schedule_from_snapshot",
]

log = logging.getLogger(__name__)

#: Resumes a paused flow run with the approval's input (a JSON-ready dict); returns the
#: run's id when it resumed it, None when the run was not paused (or cannot be reached).
FlowResumer = Callable[[str, dict[str, Any]], str | None]

_resumer: FlowResumer | None = None


def register_flow_resumer(resumer: FlowResumer | None) -> None:
    """Set (or clear, with None) how ``approve`` resumes a paused flow run."""
    global _resumer
    _resumer = resumer


def schedule_from_snapshot(spec: dict[str, Any]) -> WindowSchedule:
    """The window schedule of a stored spec snapshot (``model_dump(mode="json")``)."""
    windows = spec.get("windows")
    if not windows:
        return WindowSchedule()
    return WindowsSpec.model_validate(windows).schedule()


def _counting_spec(snapshot: dict[str, Any]) -> Any:
    """A stand-in with the threshold fields :func:`campaign_counts` reads."""
    kinds = (snapshot.get("thresholds") or {}).get("failure_kinds") or ["fail", "timeout"]

    class _T:
        failure_kinds = [FailureKind(k) for k in kinds]

    class _P:
        resubmit: dict[Any, Any] = {}  # no retry is due while a campaign is halted

    # only an explicit ``on_timeout: fail`` counts unanswered consent devices as failures
    consent = snapshot.get("consent") or None
    on_timeout = (consent or {}).get("on_timeout")

    class _C:
        timeout_action = ConsentTimeoutAction(on_timeout) if on_timeout else None

    class _S:
        thresholds = _T()
        policy = _P()

    _S.consent = _C() if consent else None  # type: ignore[attr-defined]
    return _S()


def halt_campaign(db: sa.Engine, *, name: str, by: str, reason: str, now: dt.datetime) -> str:
    """Halt a campaign: nothing new is submitted; a running flow stops at its next round."""
    with store.session_scope(db) as s:
        c = store.get_campaign(s, name=name)
        assert c.id is not None
        if c.status is CampaignStatus.HALTED:
            return f"campaign {name} is already halted ({c.status_reason})"
        if c.status.is_terminal:
            raise UserError(
                f"campaign {name!r} is {c.status.value}; there is nothing to halt",
                hint="`fleetwave status` shows it",
            )
        store.set_campaign_status(
            s,
            campaign_id=c.id,
            status=CampaignStatus.HALTED,
            now=now,
            reason=f"halted by {by}: {reason}",
            actor=by,
        )
    return f"campaign {name} halted; `fleetwave resume {name}` continues it"


def resume_campaign(db: sa.Engine, *, name: str, by: str, now: dt.datetime) -> str:
    """Resume a halted campaign: it runs again from the next flow run.

    Its device claims are taken again (an error names any device another campaign took
    meanwhile), and the failures so far become the thresholds' new baseline, so the limit
    that halted it applies to the devices that finish from now on.
    """
    with store.session_scope(db) as s:
        c = store.get_campaign(s, name=name)
        assert c.id is not None
        if c.status is not CampaignStatus.HALTED:
            raise UserError(
                f"campaign {name!r} is {c.status.value}, not halted",
                hint="only a halted campaign can be resumed",
            )
        waves = store.get_waves(s, campaign_id=c.id)
        rejected = [w.index for w in waves if w.status is WaveStatus.REJECTED]
        if rejected:
            raise UserError(
                f"campaign {name!r}: wave {rejected[0] + 1} was rejected at its approval gate",
                hint=REJECTED_HINT,
            )
        recorded, in_flight = threshold_counts(s, spec=_counting_spec(c.spec), campaign_id=c.id)
        counts = recorded + in_flight
        store.set_campaign_status(
            s,
            campaign_id=c.id,
            status=CampaignStatus.RUNNING,
            now=now,
            reason=f"resumed by {by}",
            actor=by,
        )
        store.append_event(
            s,
            campaign_id=c.id,
            kind="threshold_override",
            now=now,
            actor=by,
            data={"why": f"resumed by {by}", "baseline": counts.as_dict()},
        )
    return (
        f"campaign {name} resumed; the next run continues it "
        f"(`fleetwave run FILE` or the next scheduled run)"
    )


@dataclass(frozen=True, slots=True)
class ApprovalResult:
    """What ``approve`` did."""

    wave: int
    message: str
    resumed_flow_run: str | None = None


def _standing_decision(s: Any, campaign_id: int, wave: store.Wave) -> StandingDecision | None:
    """The wave's recorded decision if it still counts: no threshold breach of the wave
    came after it (the engine's gate asks again after a breach)."""
    if wave.approval_decision is None:
        return None
    events = store.recent_events(
        s, campaign_id=campaign_id, limit=500, kinds=["threshold_breach", "wave_approval"]
    )
    for e in events:  # newest first
        subject = e.subject or ""
        if e.kind == "threshold_breach" and subject == f"wave {wave.index}":
            return None
        if e.kind == "wave_approval" and subject.startswith(f"wave {wave.index} "):
            break
    return StandingDecision(
        wave.approval_decision, wave.approval_by or "?", wave.approval_at, wave.appointment_at
    )


def _pick_wave(waves: list[store.Wave], spec: dict[str, Any], wave: int | None) -> int:
    if wave is not None:
        if not any(w.index == wave for w in waves):
            raise UserError(f"there is no wave {wave + 1}", hint=f"waves are 1..{len(waves)}")
        return wave
    for w in waves:
        if w.status is WaveStatus.WAITING_APPROVAL:
            return w.index
    specs = spec.get("waves") or []
    for w in waves:
        if (
            w.status is WaveStatus.PENDING
            and w.index < len(specs)
            and specs[w.index].get("approval")
        ):
            return w.index
    raise UserError(
        "no wave is waiting for approval",
        hint="name one with --wave N to approve it in advance",
    )


def approve_campaign(
    db: sa.Engine,
    *,
    name: str,
    by: str,
    now: dt.datetime,
    wave: int | None = None,
    approve: bool = True,
    comment: str = "",
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    resume_flow: bool = True,
    replace: bool = False,
    resumer: FlowResumer | None = None,
) -> ApprovalResult:
    """Record an approval decision for a wave and resume a flow run paused waiting for it
    (with ``resumer``, default: the registered one; none registered: nothing is resumed and
    the next run reads the decision).

    ``now`` is the campaign's clock: an appointment must start after it. A wave that
    started or finished takes no decision; one that already has a decision standing
    takes a new one only with ``replace`` (the message then says which it replaced).
    """
    with store.session_scope(db) as s:
        c = store.get_campaign(s, name=name)
        assert c.id is not None
        waves = store.get_waves(s, campaign_id=c.id)
        snapshot, flow_run_id, status = dict(c.spec), c.flow_run_id, c.status
        index = _pick_wave(waves, snapshot, wave) if waves and not status.is_terminal else -1
        chosen = next((w for w in waves if w.index == index), None)
        standing = _standing_decision(s, c.id, chosen) if chosen is not None else None
    if status.is_terminal:
        raise UserError(
            f"campaign {name!r} is {status.value}; there is nothing to approve",
            hint=f"`fleetwave status {name}` shows it",
        )
    if chosen is None:
        raise UserError(
            f"campaign {name!r} is not planned yet", hint="run it once; it plans itself"
        )
    note = check_wave_decision(
        campaign=name, wave=index, status=chosen.status, standing=standing, replace=replace
    )
    appointment = check_appointment(schedule_from_snapshot(snapshot), start, end, now=now)
    record_decision(
        db,
        campaign=name,
        wave=index,
        approve=approve,
        by=by,
        now=now,
        comment=comment,
        appointment=appointment,
    )
    verb = "approved" if approve else "rejected"
    message = f"wave {index + 1} ({chosen.name}) of {name} {verb} by {by}"
    if appointment is not None:
        message += (
            f" for {appointment[0].to_iso8601_string()} .. {appointment[1].to_iso8601_string()}"
        )
    if note:
        message += f" ({note})"
    resumed = None
    resume = resumer or _resumer
    if resume_flow and flow_run_id and resume is not None:
        run_input: dict[str, Any] = {"decision": "approve" if approve else "reject"}
        run_input["comment"] = comment
        if appointment is not None:  # absent, not null: the form's fields are date-times
            run_input["start"] = appointment[0].isoformat()
            run_input["end"] = appointment[1].isoformat()
        resumed = _resume(resume, flow_run_id, run_input)
        if resumed:
            message += f"; resumed flow run {resumed}"
    return ApprovalResult(index, message, resumed)


def _resume(resume: FlowResumer, flow_run_id: str, run_input: dict[str, Any]) -> str | None:
    try:
        return resume(flow_run_id, run_input)
    except Exception as exc:  # the decision is stored; the next run reads it anyway
        log.warning("could not resume flow run %s: %s", flow_run_id, exc)
        return None

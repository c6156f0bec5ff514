"""Approval gates: validate an operator's decision and record it on the wave.

``fleetwave approve`` and the Prefect pause/resume form both end here, so an appointment
is checked the same way from the shell and from the UI: both ends given, the end after
the start, at least one hour long, starting in the future, and inside one allowed window
of the campaign (in its timezone). :func:`check_wave_decision` says whether a wave may
take a decision at all (not once it started or finished; a standing decision is replaced
only when asked to).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pendulum
import sqlalchemy as sa

from fleetwave import store
from fleetwave.clock import utc_instant
from fleetwave.errors import UserError
from fleetwave.plan.windows import WindowSchedule
from fleetwave.store import ApprovalDecision, WaveStatus

__all__ = [
    "MIN_APPOINTMENT",
    "REJECTED_HINT",
    "AppointmentError",
    "DecisionError",
    "StandingDecision",
    "check_appointment",
    "check_wave_decision",
    "record_decision",
]

MIN_APPOINTMENT = timedelta(hours=1)

#: What an operator can do once a wave was rejected: a rejected campaign stays halted for
#: good (``fleetwave resume`` refuses it; its devices are released).
REJECTED_HINT = (
    "a rejected campaign cannot be resumed; to try again, give the campaign file a new "
    "`name:` and run it as a new campaign, this one's devices are free"
)


class AppointmentError(UserError):
    """An appointment that is incomplete, reversed, too short, past, or outside the windows."""


class DecisionError(UserError):
    """A wave that cannot take this decision (started, finished, or already decided)."""


def _window_listing(schedule: WindowSchedule, after: pendulum.DateTime) -> str:
    """The next few windows in local time ("" when the schedule has no weekly windows)."""
    if not schedule.windows:
        return ""
    tz = schedule.timezone
    return ", ".join(
        f"{x.in_tz(tz).format('ddd YYYY-MM-DD HH:mm')}-{y.in_tz(tz).format('HH:mm')}"
        for x, y in schedule.upcoming(after, 3)
    )


def check_appointment(
    schedule: WindowSchedule,
    start: datetime | None,
    end: datetime | None,
    *,
    now: datetime,
) -> tuple[pendulum.DateTime, pendulum.DateTime] | None:
    """The appointment in UTC, or None when none was given; raises :class:`AppointmentError`.

    ``now`` is the campaign's clock (the appointment must start after it)."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise AppointmentError(
            "an appointment needs both a start and an end",
            hint="give both a start and an end (e.g. 2026-01-06T22:00 and 2026-01-07T01:00), "
            "or neither",
        )
    a, b = utc_instant(start), utc_instant(end)
    if b < a:
        raise AppointmentError(
            f"the appointment ends ({b.to_iso8601_string()}) before it starts "
            f"({a.to_iso8601_string()})",
            hint="give an end at least one hour after the start",
        )
    if b - a < MIN_APPOINTMENT:
        raise AppointmentError(
            f"the appointment {a.to_iso8601_string()} .. {b.to_iso8601_string()} lasts "
            f"{int((b - a).total_seconds() // 60)} minutes",
            hint="an appointment must last at least one hour",
        )
    current = utc_instant(now).replace(microsecond=0)
    if a <= current:
        listing = _window_listing(schedule, current)
        raise AppointmentError(
            f"the appointment starts at {a.to_iso8601_string()}, which is not in the future "
            f"(now {current.to_iso8601_string()})",
            hint="book a later time"
            + (f", e.g. inside {listing}" if listing else "")
            + ", or approve without an appointment to start at once",
        )
    span = schedule.next_window(a)
    if span is None or not (span[0] <= a and b <= span[1]):
        tz = schedule.timezone
        listing = _window_listing(schedule, max(a.subtract(days=1), current))
        raise AppointmentError(
            f"the appointment {a.in_tz(tz).format('YYYY-MM-DD HH:mm')} .. "
            f"{b.in_tz(tz).format('YYYY-MM-DD HH:mm')} ({tz}) is not inside one allowed "
            "window of the campaign",
            hint=f"pick a time inside a window, e.g. {listing}" if listing else None,
        )
    return a, b


@dataclass(frozen=True, slots=True)
class StandingDecision:
    """A decision already recorded on a wave that still counts (no breach came after it)."""

    decision: ApprovalDecision
    by: str
    at: datetime | None
    appointment_at: datetime | None = None

    def describe(self) -> str:
        when = (
            f" at {utc_instant(self.at).replace(microsecond=0).to_iso8601_string()}"
            if self.at
            else ""
        )
        booked = (
            f" (appointment {utc_instant(self.appointment_at).to_iso8601_string()})"
            if self.appointment_at
            else ""
        )
        return f"{self.decision.value} by {self.by}{when}{booked}"


_STARTED = frozenset({WaveStatus.RUNNING, WaveStatus.SOAKING})


def check_wave_decision(
    *,
    campaign: str,
    wave: int,
    status: WaveStatus,
    standing: StandingDecision | None,
    replace: bool,
) -> str | None:
    """May wave ``wave`` take a new decision? Raises :class:`DecisionError` if not.

    A wave takes a decision while it is pending or waiting for approval. A decision that
    still stands is replaced only with ``replace``; the returned note then says which one
    was replaced (None when there was none)."""
    if status in _STARTED:
        raise DecisionError(
            f"wave {wave + 1} of {campaign} is already {status.value}; there is nothing to approve",
            hint=f"`fleetwave halt {campaign}` stops it; `fleetwave status {campaign}` shows it",
        )
    if status.is_terminal:
        raise DecisionError(
            f"wave {wave + 1} of {campaign} has finished ({status.value}); "
            "there is nothing to approve",
            hint=f"`fleetwave status {campaign}` shows its waves",
        )
    if status is WaveStatus.HALTED:
        raise DecisionError(
            f"wave {wave + 1} of {campaign} is halted with the campaign; an approval would not "
            "restart it",
            hint=f"`fleetwave resume {campaign}` continues it",
        )
    if standing is None:
        return None
    if not replace:
        raise DecisionError(
            f"wave {wave + 1} of {campaign} was already {standing.describe()}",
            hint="add --replace to replace that decision, or --wave N to decide on another wave",
        )
    return f"replaces the decision {standing.describe()}"


def record_decision(
    db: sa.Engine,
    *,
    campaign: str,
    wave: int,
    approve: bool,
    by: str,
    now: datetime,
    comment: str = "",
    appointment: tuple[pendulum.DateTime, pendulum.DateTime] | None = None,
) -> None:
    """Store the decision on the wave (the engine reads it at the gate)."""
    with store.session_scope(db) as s:
        c = store.get_campaign(s, name=campaign)
        assert c.id is not None
        waves = store.get_waves(s, campaign_id=c.id)
        if not any(w.index == wave for w in waves):
            raise UserError(
                f"campaign {campaign!r} has no wave {wave + 1}",
                hint=f"its waves are 0..{len(waves) - 1}" if waves else "it is not planned yet",
            )
        text = comment
        if appointment is not None:
            text = f"{comment} (appointment until {appointment[1].to_iso8601_string()})".strip()
        store.record_approval(
            s,
            campaign_id=c.id,
            index=wave,
            decision=ApprovalDecision.APPROVED if approve else ApprovalDecision.REJECTED,
            by=by,
            now=now,
            comment=text or None,
            appointment_at=appointment[0] if appointment else None,
        )

"""Approval gates: validate an operator's decision and record it on the wave.

``fleetwave approve`` and the Prefect pause/resume form both end here, so an appointment
is checked the same way from the shell and from the UI: both ends given, at least one
hour long, and inside one allowed window of the campaign (in its timezone).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pendulum
import sqlalchemy as sa

from fleetwave import store
from fleetwave.clock import utc_instant
from fleetwave.errors import UserError
from fleetwave.plan.windows import WindowSchedule
from fleetwave.store import ApprovalDecision

__all__ = ["MIN_APPOINTMENT", "AppointmentError", "check_appointment", "record_decision"]

MIN_APPOINTMENT = timedelta(hours=1)


class AppointmentError(UserError):
    """An appointment that is incomplete, too short, or outside the campaign's windows."""


def check_appointment(
    schedule: WindowSchedule, start: datetime | None, end: datetime | None
) -> tuple[pendulum.DateTime, pendulum.DateTime] | None:
    """The appointment in UTC, or None when none was given; raises :class:`AppointmentError`."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise AppointmentError(
            "an appointment needs both --start and --end",
            hint="give both, e.g. --start 2026-01-06T22:00 --end 2026-01-07T01:00, or neither",
        )
    a, b = utc_instant(start), utc_instant(end)
    if b - a < MIN_APPOINTMENT:
        raise AppointmentError(
            f"the appointment {a.to_iso8601_string()} .. {b.to_iso8601_string()} lasts "
            f"{int((b - a).total_seconds() // 60)} minutes",
            hint="an appointment must last at least one hour",
        )
    span = schedule.next_window(a)
    if span is None or not (span[0] <= a and b <= span[1]):
        tz = schedule.timezone
        near = schedule.upcoming(a.subtract(days=1), 3)
        listing = ", ".join(
            f"{x.in_tz(tz).format('ddd YYYY-MM-DD HH:mm')}-{y.in_tz(tz).format('HH:mm')}"
            for x, y in near
        )
        raise AppointmentError(
            f"the appointment {a.in_tz(tz).format('YYYY-MM-DD HH:mm')} .. "
            f"{b.in_tz(tz).format('YYYY-MM-DD HH:mm')} ({tz}) is not inside one allowed "
            "window of the campaign",
            hint=f"pick a time inside a window, e.g. {listing}" if listing else None,
        )
    return a, b


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
                f"campaign {campaign!r} has no wave {wave}",
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

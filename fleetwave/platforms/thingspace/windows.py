"""How a task's execution policy becomes ThingSpace's schedule: dates plus hour windows.

ThingSpace schedules by *date*: a FOTA v1 upgrade takes ``startDate``/``endDate`` only; a
FOTA v2 campaign adds hour windows (``startTime`` 0-23, ``endTime`` 1-24) that open on
every day of the date range. fleetwave reads dates and hours in UTC. A task's window
``[start, end)`` is therefore sent as:

* within one UTC day: that date, and the hours ``start.hour .. end.hour`` (24 for midnight);
* whole UTC days (00:00 to 00:00): the dates, and hours 0-24;
* across a UTC midnight otherwise: cut at the first midnight (the same hours would open
  on the other days of the range too, so the part after midnight cannot be expressed);
  the devices not done by then time out and are sent again in a later window.

Bounds are on whole hours (start rounded up, end down); less than an hour left is
refused. A FOTA v1 (firmware) upgrade with a window must cover whole UTC days.
Everything here is a pure function; :func:`schedule_note` says in words what was sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pendulum

from fleetwave.platforms.base import ExecuteType, PackageKind, TaskPolicy
from fleetwave.platforms.errors import InvalidPolicy

__all__ = ["HOUR", "Schedule", "schedule_for", "schedule_note"]

HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Schedule:
    """What a create call sends: the date range, the hour windows (none: any hour), and the
    instants the platform may actually run between (UTC)."""

    start_date: date
    end_date: date
    hours: tuple[tuple[int, int], ...]
    opens: pendulum.DateTime
    closes: pendulum.DateTime
    cut_at_midnight: bool = False

    def hour_windows(self) -> list[dict[str, int]]:
        """The wire form of the hour windows (``downloadTimeWindowList`` and the like)."""
        return [{"startTime": a, "endTime": b} for a, b in self.hours]


def _floor_hour(t: pendulum.DateTime) -> pendulum.DateTime:
    return t.in_tz("UTC").replace(minute=0, second=0, microsecond=0)


def _ceil_hour(t: pendulum.DateTime) -> pendulum.DateTime:
    floor = _floor_hour(t)
    return floor if floor == t.in_tz("UTC") else floor.add(hours=1)


def _midnight(d: date) -> pendulum.DateTime:
    return pendulum.datetime(d.year, d.month, d.day, tz="UTC")


def schedule_for(
    kind: PackageKind, policy: TaskPolicy, *, now: pendulum.DateTime, campaign_days: int
) -> Schedule:
    """The ThingSpace schedule of a task sent ``now``; raises :class:`InvalidPolicy` when
    the policy's window cannot be expressed (before any call)."""
    now = now.in_tz("UTC")
    if policy.execute_type is not ExecuteType.CUSTOM:
        if policy.start_time is not None or policy.end_time is not None:
            raise InvalidPolicy(
                f"start_time/end_time need execute_type custom, not {policy.execute_type.value}"
            )
        today = now.date()
        last = today + timedelta(days=campaign_days)
        return Schedule(today, last, (), now, _midnight(last + timedelta(days=1)))
    if policy.start_time is None or policy.end_time is None:
        raise InvalidPolicy("a custom execution window needs both start_time and end_time")
    start = _ceil_hour(max(policy.start_time.in_tz("UTC"), _floor_hour(now)))
    end = _floor_hour(policy.end_time)
    if end - start < HOUR:
        raise InvalidPolicy(
            f"the window {policy.start_time.in_tz('UTC').to_iso8601_string()}.."
            f"{policy.end_time.in_tz('UTC').to_iso8601_string()} holds no whole UTC hour; "
            "ThingSpace schedules by the hour: widen the window to at least one hour"
        )
    whole_days = start.hour == 0 and end.hour == 0
    if kind is PackageKind.FIRMWARE:
        if not whole_days:
            raise InvalidPolicy(
                f"FOTA v1 firmware upgrades are scheduled by date only (startDate..endDate), so "
                f"the window {start.to_iso8601_string()}..{end.to_iso8601_string()} cannot be "
                "kept: use execute: now, or windows from 00:00 to 00:00 UTC"
            )
        return Schedule(start.date(), end.date() - timedelta(days=1), (), start, end)
    if whole_days:
        return Schedule(start.date(), end.date() - timedelta(days=1), (), start, end)
    next_midnight = _midnight(start.date() + timedelta(days=1))
    cut = end > next_midnight
    closes = next_midnight if cut else end
    last_hour = 24 if closes == next_midnight else closes.hour
    return Schedule(start.date(), start.date(), ((start.hour, last_hour),), start, closes, cut)


def schedule_note(schedule: Schedule) -> str:
    """The schedule in words, e.g. for ``plan``: what the platform was asked to keep."""
    days = (
        f"on {schedule.start_date.isoformat()}"
        if schedule.start_date == schedule.end_date
        else f"from {schedule.start_date.isoformat()} to {schedule.end_date.isoformat()}"
    )
    hours = (
        ", ".join(f"{a:02d}:00-{b:02d}:00 UTC" for a, b in schedule.hours)
        if schedule.hours
        else "any hour"
    )
    note = f"{days}, {hours}"
    if schedule.cut_at_midnight:
        note += " (cut at midnight UTC: the rest of the window would reopen on other days)"
    return note

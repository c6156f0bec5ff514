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

A policy with install hours (``install_start``/``install_end``, the campaign's
``windows.install``) sends the window as the *download* hours and those as the *install*
hours (``installTimeWindowList``), rounded the same way; they must lie within one UTC day,
the download window's day (or any day of a whole-day range, since they open daily). FOTA
v1 upgrades take no hours at all, so they refuse install hours.
Everything here is a pure function; :func:`schedule_note` says in words what was sent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
    install_hours: tuple[tuple[int, int], ...] | None = None
    """Install hours apart from ``hours`` (None: devices install in ``hours`` too)."""

    def hour_windows(self) -> list[dict[str, int]]:
        """The wire form of the (download) hour windows (``downloadTimeWindowList``)."""
        return [{"startTime": a, "endTime": b} for a, b in self.hours]

    def install_windows(self) -> list[dict[str, int]]:
        """The wire form of the install hours (``installTimeWindowList``)."""
        hours = self.hours if self.install_hours is None else self.install_hours
        return [{"startTime": a, "endTime": b} for a, b in hours]


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
    download = _download_schedule(kind, policy, now)
    if policy.install_start is None or policy.install_end is None:
        return download
    return _with_install_hours(kind, download, policy.install_start, policy.install_end)


def _with_install_hours(
    kind: PackageKind, download: Schedule, start: pendulum.DateTime, end: pendulum.DateTime
) -> Schedule:
    """``download`` with install hours ``start..end`` (rounded to whole UTC hours)."""
    if kind is PackageKind.FIRMWARE:
        raise InvalidPolicy(
            "FOTA v1 firmware upgrades take no hours, so no install hours either: leave "
            "windows.install out, or send the package as a file (kind: software)"
        )
    i_start = _ceil_hour(start.in_tz("UTC"))
    i_end = _floor_hour(end)
    label = f"{start.in_tz('UTC').to_iso8601_string()}..{end.in_tz('UTC').to_iso8601_string()}"
    if i_end - i_start < HOUR:
        raise InvalidPolicy(
            f"the install window {label} holds no whole UTC hour; ThingSpace schedules by the "
            "hour: widen windows.install to at least one hour"
        )
    if i_end > _midnight(i_start.date() + timedelta(days=1)):
        raise InvalidPolicy(
            f"the install window {label} crosses midnight UTC; ThingSpace's install hours "
            "open on every day of the date range: keep windows.install within one UTC day"
        )
    whole_days = not download.hours
    if not whole_days and i_start.date() != download.start_date:
        raise InvalidPolicy(
            f"the install window {label} is not on the download window's UTC day "
            f"({download.start_date.isoformat()}); both sets of hours open on the same dates: "
            "choose install hours on the same UTC day as the allowed window"
        )
    last_hour = 24 if i_end.hour == 0 else i_end.hour
    closes = download.closes if whole_days else max(download.closes, i_end)
    return replace(download, closes=closes, install_hours=((i_start.hour, last_hour),))


def _download_schedule(kind: PackageKind, policy: TaskPolicy, now: pendulum.DateTime) -> Schedule:
    """The schedule of a custom window (``policy`` has both bounds)."""
    assert policy.start_time is not None and policy.end_time is not None
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
    if schedule.install_hours is not None:
        install = ", ".join(f"{a:02d}:00-{b:02d}:00 UTC" for a, b in schedule.install_hours)
        note = f"{days}, download {hours}, install {install}"
    if schedule.cut_at_midnight:
        note += " (cut at midnight UTC: the rest of the window would reopen on other days)"
    return note

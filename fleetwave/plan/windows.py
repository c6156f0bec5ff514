"""Allowed windows: weekly local windows minus blackout days, DST-correct (pendulum).

Rules, all in the schedule's timezone: a window opens on each of its days at ``start``
and closes at ``end`` the same day, or the next day when ``end <= start`` (equal = 24 h).
A local time that does not exist (spring-forward gap) means the instant of the change
(02:30 in Berlin on the spring day -> 03:00 CEST); an ambiguous one (fall-back) means
its FIRST occurrence.
A blackout day removes its whole local day (00:00 to the next 00:00), cutting windows
that run into it. Overlapping or touching windows merge into one span. Instants are
aware ``pendulum.DateTime``; results come back in UTC unless asked for local time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pendulum

__all__ = [
    "HORIZON_DAYS",
    "WeeklyWindow",
    "WindowSchedule",
    "WindowTooShort",
    "to_policy_window",
]

#: How far ahead the schedule looks; an always-open span is reported as ending here.
HORIZON_DAYS = 400


class WindowTooShort(ValueError):
    """A window is too short for the platform's custom execution policy."""


@dataclass(frozen=True, slots=True)
class WeeklyWindow:
    """Opens at ``start`` on each ISO weekday in ``days`` (1 = Monday) and closes at ``end``."""

    days: frozenset[int]
    start: dt.time
    end: dt.time

    def __post_init__(self) -> None:
        if not self.days or not self.days <= set(range(1, 8)):
            raise ValueError(f"days must be ISO weekdays 1..7, not {sorted(self.days)}")


Span = tuple[pendulum.DateTime, pendulum.DateTime]


def _windows_cover_week(windows: Sequence[WeeklyWindow]) -> bool:
    """True when the weekly windows together cover every local minute of the week."""
    week = 7 * 24 * 60
    pieces: list[tuple[int, int]] = []
    for w in windows:
        start = w.start.hour * 60 + w.start.minute
        end = w.end.hour * 60 + w.end.minute
        length = end - start if end > start else end - start + 24 * 60
        for d in w.days:
            a = (d - 1) * 24 * 60 + start
            pieces += [(a, min(a + length, week)), (0, max(0, a + length - week))]
    reached = 0
    for a, b in sorted(pieces):
        if a > reached:
            return False
        reached = max(reached, b)
    return reached >= week


def _local(day: dt.date, t: dt.time, tz: pendulum.Timezone) -> pendulum.DateTime:
    """The instant of local ``day`` ``t``: an ambiguous time is its first occurrence; a time
    in a spring-forward gap is the instant of the change (the clock jumps past it)."""
    candidates = [
        pendulum.datetime(day.year, day.month, day.day, t.hour, t.minute, tz=tz, fold=f)
        for f in (0, 1)
    ]
    real = [c for c in candidates if (c.hour, c.minute, c.day) == (t.hour, t.minute, day.day)]
    if real:
        return min(real, key=lambda c: c.in_tz("UTC"))
    # a gap: find the offset change between the two readings by bisection (to the second)
    lo, hi = sorted(c.in_tz("UTC") for c in candidates)
    before = lo.in_tz(tz).utcoffset()
    while hi - lo > dt.timedelta(seconds=1):
        mid = lo.add(seconds=int((hi - lo).total_seconds() // 2))
        if mid.in_tz(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi.in_tz(tz)


@dataclass(frozen=True)
class WindowSchedule:
    """When submitting is allowed. No ``windows`` means always (except blackout days)."""

    timezone: str = "UTC"
    windows: Sequence[WeeklyWindow] = ()
    blackouts: Sequence[tuple[dt.date, dt.date]] = ()  # inclusive local date ranges
    _tz: pendulum.Timezone = field(init=False, repr=False, compare=False)
    _covers_week: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tz", pendulum.timezone(self.timezone))
        object.__setattr__(self, "_covers_week", _windows_cover_week(self.windows))
        for first, last in self.blackouts:
            if last < first:
                raise ValueError(f"blackout range ends before it starts: {first}..{last}")

    # ----------------------------------------------------------------- building blocks

    @property
    def tz(self) -> pendulum.Timezone:
        return self._tz

    def is_blackout(self, day: dt.date) -> bool:
        """True when local calendar ``day`` is blacked out."""
        return any(first <= day <= last for first, last in self.blackouts)

    def _midnight(self, day: dt.date) -> pendulum.DateTime:
        return _local(day, dt.time(0, 0), self._tz)

    def _day_segments(self, day: dt.date) -> Iterator[Span]:
        """Allowed pieces of windows that OPEN on local ``day`` (before merging), in UTC."""
        if not self.windows:
            if not self.is_blackout(day):
                yield (
                    self._midnight(day).in_tz("UTC"),
                    self._midnight(day + dt.timedelta(days=1)).in_tz("UTC"),
                )
            return
        nxt = day + dt.timedelta(days=1)
        for w in self.windows:
            if day.isoweekday() not in w.days:
                continue
            opens = _local(day, w.start, self._tz)
            crosses = (w.end.hour, w.end.minute) <= (w.start.hour, w.start.minute)
            closes = _local(nxt if crosses else day, w.end, self._tz)
            midnight = self._midnight(nxt)
            pieces = [(opens, min(closes, midnight)), (max(opens, midnight), closes)]
            for d, (a, b) in zip((day, nxt), pieces, strict=True):
                if a < b and not self.is_blackout(d):
                    yield a.in_tz("UTC"), b.in_tz("UTC")

    def _spans_from(self, first_day: dt.date, last_day: dt.date) -> Iterator[Span]:
        """Merged allowed spans of windows opening on ``first_day``..``last_day``.

        Windows last at most 24 h, so spans from consecutive days arrive almost in order;
        a one-day look-ahead buffer sorts them before merging."""
        pending: list[Span] = []
        current: Span | None = None
        day = first_day
        while day <= last_day or pending:
            if day <= last_day:
                pending.extend(self._day_segments(day))
                pending.sort()
                # anything opening before the next day's earliest possible opening is final
                limit = self._midnight(day + dt.timedelta(days=1)).in_tz("UTC")
                day += dt.timedelta(days=1)
            else:
                limit = None
            ready = [s for s in pending if limit is None or s[0] < limit]
            pending = [s for s in pending if not (limit is None or s[0] < limit)]
            for a, b in ready:
                if current is None:
                    current = (a, b)
                elif a <= current[1]:
                    current = (current[0], max(current[1], b))
                else:
                    yield current
                    current = (a, b)
            if (
                self._covers_week
                and current is not None
                and day < last_day
                and current[1] >= self._midnight(day)
            ):
                # Windows covering every local minute of the week leave no gap on an
                # allowed day, so the span open now runs on until the next blackout or the
                # horizon: skip the days in between (all of them lie inside it), keeping
                # only the last skipped day's windows that run past its midnight.
                skip_to = self._day_before_blackout(day, last_day)
                if skip_to > day:
                    current = (current[0], max(current[1], self._midnight(skip_to).in_tz("UTC")))
                    pending.extend(self._day_segments(skip_to - dt.timedelta(days=1)))
                    pending.sort()
                    day = skip_to
        if current is not None:
            yield current

    def _day_before_blackout(self, day: dt.date, last_day: dt.date) -> dt.date:
        """The day before the first blackout day on or after ``day``, at most ``last_day``."""
        starts = [max(first, day) for first, last in self.blackouts if last >= day]
        return min([last_day, *(b - dt.timedelta(days=1) for b in starts)])

    def _open_spans(
        self, after: pendulum.DateTime, first_day: dt.date, last_day: dt.date
    ) -> Iterator[Span]:
        """Spans of a schedule without weekly windows: the gaps between blackout ranges."""
        ranges = sorted(self.blackouts)
        merged: list[tuple[dt.date, dt.date]] = []
        for a, b in ranges:
            if merged and a <= merged[-1][1] + dt.timedelta(days=1):
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        one = dt.timedelta(days=1)
        cursor = first_day
        for a, b in [*merged, (last_day + one, last_day + one)]:
            if b < cursor:
                continue
            if a > cursor:
                opens = self._midnight(cursor).in_tz("UTC")
                closes = self._midnight(min(a, last_day + one)).in_tz("UTC")
                if closes > after:
                    yield opens, closes
            cursor = max(cursor, b + one)
            if cursor > last_day:
                return

    # ----------------------------------------------------------------- public API

    def spans(self, after: pendulum.DateTime, *, days: int = HORIZON_DAYS) -> Iterator[Span]:
        """Allowed spans (UTC) that end after ``after``, in order, looking ``days`` ahead.

        The first one may already be open (it then starts before ``after``; without weekly
        windows it starts at the end of the last blackout, or a day before ``after``)."""
        after = after.in_tz("UTC")
        start_day = after.in_tz(self._tz).date() - dt.timedelta(days=1)
        if not self.windows:
            yield from self._open_spans(after, start_day, start_day + dt.timedelta(days=days))
            return
        for a, b in self._spans_from(start_day, start_day + dt.timedelta(days=days)):
            if b > after:
                yield a, b

    def next_window(
        self,
        after: pendulum.DateTime,
        *,
        min_length: dt.timedelta = dt.timedelta(0),
    ) -> Span | None:
        """The allowed span open at ``after`` (its current opening and closing) or else the
        next one, in UTC; None when nothing opens within the horizon. With ``min_length``,
        skip spans with less than that left after ``after``."""
        after = after.in_tz("UTC")
        for a, b in self.spans(after):
            if b - max(a, after) >= min_length:
                return a, b
        return None

    def is_open(self, instant: pendulum.DateTime) -> bool:
        """True when submitting is allowed at ``instant``."""
        t = instant.in_tz("UTC")
        day = t.in_tz(self._tz).date()
        if self.is_blackout(day):
            return False
        for d in (day - dt.timedelta(days=1), day):
            for a, b in self._day_segments(d):
                if a <= t < b:
                    return True
        return False

    def upcoming(self, after: pendulum.DateTime, count: int) -> list[Span]:
        """The next ``count`` spans (the current one first if open), UTC."""
        out: list[Span] = []
        for span in self.spans(after):
            out.append(span)
            if len(out) >= count:
                break
        return out

    @classmethod
    def always(
        cls, timezone: str = "UTC", blackouts: Iterable[tuple[dt.date, dt.date]] = ()
    ) -> WindowSchedule:
        """A schedule without weekly windows (open except on blackout days)."""
        return cls(timezone, (), tuple(blackouts))


def to_policy_window(
    opens: pendulum.DateTime,
    closes: pendulum.DateTime,
    *,
    now: pendulum.DateTime | None = None,
    min_window: dt.timedelta | None,
    granularity: dt.timedelta,
) -> tuple[pendulum.DateTime, pendulum.DateTime]:
    """A task's custom window for the platform: UTC start/end on its ``granularity``.

    Starts at ``max(opens, now)`` rounded up to the granularity; ends at ``closes`` rounded
    down. Raises :class:`WindowTooShort` when less than ``min_window`` remains (both come
    from the platform's capabilities). The wire format is the platform adapter's job.
    """
    start = opens.in_tz("UTC")
    if now is not None and now.in_tz("UTC") > start:
        start = now.in_tz("UTC")
    start = _round(start, granularity, up=True)
    end = _round(closes.in_tz("UTC"), granularity, up=False)
    shortest = min_window if min_window is not None else dt.timedelta(0)
    if end - start < shortest or end <= start:
        raise WindowTooShort(
            f"the window {start.to_iso8601_string()}..{end.to_iso8601_string()} has "
            f"{max(0, int((end - start).total_seconds()))} s left; the platform needs at least "
            f"{_text(shortest)}; wait for the next window"
        )
    return start, end


def _micros(td: dt.timedelta) -> int:
    return (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds


def _round(t: pendulum.DateTime, step: dt.timedelta, *, up: bool) -> pendulum.DateTime:
    """``t`` rounded to a multiple of ``step`` since the epoch (up or down)."""
    size = _micros(step)
    if size <= 1:
        return t
    us = t.int_timestamp * 1_000_000 + t.microsecond
    us = -(-us // size) * size if up else us // size * size
    return pendulum.from_timestamp(us // 1_000_000, tz="UTC").add(microseconds=us % 1_000_000)


def _text(td: dt.timedelta) -> str:
    seconds = int(td.total_seconds())
    if seconds and seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds} s"

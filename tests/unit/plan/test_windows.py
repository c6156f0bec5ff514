"""Allowed windows: DST changes in Europe/Berlin and America/New_York, midnight crossing,
blackouts, merging, and the platform's UTC window."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwave.plan import WeeklyWindow, WindowSchedule, WindowTooShort, to_policy_window
from fleetwave.plan.windows import _local

ALL = frozenset(range(1, 8))


def utc(*args: int) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz="UTC")


def local(tz: str, *args: int, fold: int = 0) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz=tz, fold=fold)


def night(tz: str, days: frozenset[int] = ALL, **kw: object) -> WindowSchedule:
    return WindowSchedule(tz, (WeeklyWindow(days, dt.time(22), dt.time(5)),), **kw)  # type: ignore[arg-type]


# -------------------------------------------------------------------- DST, Europe/Berlin


def test_berlin_spring_forward_night_is_an_hour_shorter() -> None:
    s = night("Europe/Berlin")
    opens, closes = s.next_window(utc(2026, 3, 28, 12))
    assert opens == utc(2026, 3, 28, 21)  # 22:00 CET
    assert closes == utc(2026, 3, 29, 3)  # 05:00 CEST
    assert closes - opens == dt.timedelta(hours=6)


def test_berlin_fall_back_night_is_an_hour_longer() -> None:
    s = night("Europe/Berlin")
    opens, closes = s.next_window(utc(2026, 10, 24, 12))
    assert opens == utc(2026, 10, 24, 20)  # 22:00 CEST
    assert closes == utc(2026, 10, 25, 4)  # 05:00 CET
    assert closes - opens == dt.timedelta(hours=8)
    # both 02:30s of that night are inside the window
    assert s.is_open(local("Europe/Berlin", 2026, 10, 25, 2, 30, fold=0))
    assert s.is_open(local("Europe/Berlin", 2026, 10, 25, 2, 30, fold=1))


def test_berlin_time_in_the_spring_gap_means_the_change() -> None:
    # 02:30-03:30 local: on 29 March 02:30 does not exist; the window opens at the change
    s = WindowSchedule("Europe/Berlin", (WeeklyWindow(ALL, dt.time(2, 30), dt.time(3, 30)),))
    opens, closes = s.next_window(utc(2026, 3, 28, 12))
    assert opens == utc(2026, 3, 29, 1)  # 03:00 CEST, the instant of the change
    assert closes == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert not s.is_open(utc(2026, 3, 29, 0, 59))
    # a window that lies wholly in the gap does not happen that day
    gap = WindowSchedule("Europe/Berlin", (WeeklyWindow(ALL, dt.time(2, 10), dt.time(2, 50)),))
    assert gap.next_window(utc(2026, 3, 28, 12))[0] == utc(2026, 3, 30, 0, 10)


def test_berlin_ambiguous_opening_means_the_first_occurrence() -> None:
    s = WindowSchedule("Europe/Berlin", (WeeklyWindow(ALL, dt.time(2, 30), dt.time(4)),))
    opens, closes = s.next_window(utc(2026, 10, 24, 12))
    assert opens == utc(2026, 10, 25, 0, 30)  # the first 02:30 (CEST, +02:00)
    assert closes == utc(2026, 10, 25, 3)  # 04:00 CET
    assert closes - opens == dt.timedelta(hours=2, minutes=30)


# -------------------------------------------------------------------- DST, America/New_York


def test_new_york_spring_forward() -> None:
    s = WindowSchedule("America/New_York", (WeeklyWindow(ALL, dt.time(1), dt.time(4)),))
    opens, closes = s.next_window(utc(2026, 3, 7, 12))
    assert opens == utc(2026, 3, 8, 6)  # 01:00 EST
    assert closes == utc(2026, 3, 8, 8)  # 04:00 EDT: two real hours
    assert s.is_open(utc(2026, 3, 8, 7, 30))  # 03:30 EDT
    assert not s.is_open(utc(2026, 3, 8, 8))


def test_new_york_fall_back() -> None:
    s = WindowSchedule("America/New_York", (WeeklyWindow(ALL, dt.time(1), dt.time(1, 30)),))
    opens, closes = s.next_window(utc(2026, 10, 31, 12))
    # 01:00-01:30 happens twice that night; the window is the first (EDT) occurrence
    assert (opens, closes) == (utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 30))
    assert not s.is_open(utc(2026, 11, 1, 6, 15))  # 01:15 EST, the second occurrence
    s2 = WindowSchedule("America/New_York", (WeeklyWindow(ALL, dt.time(0), dt.time(3)),))
    o2, c2 = s2.next_window(utc(2026, 10, 31, 12))
    assert c2 - o2 == dt.timedelta(hours=4)


# -------------------------------------------------------------------- midnight, blackouts


def test_midnight_crossing_window_belongs_to_its_opening_day() -> None:
    fri = frozenset({5})
    s = night("Europe/Berlin", fri)
    assert s.is_open(local("Europe/Berlin", 2026, 6, 6, 3))  # Saturday 03:00
    assert not s.is_open(local("Europe/Berlin", 2026, 6, 6, 23))  # Saturday 23:00
    assert not s.is_open(local("Europe/Berlin", 2026, 6, 4, 23))  # Thursday 23:00
    opens, _closes = s.next_window(local("Europe/Berlin", 2026, 6, 6, 6))
    assert opens == local("Europe/Berlin", 2026, 6, 12, 22)


def test_open_window_returns_its_current_span() -> None:
    s = night("UTC")
    assert s.next_window(utc(2026, 6, 2, 1)) == (utc(2026, 6, 1, 22), utc(2026, 6, 2, 5))
    assert s.is_open(utc(2026, 6, 1, 22))
    assert not s.is_open(utc(2026, 6, 2, 5))  # closing instant is outside


def test_blackout_cuts_windows_at_midnight() -> None:
    s = night("Europe/Berlin", blackouts=((dt.date(2026, 12, 24), dt.date(2026, 12, 26)),))
    # the window opening on the 23rd stops at midnight into the 24th
    opens, closes = s.next_window(local("Europe/Berlin", 2026, 12, 23, 12))
    assert (opens, closes) == (
        local("Europe/Berlin", 2026, 12, 23, 22),
        local("Europe/Berlin", 2026, 12, 24, 0),
    )
    # next: the window opening on the 26th (blacked out) only after midnight into the 27th
    opens, closes = s.next_window(closes)
    assert (opens, closes) == (
        local("Europe/Berlin", 2026, 12, 27, 0),
        local("Europe/Berlin", 2026, 12, 27, 5),
    )
    assert not s.is_open(local("Europe/Berlin", 2026, 12, 25, 23))


def test_touching_windows_merge() -> None:
    s = WindowSchedule(
        "UTC",
        (
            WeeklyWindow(ALL, dt.time(22), dt.time(0)),  # "24:00"
            WeeklyWindow(ALL, dt.time(0), dt.time(5)),
        ),
    )
    assert s.next_window(utc(2026, 6, 2, 12)) == (utc(2026, 6, 2, 22), utc(2026, 6, 3, 5))


def test_always_open_except_blackouts() -> None:
    s = WindowSchedule.always("Europe/Berlin", [(dt.date(2026, 5, 1), dt.date(2026, 5, 1))])
    assert s.is_open(utc(2026, 4, 30, 12))
    assert not s.is_open(local("Europe/Berlin", 2026, 5, 1, 12))
    opens, _ = s.next_window(local("Europe/Berlin", 2026, 5, 1, 12))
    assert opens == local("Europe/Berlin", 2026, 5, 2, 0)


def test_min_length_skips_the_tail_of_a_window() -> None:
    s = night("UTC")
    span = s.next_window(utc(2026, 6, 2, 4, 58), min_length=dt.timedelta(minutes=5))
    assert span == (utc(2026, 6, 2, 22), utc(2026, 6, 3, 5))


def test_nothing_within_the_horizon() -> None:
    s = WindowSchedule.always("UTC", [(dt.date(2026, 1, 1), dt.date(2028, 1, 1))])
    assert s.next_window(utc(2026, 6, 1)) is None
    assert not s.is_open(utc(2026, 6, 1))


COVERING = [
    (WeeklyWindow(ALL, dt.time(0), dt.time(0)),),  # days: daily, 00:00-24:00
    (WeeklyWindow(ALL, dt.time(22), dt.time(22)),),
    (WeeklyWindow(ALL, dt.time(2, 30), dt.time(3)), WeeklyWindow(ALL, dt.time(3), dt.time(2, 30))),
    (
        WeeklyWindow(frozenset({1, 2, 3, 4, 5, 6}), dt.time(0), dt.time(0)),
        WeeklyWindow(frozenset({7}), dt.time(0), dt.time(0)),
    ),
]


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "America/Santiago"])
@pytest.mark.parametrize("wins", COVERING)
@pytest.mark.parametrize(
    "blackouts", [(), ((dt.date(2026, 3, 29), dt.date(2026, 3, 29)), (dt.date(2026, 11, 1),) * 2)]
)
def test_week_covering_windows_skip_ahead_with_the_same_spans(
    tz: str, wins: tuple[WeeklyWindow, ...], blackouts: tuple[tuple[dt.date, dt.date], ...]
) -> None:
    s = WindowSchedule(tz, wins, blackouts)
    assert s._covers_week
    for start in (utc(2026, 3, 27), utc(2026, 3, 29, 1, 30), utc(2026, 10, 31, 23)):
        fast = list(s.spans(start, days=250))
        object.__setattr__(s, "_covers_week", False)  # the day-by-day scan, for reference
        slow = list(s.spans(start, days=250))
        object.__setattr__(s, "_covers_week", True)
        assert fast == slow


def test_always_open_windows_stop_scanning_once_the_span_is_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = WindowSchedule("Europe/Berlin", COVERING[0])
    assert not WindowSchedule("UTC", (WeeklyWindow(ALL, dt.time(0), dt.time(23, 59)),))._covers_week
    days: list[dt.date] = []
    real = WindowSchedule._day_segments

    def counting(self: WindowSchedule, day: dt.date):  # type: ignore[no-untyped-def]
        days.append(day)
        return real(self, day)

    monkeypatch.setattr(WindowSchedule, "_day_segments", counting)
    opens, closes = s.next_window(utc(2026, 3, 1))
    assert opens <= utc(2026, 3, 1) and closes - opens > dt.timedelta(days=300)
    assert len(days) < 10  # not one per day of the 400-day horizon


# -------------------------------------------------------------------- property: oracle


def _oracle(s: WindowSchedule, t: pendulum.DateTime) -> bool:
    """Open iff some window opening on local day d covers t and t's local day is not out.

    Local times map to instants with the module's ``_local`` (tested on its own above)."""
    tl = t.in_tz(s.timezone)
    if s.is_blackout(tl.date()):
        return False
    if not s.windows:
        return True
    for d in (tl.date() - dt.timedelta(days=1), tl.date()):
        for w in s.windows:
            if d.isoweekday() not in w.days:
                continue
            o = _local(d, w.start, s.tz)
            c = _local(d + dt.timedelta(days=1) if w.end <= w.start else d, w.end, s.tz)
            if o <= t < c:
                return True
    return False


times = st.builds(dt.time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
windows_st = st.lists(
    st.builds(WeeklyWindow, st.frozensets(st.integers(1, 7), min_size=1), times, times),
    max_size=3,
)
DST_DAYS = {
    "Europe/Berlin": [utc(2026, 3, 27), utc(2026, 10, 23)],
    "America/New_York": [utc(2026, 3, 6), utc(2026, 10, 30)],
}


@settings(max_examples=150, deadline=None)
@given(
    tz=st.sampled_from(sorted(DST_DAYS)),
    which=st.integers(0, 1),
    minutes=st.integers(0, 4 * 24 * 60),
    wins=windows_st,
    blackout=st.integers(0, 5),
)
def test_is_open_matches_oracle_and_next_window_is_consistent(
    tz: str, which: int, minutes: int, wins: list[WeeklyWindow], blackout: int
) -> None:
    base = DST_DAYS[tz][which]
    day = base.in_tz(tz).date() + dt.timedelta(days=blackout)
    s = WindowSchedule(tz, tuple(wins), ((day, day),) if blackout < 4 else ())
    t = base.add(minutes=minutes)
    assert s.is_open(t) == _oracle(s, t)
    span = s.next_window(t)
    if span is not None:
        opens, closes = span
        assert opens < closes and closes > t
        assert _oracle(s, max(opens, t))
        assert not _oracle(s, closes) or closes - opens >= dt.timedelta(days=300)
        if opens > t:
            assert not _oracle(s, t)


# -------------------------------------------------------------------- platform window


#: IoDM's capabilities: custom windows of 5 minutes or more, on whole seconds.
FIVE_MIN = dt.timedelta(minutes=5)
SECOND = dt.timedelta(seconds=1)


def _window(
    opens: pendulum.DateTime,
    closes: pendulum.DateTime,
    now: pendulum.DateTime | None = None,
) -> tuple[pendulum.DateTime, pendulum.DateTime]:
    return to_policy_window(opens, closes, now=now, min_window=FIVE_MIN, granularity=SECOND)


def test_policy_window_is_utc_whole_seconds() -> None:
    opens = local("Europe/Berlin", 2026, 3, 28, 22)
    closes = local("Europe/Berlin", 2026, 3, 29, 5)
    start, end = _window(opens, closes)
    assert (start, end) == (utc(2026, 3, 28, 21), utc(2026, 3, 29, 3))
    assert start.timezone_name == "UTC"
    now = utc(2026, 3, 28, 23, 0, 0).add(microseconds=1)
    start, _ = _window(opens, closes, now=now)
    assert start == utc(2026, 3, 28, 23, 0, 1)


def test_policy_window_under_the_minimum_is_refused() -> None:
    with pytest.raises(WindowTooShort, match="at least 5 minutes"):
        _window(utc(2026, 1, 1, 0), utc(2026, 1, 1, 0, 4, 59))
    with pytest.raises(WindowTooShort):
        _window(utc(2026, 1, 1, 0), utc(2026, 1, 1, 1), now=utc(2026, 1, 1, 0, 58))
    assert _window(utc(2026, 1, 1, 0), utc(2026, 1, 1, 0, 5))[1] == utc(2026, 1, 1, 0, 5)


def test_policy_window_follows_the_platform_capabilities() -> None:
    """Another platform's minimum and granularity: 1 hour, bounds on whole minutes."""
    opens, closes = utc(2026, 1, 1, 0, 0, 30), utc(2026, 1, 1, 1, 30, 59)
    start, end = to_policy_window(
        opens, closes, min_window=dt.timedelta(hours=1), granularity=dt.timedelta(minutes=1)
    )
    assert (start, end) == (utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 1, 30))
    with pytest.raises(WindowTooShort, match="has 0 s left"):
        to_policy_window(
            opens, opens.add(seconds=50), min_window=None, granularity=dt.timedelta(minutes=1)
        )
    # 5 minutes is enough for IoDM but not for a platform that needs an hour
    with pytest.raises(WindowTooShort, match="at least 60 minutes"):
        to_policy_window(
            utc(2026, 1, 1, 0),
            utc(2026, 1, 1, 0, 5),
            min_window=dt.timedelta(hours=1),
            granularity=SECOND,
        )

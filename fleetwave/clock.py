"""The one clock abstraction shared by the engine and the simulators.

Engine code and simulator code never call ``pendulum.now()`` or ``asyncio.sleep`` for
campaign time directly; they ask a :class:`Clock`, so tests can run days of campaign
(windows, DST changes, timeouts) in seconds with :class:`ManualClock` or :class:`ScaledClock`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Protocol, overload, runtime_checkable

import pendulum

__all__ = ["Clock", "ManualClock", "RealClock", "ScaledClock", "parse_clock", "utc_instant"]


@overload
def utc_instant(value: datetime) -> pendulum.DateTime: ...
@overload
def utc_instant(value: None) -> None: ...
@overload
def utc_instant(value: datetime | None) -> pendulum.DateTime | None: ...
def utc_instant(value: datetime | None) -> pendulum.DateTime | None:
    """Any datetime as an aware pendulum UTC DateTime (a naive one is taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return pendulum.instance(value, tz="UTC")
    return pendulum.instance(value).in_tz("UTC")


@runtime_checkable
class Clock(Protocol):
    """Source of campaign time: an aware UTC ``now()`` and a ``sleep()`` in campaign seconds."""

    def now(self) -> pendulum.DateTime: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Wall-clock time."""

    def now(self) -> pendulum.DateTime:
        return pendulum.now("UTC")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "RealClock()"


class ManualClock:
    """Time that moves only when told to (``advance``/``set``); ``sleep`` advances it.

    ``sleep`` advancing the clock is what lets a single-process test run a multi-day
    campaign: every wait of the engine becomes an instant jump of campaign time.
    """

    def __init__(self, start: pendulum.DateTime | None = None) -> None:
        self._now = (start or pendulum.datetime(2026, 1, 5, 0, 0, 0, tz="UTC")).in_tz("UTC")

    def now(self) -> pendulum.DateTime:
        return self._now

    def advance(self, seconds: float) -> pendulum.DateTime:
        if seconds < 0:
            raise ValueError(f"a manual clock only moves forward (asked to move {seconds} s)")
        self._now = self._now.add(microseconds=int(seconds * 1_000_000))
        return self._now

    def set(self, instant: pendulum.DateTime) -> None:
        instant = instant.in_tz("UTC")
        if instant < self._now:
            raise ValueError(f"a manual clock only moves forward ({instant} < {self._now})")
        self._now = instant

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()})"


class ScaledClock:
    """Real time sped up by ``factor`` from ``start`` (``factor=60``: a minute per second)."""

    def __init__(self, factor: float, start: pendulum.DateTime | None = None) -> None:
        if factor <= 0:
            raise ValueError(f"a scaled clock needs a positive factor, not {factor}")
        self.factor = factor
        self._start = (start or pendulum.now("UTC")).in_tz("UTC")
        self._t0 = time.monotonic()

    def now(self) -> pendulum.DateTime:
        elapsed = (time.monotonic() - self._t0) * self.factor
        return self._start.add(microseconds=int(elapsed * 1_000_000))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.factor)

    def __repr__(self) -> str:
        return f"ScaledClock(factor={self.factor})"


def parse_clock(spec: str, start: pendulum.DateTime | None = None) -> Clock:
    """Build a clock from ``real``, ``manual`` or ``scaled:FACTOR`` (the CLI's ``--clock``)."""
    kind, _, arg = spec.partition(":")
    if kind == "real" and not arg:
        return RealClock()
    if kind == "manual" and not arg:
        return ManualClock(start)
    if kind == "scaled":
        try:
            return ScaledClock(float(arg), start)
        except ValueError:
            pass
    raise ValueError(f"unknown clock {spec!r}: use real, manual or scaled:FACTOR (e.g. scaled:60)")

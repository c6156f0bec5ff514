"""A Clock linked to a simulator's clock: ``now()`` reads it, ``sleep()`` advances it.

With the simulator on a manual clock, every wait of the engine becomes an instant jump of
the simulator's time, so a campaign of days (windows, DST, timeouts) runs in seconds
(``fleetwave run --clock sim``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pendulum

from fleetwave.clock import Clock
from fleetwave.errors import UserError

if TYPE_CHECKING:
    from fleetwave.platforms import PlatformRefLike

__all__ = ["SimLinkedClock", "clock_from_option", "parse_sim_time", "refuse_simulated_clock"]


def parse_sim_time(body: Any) -> pendulum.DateTime:
    """The instant in a ``GET /sim/clock`` or ``POST /sim/clock/advance`` answer (UTC)."""
    value: Any = body
    if isinstance(body, dict):
        for key in ("now", "time", "clock", "utc", "instant"):
            if key in body:
                value = body[key]
                break
    if not isinstance(value, str):
        raise ValueError(f"the simulator's clock answer has no time in it: {body!r}")
    parsed = pendulum.parse(value)
    if not isinstance(parsed, pendulum.DateTime):
        raise ValueError(f"the simulator's clock answer is not a date-time: {value!r}")
    return parsed.in_tz("UTC")


class SimLinkedClock:
    """The simulator's clock as a :class:`fleetwave.clock.Clock`.

    ``min_step`` is the smallest advance a ``sleep`` makes, so a busy loop of zero-second
    sleeps still moves simulated time forward. ``now()`` reuses the last answer for
    ``cache_seconds`` of wall time (a manual clock only moves when someone advances it).
    Safe to share between threads (a server's worker threads read it at once): one
    request to the simulator at a time.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        min_step: float = 0.0,
        cache_seconds: float = 0.25,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.min_step = min_step
        self.cache_seconds = cache_seconds
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._last: tuple[float, pendulum.DateTime] | None = None
        self._lock = threading.Lock()  # httpx.Client is not safe across threads

    def _call(self, method: str, path: str, **kwargs: Any) -> pendulum.DateTime:
        try:
            with self._lock:
                resp = self._client.request(method, path, **kwargs)
                resp.raise_for_status()
                now = parse_sim_time(resp.json())
                self._last = (time.monotonic(), now)
            return now
        except (httpx.HTTPError, ValueError) as exc:
            raise UserError(
                f"cannot use the simulator's clock at {self.base_url}{path}: {exc}",
                hint="is the simulator running (fleetwave sim serve --clock manual)?",
            ) from exc

    def now(self) -> pendulum.DateTime:
        last = self._last
        if last is not None and time.monotonic() - last[0] < self.cache_seconds:
            return last[1]
        return self._call("GET", "/sim/clock")

    def advance(self, seconds: float) -> pendulum.DateTime:
        """Move the simulator's clock forward by ``seconds`` and return the new time."""
        return self._call("POST", "/sim/clock/advance", json={"seconds": float(seconds)})

    async def sleep(self, seconds: float) -> None:
        step = max(float(seconds), self.min_step)
        if step > 0:
            await asyncio.to_thread(self.advance, step)
        else:
            await asyncio.sleep(0)

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"SimLinkedClock({self.base_url})"


def refuse_simulated_clock(option: str, platform: PlatformRefLike | str | None) -> None:
    """A ``sim``, ``manual`` or ``scaled:F`` clock only against a simulator: against a real
    platform it would write simulated (future) timestamps into the store. No platform
    given (``approve --clock``): nothing to check."""
    if platform is None or option.strip().lower() == "real":
        return
    from fleetwave.platforms import is_simulated

    if not is_simulated(platform):
        raise UserError(
            f"--clock {option}: platform {platform} is a real platform, not a simulator; a "
            "simulated clock would write simulated time into the store",
            hint="use --clock real (simulated clocks are for the simulator and tests)",
        )


def clock_from_option(
    option: str, *, sim_url: str | None = None, platform: PlatformRefLike | str | None = None
) -> Clock:
    """The engine clock for ``--clock``: ``real``, ``manual``, ``scaled:F`` or ``sim``.

    ``sim`` links to the simulator at ``sim_url`` (default: the simulator the campaign's
    ``platform`` profile talks to, as its platform type says), so its manual clock drives
    the campaign.
    """
    from fleetwave.clock import parse_clock

    refuse_simulated_clock(option, platform)
    if option.strip().lower() == "sim":
        from fleetwave.platforms import simulator_url

        url = sim_url or simulator_url(platform)
        if url is None:
            raise UserError(
                f"--clock sim: platform {platform} has no simulator to take the time from",
                hint="use --clock real or scaled:60",
            )
        return SimLinkedClock(url)
    try:
        return parse_clock(option)
    except ValueError as exc:
        raise UserError(f"--clock {option!r}: {exc}", hint="use real, sim, or scaled:60") from None

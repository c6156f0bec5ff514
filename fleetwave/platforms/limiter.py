"""The platform-neutral call budget: one limiter per platform credential in a process-wide registry.

Platforms count calls per credential and minute (IoDM: per app, 100 by default;
ThingSpace: per API key, as negotiated in the contract) and refuse calls beyond it.
:class:`RateLimiter` hands out *reservations* so that no rolling 60 s window ever holds
more than ``per_minute`` call starts: a token bucket whose burst never lets a minute
exceed the budget. It is thread-safe and loop-agnostic (no lock is held across an
await), so flows running in several event loops of one process share it. Across
processes and machines, an optional Prefect global concurrency limit with slot decay
(``IODM_PREFECT_RATE_LIMIT``) is acquired for every call as well.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Awaitable, Callable

from fleetwave.clock import Clock, RealClock
from fleetwave.platforms.errors import PlatformError

__all__ = ["RateLimiter", "get_limiter", "prefect_rate_limit_hook", "reset_limiters"]

log = logging.getLogger(__name__)

AcquireHook = Callable[[], Awaitable[None]]

# a wait for a call slot at least this long is logged at WARNING (the CLI's default level)
LONG_WAIT_SECONDS = 5.0


class RateLimiter:
    """At most ``per_minute`` call starts in any ``window`` seconds of ``clock`` time (0 = off)."""

    #: what one budget belongs to and the setting that sizes it, as said in a wait's log line
    owner = "credential"
    setting = "the platform's rate-limit setting"

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Clock | None = None,
        window: float = 60.0,
        guard: float = 0.25,
        hook: AcquireHook | None = None,
    ) -> None:
        if per_minute < 0:
            raise ValueError(f"a rate limit must be >= 0 calls a minute, not {per_minute}")
        self.per_minute = per_minute
        self.clock: Clock = clock or RealClock()
        self.window = window + guard  # a little slack for clock skew between us and the platform
        self.hook = hook
        self._grants: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0
        self.acquired = 0
        self._last_warned: float | None = None

    def _reserve(self) -> float:
        """Reserve the next free slot; returns how long to wait for it (0 = now)."""
        if self.per_minute == 0:
            with self._lock:
                self.acquired += 1
            return 0.0
        now = self.clock.now().timestamp()
        with self._lock:
            self.acquired += 1
            grants = self._grants
            # grants holds the last per_minute reservations; a new one may start only
            # a full window after the oldest of them, so no window holds more than N.
            at = now
            if len(grants) >= self.per_minute:
                at = max(now, grants[0] + self.window)
            grants.append(at)
            while len(grants) > self.per_minute:
                grants.popleft()
            return at - now

    async def acquire(self) -> None:
        """Wait for a slot in the local budget, then for the shared Prefect limit if any."""
        wait = self._reserve()
        if wait > 0:
            self._log_wait(wait)
            self.waited_seconds += wait
            await self.clock.sleep(wait)
        if self.hook is not None:
            await self.hook()

    def _log_wait(self, wait: float) -> None:
        """A long wait is said at WARNING (at most once a window), a short one at DEBUG."""
        now = self.clock.now().timestamp()
        level = logging.DEBUG
        if wait >= LONG_WAIT_SECONDS:
            with self._lock:
                if self._last_warned is None or now - self._last_warned >= self.window:
                    self._last_warned = now
                    level = logging.WARNING
        logging.getLogger(type(self).__module__).log(
            level,
            "rate limit: waiting %.1f s for a call slot (at most %d calls a minute for this %s, "
            "%s)",
            wait,
            self.per_minute,
            self.owner,
            self.setting,
        )

    def __repr__(self) -> str:
        return f"RateLimiter(per_minute={self.per_minute}, clock={self.clock!r})"


def prefect_rate_limit_hook(
    name: str,
    *,
    setting: str,
    timeout_seconds: float = 600.0,
    warn_after: float = LONG_WAIT_SECONDS,
    logger: logging.Logger = log,
) -> AcquireHook:
    """An acquire hook taking one slot of the Prefect global concurrency limit ``name``.

    The limit must exist and have a slot decay (see README, Configuration); a missing
    limit is an error rather than a silently unlimited budget. A limit of L slots decaying
    at r a second admits up to L + 60 r calls in a minute (a burst of L, then r a second):
    size it so that this sum is the app's budget. A wait longer than
    ``warn_after`` seconds is said at WARNING while it lasts (on ``logger``); ``setting``
    is the variable that names the limit, quoted in what is said.
    """

    async def acquire() -> None:
        from prefect.concurrency.asyncio import (
            ConcurrencySlotAcquisitionError,
            rate_limit,
        )

        notice = asyncio.get_running_loop().call_later(
            warn_after,
            logger.warning,
            "rate limit: waiting for a slot of the Prefect global concurrency limit %r "
            "(%s; other flows are using this budget), for up to %.0f s",
            name,
            setting,
            timeout_seconds,
        )
        try:
            await rate_limit(name, occupy=1, timeout_seconds=timeout_seconds, strict=True)
        except ConcurrencySlotAcquisitionError as exc:
            raise PlatformError(
                f"the Prefect global concurrency limit {name!r} ({setting}) "
                "cannot be used: create it with `prefect gcl create "
                f"{name} --limit 10 --slot-decay-per-second 1.5` (at most 10 + 60 x 1.5 = 100 "
                "calls in any minute) or unset the variable"
            ) from exc
        except TimeoutError as exc:
            raise PlatformError(
                f"no slot of the Prefect global concurrency limit {name!r} within "
                f"{timeout_seconds:.0f} s: other flows are using the whole API budget"
            ) from exc
        finally:
            notice.cancel()

    return acquire


_registry: dict[tuple[object, ...], RateLimiter] = {}
_registry_lock = threading.Lock()


def get_limiter(
    key: tuple[str, ...],
    per_minute: int,
    *,
    clock: Clock | None = None,
    hook: AcquireHook | None = None,
    factory: type[RateLimiter] = RateLimiter,
) -> RateLimiter:
    """The process-wide limiter of one credential ``key`` (e.g. platform, base URL, appId);
    created on first use as ``factory(per_minute, clock=clock, hook=hook)``.

    Later callers share the first limiter; a different ``per_minute`` for the same key
    is logged and the smaller budget wins (the platform enforces one budget per
    credential). Budgets are counted in the caller's clock time: every real-time client
    shares one limiter, while a client on a manual or simulated clock gets one for that
    clock.
    """
    clock = clock or RealClock()
    clock_key: object = "real" if isinstance(clock, RealClock) else id(clock)
    full_key = (*key, clock_key)
    with _registry_lock:
        limiter = _registry.get(full_key)
        if limiter is None:
            limiter = factory(per_minute, clock=clock, hook=hook)
            _registry[full_key] = limiter
            return limiter
        if per_minute != limiter.per_minute:
            limits = [x for x in (per_minute, limiter.per_minute) if x > 0]
            smaller = min(limits) if limits else 0
            logging.getLogger(type(limiter).__module__).warning(
                "two rate limits for %s %s at %s (%d and %d a minute); using %d",
                limiter.owner,
                key[-1],
                key[-2] if len(key) > 1 else "?",
                limiter.per_minute,
                per_minute,
                smaller,
            )
            limiter.per_minute = smaller
        if hook is not None and limiter.hook is None:
            limiter.hook = hook
        return limiter


def reset_limiters() -> None:
    """Forget every limiter of every platform (tests; a new simulator on a reused port)."""
    with _registry_lock:
        _registry.clear()

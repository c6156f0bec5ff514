"""The per-app call budget: never more than N call starts in any rolling minute."""

from __future__ import annotations

import asyncio

import pytest

from fleetwave.clock import ManualClock
from fleetwave.platforms.iodm.limiter import RateLimiter, get_limiter, reset_limiters


async def test_concurrent_callers_never_exceed_the_budget_in_any_window() -> None:
    clock = ManualClock()
    limiter = RateLimiter(10, clock=clock)
    starts: list[float] = []

    async def call() -> None:
        await limiter.acquire()
        starts.append(clock.now().timestamp())

    await asyncio.gather(*(call() for _ in range(35)))
    starts.sort()
    assert len(starts) == 35
    for i in range(len(starts) - 10):
        assert starts[i + 10] - starts[i] >= 60.0  # the 11th start is a full window later
    # and it does not wait more than it must: 35 calls = 4 windows (0, 60, 120, 180 s)
    assert starts[-1] - starts[0] < 3 * 60.25 + 1


async def test_zero_means_unlimited() -> None:
    clock = ManualClock()
    limiter = RateLimiter(0, clock=clock)
    t0 = clock.now()
    await asyncio.gather(*(limiter.acquire() for _ in range(500)))
    assert clock.now() == t0
    assert limiter.acquired == 500


async def test_hook_runs_for_every_call() -> None:
    calls = 0

    async def hook() -> None:
        nonlocal calls
        calls += 1

    limiter = RateLimiter(100, clock=ManualClock(), hook=hook)
    for _ in range(7):
        await limiter.acquire()
    assert calls == 7


def test_registry_shares_one_limiter_per_app_and_keeps_the_smaller_budget() -> None:
    reset_limiters()
    try:
        a = get_limiter(("https://p:8743", "app"), 100)
        b = get_limiter(("https://p:8743", "app"), 50)
        c = get_limiter(("https://p:8743", "other"), 100)
        assert a is b
        assert a.per_minute == 50
        assert c is not a
    finally:
        reset_limiters()


def test_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        RateLimiter(-1)


def test_registry_keeps_clocks_apart() -> None:
    from fleetwave.clock import RealClock

    reset_limiters()
    try:
        key = ("https://p:8743", "app")
        assert get_limiter(key, 100, clock=RealClock()) is get_limiter(key, 100)
        manual = ManualClock()
        on_manual = get_limiter(key, 100, clock=manual)
        assert on_manual is not get_limiter(key, 100)
        assert on_manual is get_limiter(key, 100, clock=manual)
        assert on_manual.clock is manual
    finally:
        reset_limiters()

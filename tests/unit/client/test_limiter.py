"""The per-app call budget: never more than N call starts in any rolling minute."""

from __future__ import annotations

import asyncio
import logging

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


class _StillClock(ManualClock):
    """Time that does not move while callers sleep: every wait is reserved at the same instant."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


async def test_a_long_wait_for_a_call_slot_is_said_once_a_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RateLimiter(3, clock=_StillClock())
    with caplog.at_level(logging.DEBUG, logger="fleetwave.platforms.iodm.limiter"):
        await asyncio.gather(*(limiter.acquire() for _ in range(7)))
    by_level = {
        level: [r.getMessage() for r in caplog.records if r.levelno == level]
        for level in (logging.WARNING, logging.DEBUG)
    }
    # calls 4-7 all wait; the first long wait is a WARNING, the rest of that window DEBUG
    assert len(by_level[logging.WARNING]) == 1
    assert len(by_level[logging.DEBUG]) == 3
    [warning] = by_level[logging.WARNING]
    assert "waiting 60.2 s for a call slot" in warning
    assert "at most 3 calls a minute for this app, IODM_RATE_LIMIT" in warning


async def test_a_long_wait_for_the_prefect_limit_is_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import prefect.concurrency.asyncio as pca

    from fleetwave.platforms.iodm.limiter import prefect_rate_limit_hook

    async def busy(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(0.3)  # the slot comes after the notice is due (timers run in order)

    async def free(*args: object, **kwargs: object) -> None:
        return None

    with caplog.at_level(logging.WARNING, logger="fleetwave.platforms.iodm.limiter"):
        monkeypatch.setattr(pca, "rate_limit", free)
        await prefect_rate_limit_hook("iodm-prod", warn_after=0.05)()
        assert caplog.records == []
        monkeypatch.setattr(pca, "rate_limit", busy)
        await prefect_rate_limit_hook("iodm-prod", warn_after=0.05)()
    [line] = [r.getMessage() for r in caplog.records]
    assert "waiting for a slot of the Prefect global concurrency limit 'iodm-prod'" in line
    assert "IODM_PREFECT_RATE_LIMIT" in line


async def test_thingspace_uses_the_same_limiter_named_in_its_own_settings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One neutral limiter for both platforms: ThingSpace's says THINGSPACE_RATE_LIMIT and
    logs under its client's logger; the same base URL and key on two platforms are two
    budgets, and one reset forgets both."""
    from fleetwave.platforms import limiter as neutral
    from fleetwave.platforms.thingspace import client as ts

    limiter = ts.RateLimiter(3, clock=_StillClock())
    assert isinstance(limiter, neutral.RateLimiter)
    with caplog.at_level(logging.DEBUG, logger="fleetwave.platforms.thingspace.client"):
        await asyncio.gather(*(limiter.acquire() for _ in range(4)))
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "at most 3 calls a minute for this account, THINGSPACE_RATE_LIMIT" in warning
    reset_limiters()
    try:
        key = ("https://p:8743", "same")
        clock = ManualClock()
        on_ts = ts.get_limiter(key, 100, clock)
        on_iodm = get_limiter(key, 100, clock=clock)
        assert on_ts is not on_iodm
        assert on_ts is ts.get_limiter(key, 50, clock) and on_ts.per_minute == 50
        assert on_iodm.per_minute == 100
        neutral.reset_limiters()
        assert ts.get_limiter(key, 100, clock) is not on_ts
    finally:
        reset_limiters()

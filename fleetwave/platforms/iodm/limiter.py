"""IoDM's call budget: the platform-neutral limiter (:mod:`fleetwave.platforms.limiter`) named in
IoDM's settings (``IODM_RATE_LIMIT`` calls a minute per app, ``IODM_PREFECT_RATE_LIMIT``).

IoDM counts calls per app and minute (100 by default) and answers 403 1010009 beyond it.
"""

from __future__ import annotations

import logging

from fleetwave.clock import Clock
from fleetwave.platforms import limiter as _neutral
from fleetwave.platforms.limiter import LONG_WAIT_SECONDS, AcquireHook, reset_limiters

__all__ = ["RateLimiter", "get_limiter", "prefect_rate_limit_hook", "reset_limiters"]

log = logging.getLogger(__name__)


class RateLimiter(_neutral.RateLimiter):
    """The call budget of one IoDM app (waits are logged naming ``IODM_RATE_LIMIT``)."""

    owner = "app"
    setting = "IODM_RATE_LIMIT"


def prefect_rate_limit_hook(
    name: str, *, timeout_seconds: float = 600.0, warn_after: float = LONG_WAIT_SECONDS
) -> AcquireHook:
    """One slot of the Prefect global concurrency limit ``name`` (``IODM_PREFECT_RATE_LIMIT``)
    per call; see :func:`fleetwave.platforms.limiter.prefect_rate_limit_hook`."""
    return _neutral.prefect_rate_limit_hook(
        name,
        setting="IODM_PREFECT_RATE_LIMIT",
        timeout_seconds=timeout_seconds,
        warn_after=warn_after,
        logger=log,
    )


def get_limiter(
    key: tuple[str, str],
    per_minute: int,
    *,
    clock: Clock | None = None,
    hook: AcquireHook | None = None,
) -> RateLimiter:
    """The process-wide limiter of one (base URL, appId); created on first use (the smaller
    budget wins when two differ)."""
    limiter = _neutral.get_limiter(
        ("iodm", *key), per_minute, clock=clock, hook=hook, factory=RateLimiter
    )
    assert isinstance(limiter, RateLimiter)
    return limiter

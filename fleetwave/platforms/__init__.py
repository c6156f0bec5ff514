"""Device-management platforms: the protocol the engine needs, and one adapter per platform."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fleetwave.clock import Clock

from .base import Platform

__all__ = ["Platform", "open_platform"]


@asynccontextmanager
async def open_platform(
    profile: str = "default", *, clock: Clock | None = None
) -> AsyncIterator[Platform]:
    """Open the platform of a connection profile (``IODM_*`` / ``IODM_NAME_*`` variables).

    Profile ``default`` falls back to the embedded simulator when ``IODM_BASE_URL`` is
    unset. Raises ``UserError`` naming the variable when a profile is incomplete.
    """
    from .iodm import IoDMPlatform, IoDMSettings

    platform = IoDMPlatform(IoDMSettings.from_env(profile), clock=clock)
    try:
        yield platform
    finally:
        await platform.aclose()

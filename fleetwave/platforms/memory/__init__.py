"""The in-memory platform (type ``memory``): a seeded fleet, tasks on a clock, faults, push.

A working platform, not a stub: the contract suite (tests/contract/) runs the same
tests on it as on IoDM, and engine tests run on it where the platform is not the point.
``register(add)`` offers its factory to the platform registry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fleetwave.clock import Clock
from fleetwave.errors import UserError

from .fleet import MODELS, DeviceModel, MemoryConfig
from .platform import CAPABILITIES, MemoryFaults, MemoryPlatform, MemoryTask

__all__ = [
    "CAPABILITIES",
    "MODELS",
    "DeviceModel",
    "MemoryConfig",
    "MemoryFaults",
    "MemoryPlatform",
    "MemoryTask",
    "config_of_profile",
    "new_memory_platform",
    "open_memory_platform",
    "register",
]

PLATFORM_TYPE = "memory"

_INT_FIELDS = ("devices", "groups_per_model", "seed")
_FLOAT_FIELDS = ("failure_rate", "timeout_rate", "offline_share", "already_new_share")


def config_of_profile(profile: str) -> MemoryConfig:
    """The fleet a profile names: ``default``, or ``key=value`` pairs separated by commas
    (``devices=500,seed=3,failure_rate=0.1``; keys: devices, groups_per_model, seed,
    failure_rate, timeout_rate, offline_share, already_new_share)."""
    if profile in ("", "default"):
        return MemoryConfig()
    values: dict[str, Any] = {}
    for item in profile.split(","):
        key, sep, raw = item.strip().partition("=")
        if not sep or key not in (*_INT_FIELDS, *_FLOAT_FIELDS):
            raise UserError(
                f"memory platform profile {profile!r}: {item.strip()!r} is not a known setting",
                hint=f"use key=value pairs with keys {', '.join((*_INT_FIELDS, *_FLOAT_FIELDS))}",
            )
        try:
            values[key] = int(raw) if key in _INT_FIELDS else float(raw)
        except ValueError:
            raise UserError(
                f"memory platform profile {profile!r}: {key}={raw!r} is not a number",
                hint=f"give {key} a number",
            ) from None
    config = MemoryConfig(**values)
    try:
        config.validate()
    except ValueError as exc:
        raise UserError(
            f"memory platform profile {profile!r}: {exc}", hint="fix that setting"
        ) from None
    return config


@asynccontextmanager
async def open_memory_platform(
    profile: str = "default", *, clock: Clock | None = None
) -> AsyncIterator[MemoryPlatform]:
    """The registry's factory for type ``memory``: a fresh in-memory platform per open."""
    platform = MemoryPlatform(config_of_profile(profile), clock=clock)
    try:
        yield platform
    finally:
        await platform.aclose()


def new_memory_platform(profile: str = "default", *, clock: Clock | None = None) -> MemoryPlatform:
    """The registry's factory for type ``memory``: a fresh in-memory platform per open."""
    return MemoryPlatform(config_of_profile(profile), clock=clock)


def register(add: Callable[[str, Any], object] | None = None) -> None:
    """Register type ``memory`` with the platform registry (or offer it to ``add``)."""
    if add is None:
        from fleetwave.platforms import register_platform

        register_platform(PLATFORM_TYPE, new_memory_platform, simulated=True)
    else:
        add(PLATFORM_TYPE, new_memory_platform)


register()

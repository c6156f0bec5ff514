"""Verizon ThingSpace Software Management (FOTA v1 upgrades, FOTA v2 file campaigns).

``ThingSpacePlatform`` implements the Platform protocol over httpx; ``ThingSpaceSettings``
configures it from code or ``THINGSPACE_<PROFILE>_*`` variables. Importing the package
registers the platform type ``thingspace``.
"""

from __future__ import annotations

from fleetwave.clock import Clock

from .adapter import (
    MAX_DEVICES_PER_TASK,
    PAGE_SIZES,
    PATHS,
    ThingSpacePlatform,
    thingspace_capabilities,
)
from .client import ThingSpaceClient, reset_limiters
from .settings import ThingSpaceSettings, env_prefix
from .windows import Schedule, schedule_for, schedule_note

__all__ = [
    "MAX_DEVICES_PER_TASK",
    "PAGE_SIZES",
    "PATHS",
    "PLATFORM_TYPE",
    "Schedule",
    "ThingSpaceClient",
    "ThingSpacePlatform",
    "ThingSpaceSettings",
    "open_thingspace",
    "reset_limiters",
    "schedule_for",
    "schedule_note",
    "thingspace_capabilities",
]

PLATFORM_TYPE = "thingspace"


def open_thingspace(profile: str = "default", *, clock: Clock | None = None) -> ThingSpacePlatform:
    """The platform of a ``THINGSPACE_<PROFILE>_*`` connection profile."""
    return ThingSpacePlatform(ThingSpaceSettings.from_env(profile), clock=clock)


def _simulator_url(profile: str) -> str | None:
    import os

    return (os.environ.get(env_prefix(profile) + "BASE_URL") or "").strip() or None


def _simulated(profile: str) -> bool:
    # a real ThingSpace is served over https only; a plain http:// base is the simulator
    return (_simulator_url(profile) or "").lower().startswith("http://")


def _register() -> None:
    from fleetwave.platforms import register_platform

    register_platform(
        PLATFORM_TYPE,
        open_thingspace,
        simulator_url=_simulator_url,
        simulated=_simulated,
        default_capabilities=thingspace_capabilities(
            ThingSpaceSettings.model_fields["rate_limit"].default
        ),
    )


_register()

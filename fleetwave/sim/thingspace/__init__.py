"""fleetwave.sim.thingspace: a simulator of Verizon ThingSpace Software Management (FOTA v1/v2).

It serves OAuth2 client credentials, the M2M session login and the FOTA v1 upgrade and v2
campaign APIs over the same generated fleet, clocks, faults and ``/sim/`` admin API as the
IoDM simulator. Start it with ``fleetwave sim serve --platform thingspace``.
"""

from fleetwave.sim.thingspace.config import (
    DEMO_ACCOUNT,
    DEMO_KEY,
    DEMO_PASSWORD,
    DEMO_SECRET,
    DEMO_USERNAME,
    TSConfig,
)

__all__ = [
    "DEFAULT_PORT",
    "DEMO_ACCOUNT",
    "DEMO_KEY",
    "DEMO_PASSWORD",
    "DEMO_SECRET",
    "DEMO_USERNAME",
    "TSConfig",
]

DEFAULT_PORT = 8744

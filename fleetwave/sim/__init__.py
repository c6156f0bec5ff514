"""fleetwave.sim: a faithful simulator of Huawei IoDM's northbound upgrade API (FastAPI/uvicorn).

It is the embedded default platform of the demo and the test bed of every other area.
Start it with ``fleetwave sim serve`` or, in tests, ``fleetwave.sim.testing.run_simulator``.
The Verizon ThingSpace simulator lives in :mod:`fleetwave.sim.thingspace`
(``fleetwave sim serve --platform thingspace``).
"""

from fleetwave.sim.config import DEMO_APP_ID, DEMO_SECRET, SimConfig

__all__ = ["DEFAULT_PORT", "DEMO_APP_ID", "DEMO_SECRET", "SimConfig"]

DEFAULT_PORT = 8743

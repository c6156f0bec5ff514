"""The platforms the contract suite runs on, each with a driver for what the protocol
does not cover: moving time, injecting faults, reading the platform's own truth.

Every test takes ``case`` (a :class:`Case`): the opened platform and its driver.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import pendulum
import pytest

from fleetwave.clock import ManualClock
from fleetwave.platforms.base import PackageInfo, PackageKind, Platform
from fleetwave.platforms.iodm import IoDMPlatform, IoDMSettings
from fleetwave.platforms.memory import MemoryConfig, MemoryPlatform
from fleetwave.sim.linked_clock import SimLinkedClock
from fleetwave.sim.testing import SimHandle, run_simulator

# The target every platform offers: WaterMeter WM-200 (always online), firmware 1.5.0.
TARGET_KIND = PackageKind.FIRMWARE
TARGET_DEVICE_TYPE = "WaterMeter"
TARGET_MODEL = "WM-200"
TARGET_VERSION = "1.5.0"

__all__ = ["Case", "Driver", "target"]


class Driver(Protocol):
    """What a test may do to a platform beyond the protocol."""

    fleet_size: int

    def now(self) -> pendulum.DateTime:
        """The platform's now (what the tasks it creates record)."""
        ...

    async def advance(self, seconds: float) -> None:
        """Move the platform's time forward (and let it act on it)."""
        ...

    def lose_next_create_reply(self) -> None:
        """The next create call commits its task, then its caller sees OutcomeUnknown."""
        ...

    def lose_next_create_request(self) -> None:
        """The next create call raises OutcomeUnknown without committing anything."""
        ...

    def tasks_per_device(self) -> Counter[str]:
        """The platform's own count of upgrade tasks per device."""
        ...


@dataclass
class Case:
    name: str
    platform: Platform
    driver: Driver


class MemoryDriver:
    def __init__(self, platform: MemoryPlatform, clock: ManualClock) -> None:
        self.platform = platform
        self.clock = clock
        self.fleet_size = platform.config.devices

    def now(self) -> pendulum.DateTime:
        return self.clock.now()

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.platform.pump()

    def lose_next_create_reply(self) -> None:
        self.platform.faults.create_outcome_unknown = 1

    def lose_next_create_request(self) -> None:
        self.platform.faults.create_lost = 1

    def tasks_per_device(self) -> Counter[str]:
        return self.platform.tasks_per_device()


_OPERATIONS = "/iodm/northbound/v1.5.0/operations"


class IoDMDriver:
    def __init__(self, sim: SimHandle) -> None:
        self.sim = sim
        self.fleet_size = sim.config.devices

    def now(self) -> pendulum.DateTime:
        return self.sim.clock()

    async def advance(self, seconds: float) -> None:
        self.sim.advance(seconds)

    def _drop_next_create(self, *, after_commit: bool) -> None:
        self.sim.set_faults(
            drop_rate=1.0,
            drop_after_commit=after_commit,
            methods=["POST"],
            path_prefix=_OPERATIONS,
            count=1,
        )

    def lose_next_create_reply(self) -> None:
        self._drop_next_create(after_commit=True)

    def lose_next_create_request(self) -> None:
        self._drop_next_create(after_commit=False)

    def tasks_per_device(self) -> Counter[str]:
        return Counter(self.sim.stats()["device_task_counts"])


@pytest.fixture(params=["iodm", "memory"])
async def case(request: pytest.FixtureRequest) -> AsyncIterator[Case]:
    """An opened platform of each type with its driver (a fresh fleet per test)."""
    if request.param == "memory":
        clock = ManualClock()
        memory = MemoryPlatform(MemoryConfig(devices=400, seed=3, failure_rate=0.1), clock=clock)
        try:
            yield Case("memory", memory, MemoryDriver(memory, clock))
        finally:
            await memory.aclose()
        return
    with _simulator() as sim:
        linked = SimLinkedClock(sim.base_url)
        settings = IoDMSettings(
            base_url=sim.base_url, app_id=sim.app_id, secret=sim.secret, rate_limit=0
        )
        iodm = IoDMPlatform(settings, clock=linked)
        try:
            yield Case("iodm", iodm, IoDMDriver(sim))
        finally:
            await iodm.aclose()
            linked.close()


def _simulator() -> Any:
    return run_simulator(
        devices=800, groups=5, seed=3, clock="manual", rate_limit=0, failure_rate=0.1
    )


async def target(platform: Platform, count: int) -> tuple[PackageInfo, list[str]]:
    """The target package and ``count`` online devices it fits that are not on its version."""
    packages = [
        p
        async for p in platform.find_packages(
            kind=TARGET_KIND,
            device_type=TARGET_DEVICE_TYPE,
            model=TARGET_MODEL,
            version=TARGET_VERSION,
        )
    ]
    assert len(packages) == 1, packages
    package = packages[0]
    devices: list[str] = []
    async for d in platform.devices(device_type=package.device_type, status="ONLINE"):
        if d.model == package.model and d.fw_version != package.version:
            devices.append(d.device_id)
            if len(devices) == count:
                break
    assert len(devices) == count, f"only {len(devices)} devices fit {package.file_id}"
    return package, devices

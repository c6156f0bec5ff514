"""The in-memory platform's fleet: device models, devices, groups and packages from a seed.

Everything is drawn from ``random.Random`` seeded with the fleet's seed, so the same
:class:`MemoryConfig` always gives the same fleet (device IDs, groups, versions, online
state). The models reuse the simulator's names so one campaign file runs on either.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from fleetwave.platforms.base import DeviceGroup, PackageInfo, PackageKind

__all__ = ["MODELS", "DeviceModel", "Fleet", "MemoryConfig", "MemoryDevice"]


@dataclass(frozen=True, slots=True)
class DeviceModel:
    """One device type/model/manufacturer with its firmware and software lines."""

    key: str  # group name prefix, e.g. "meters"
    device_type: str
    model: str
    manufacturer: str
    weight: float  # share of the fleet
    fw_current: str
    fw_new: str
    sw_current: str
    sw_new: str
    failure_rate: float | None = None  # None: the platform's configured share


MODELS: tuple[DeviceModel, ...] = (
    DeviceModel("meters", "WaterMeter", "WM-200", "Aquaflow", 0.5,
                "1.4.2", "1.5.0", "2.0.1", "2.1.0"),
    DeviceModel("sensors", "SmokeSensor", "NBS-10", "Sensorix", 0.3,
                "3.1.0", "3.2.0", "1.0.7", "1.1.0"),
    DeviceModel("flaky", "MultiSensor", "FLAKY-1", "Flakeworks", 0.2,
                "0.1.0", "0.2.0", "0.5.0", "0.6.0", 0.5),
)  # fmt: skip

_CITIES = ("vienna", "oslo", "porto", "riga", "sofia", "dublin", "athens", "zurich")


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    """How big the in-memory fleet is and how its devices behave (all durations in seconds).

    A device's part of a task waits ``start_delay_s`` (drawn in the range) once it may
    start (its window is open and it is online), runs ``run_s``, and ends succeeded,
    failed (share ``failure_rate``, or its model's own rate) or timed out (share
    ``timeout_rate``: it runs ``device_timeout_s`` and the platform gives up).
    """

    devices: int = 300
    groups_per_model: int = 2
    seed: int = 1
    failure_rate: float = 0.02
    timeout_rate: float = 0.0
    offline_share: float = 0.0
    already_new_share: float = 0.0
    start_delay_s: tuple[float, float] = (0.0, 60.0)
    run_s: tuple[float, float] = (60.0, 600.0)
    device_timeout_s: float = 3600.0
    connection_key: str = "memory:local"

    def validate(self) -> None:
        """Raise ValueError naming the setting that is out of range."""
        if self.devices < 1:
            raise ValueError(f"devices must be at least 1, not {self.devices}")
        if self.groups_per_model < 1:
            raise ValueError(f"groups_per_model must be at least 1, not {self.groups_per_model}")
        for name in ("failure_rate", "timeout_rate", "offline_share", "already_new_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if self.failure_rate + self.timeout_rate > 1.0:
            raise ValueError("failure_rate + timeout_rate must not exceed 1")
        for name in ("start_delay_s", "run_s"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ValueError(f"{name} must be a range 0 <= low <= high, not {(lo, hi)}")
        if self.device_timeout_s <= 0:
            raise ValueError(f"device_timeout_s must be positive, not {self.device_timeout_s}")


@dataclass(slots=True)
class MemoryDevice:
    """One device; ``fw_version``/``sw_version`` change when an upgrade succeeds."""

    index: int
    device_id: str
    model: DeviceModel
    group_id: str
    fw_version: str
    sw_version: str
    online: bool

    def version(self, kind: PackageKind) -> str:
        return self.fw_version if kind is PackageKind.FIRMWARE else self.sw_version

    def set_version(self, kind: PackageKind, version: str) -> None:
        if kind is PackageKind.FIRMWARE:
            self.fw_version = version
        else:
            self.sw_version = version


@dataclass
class Fleet:
    """Devices (in index order), groups and packages of one in-memory platform."""

    devices: list[MemoryDevice] = field(default_factory=list)
    groups: list[DeviceGroup] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)  # group_id -> device IDs
    packages: list[PackageInfo] = field(default_factory=list)
    by_id: dict[str, MemoryDevice] = field(default_factory=dict)
    _models: dict[tuple[str, str, str], DeviceModel] = field(default_factory=dict, repr=False)

    @classmethod
    def generate(cls, config: MemoryConfig, models: tuple[DeviceModel, ...] = MODELS) -> Fleet:
        """Draw the fleet of ``config`` (same config, same fleet)."""
        rng = random.Random(config.seed)
        fleet = cls()
        groups_of: dict[str, list[str]] = {}
        number = 0
        for m in models:
            ids = []
            for k in range(config.groups_per_model):
                number += 1
                gid = f"grp-{number:04d}"
                name = f"{m.key}-{_CITIES[k % len(_CITIES)]}"
                if k >= len(_CITIES):
                    name += f"-{k // len(_CITIES)}"
                fleet.groups.append(DeviceGroup(gid, name, 0))
                fleet.members[gid] = []
                ids.append(gid)
            groups_of[m.key] = ids
            for kind, old, new in (
                (PackageKind.FIRMWARE, m.fw_current, m.fw_new),
                (PackageKind.SOFTWARE, m.sw_current, m.sw_new),
            ):
                short = "fw" if kind is PackageKind.FIRMWARE else "sw"
                for version in (old, new):
                    fleet.packages.append(
                        PackageInfo(
                            file_id=f"pkg-{m.key}-{short}-{version}",
                            name=f"{m.model}-{short}-{version}",
                            version=version,
                            kind=kind,
                            device_type=m.device_type,
                            model=m.model,
                            manufacturer_name=m.manufacturer,
                        )
                    )
        weights = [m.weight for m in models]
        for index in range(config.devices):
            m = rng.choices(models, weights)[0]
            gid = rng.choice(groups_of[m.key])
            on_new = rng.random() < config.already_new_share
            online = rng.random() >= config.offline_share
            device = MemoryDevice(
                index=index,
                device_id=f"{m.key}-{config.seed:x}-{index:06d}",
                model=m,
                group_id=gid,
                fw_version=m.fw_new if on_new else m.fw_current,
                sw_version=m.sw_new if on_new else m.sw_current,
                online=online,
            )
            fleet.devices.append(device)
            fleet.by_id[device.device_id] = device
            fleet.members[gid].append(device.device_id)
        fleet.groups = [
            DeviceGroup(g.group_id, g.name, len(fleet.members[g.group_id])) for g in fleet.groups
        ]
        return fleet

    # -- building a fleet by hand (tests that need a particular inventory) ---------------

    def add_package(self, package: PackageInfo) -> None:
        """Offer ``package`` (a hand-built fleet starts with none)."""
        self.packages.append(package)

    def add_group(self, group_id: str, name: str, device_ids: Iterable[str]) -> None:
        """A group with these members (IDs the inventory does not hold are allowed)."""
        ids = list(device_ids)
        self.members[group_id] = ids
        self.groups.append(DeviceGroup(group_id, name, len(ids)))

    def add_device(
        self,
        device_id: str,
        *,
        device_type: str = "WaterMeter",
        model: str = "WM-200",
        manufacturer: str = "Aquaflow",
        fw_version: str = "1.4.2",
        sw_version: str = "2.0.1",
        online: bool = True,
    ) -> MemoryDevice:
        """Put one device into the inventory (replacing one of the same ID)."""
        key = (device_type, model, manufacturer)
        m = self._models.get(key)
        if m is None:
            m = DeviceModel(
                model.lower(), device_type, model, manufacturer, 0.0,
                fw_version, fw_version, sw_version, sw_version,
            )  # fmt: skip
            self._models[key] = m
        device = MemoryDevice(len(self.devices), device_id, m, "", fw_version, sw_version, online)
        old = self.by_id.get(device_id)
        if old is not None:
            device.index = old.index
            self.devices[old.index] = device
        else:
            self.devices.append(device)
        self.by_id[device_id] = device
        return device

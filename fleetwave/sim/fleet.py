"""The simulated fleet: device models, groups, packages and per-device attributes.

Everything is derived from ``(seed, index)`` on demand: groups are contiguous index
ranges (one model each), device IDs map back to their index in O(1), and per-device
attributes (status, wake phase, already-upgraded flag) come from a 64-bit hash, so a
million-device fleet costs a few arrays of group boundaries, not a million objects.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "MODELS",
    "Connectivity",
    "DeviceModel",
    "Fleet",
    "Group",
    "Package",
    "hash_u",
    "hash_u_array",
]

_MASK = (1 << 64) - 1
_TWO64 = float(1 << 64)

# Salts keep independent draws independent (status, wake phase, versions, outcomes, ...).
SALT_STATUS = 1
SALT_PHASE = 2
SALT_VERSION = 3
SALT_GROUP = 4
SALT_ID = 5


def _mix(x: int) -> int:
    """splitmix64 finaliser on a Python int (64-bit wrap-around)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def hash64(*parts: int) -> int:
    """A 64-bit hash of a sequence of non-negative ints (order matters)."""
    h = 0
    for p in parts:
        h = _mix(h ^ (p & _MASK))
    return h


def hash_u(*parts: int) -> float:
    """A uniform draw in [0, 1) from the hash of ``parts``: the simulator's only randomness."""
    return hash64(*parts) / _TWO64


def _mix_array(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_u_array(seed: int, indices: npt.NDArray[np.int64], salt: int) -> npt.NDArray[np.float64]:
    """Vectorised ``hash_u(seed, index, salt)`` for many indices (same values as the scalar)."""
    h = _mix_array(np.full(indices.shape, seed & _MASK, dtype=np.uint64))
    h = _mix_array(h ^ indices.astype(np.uint64))
    h = _mix_array(h ^ np.uint64(salt))
    return h.astype(np.float64) / _TWO64


class Connectivity(enum.StrEnum):
    """How a device reaches the platform."""

    ALWAYS = "always"  # always online: a task starts at once
    SLEEPER = "sleeper"  # NB-IoT: wakes every ``wake_minutes``; tasks start at the next wake
    OFFLINE = "offline"  # never reachable


@dataclass(frozen=True, slots=True)
class DeviceModel:
    """One device type/model/manufacturer with its firmware and software lines."""

    key: str  # group name prefix, e.g. "meters"
    device_type: str
    model: str
    manufacturer: str
    protocol: str
    connectivity: Connectivity
    wake_minutes: int  # for sleepers
    weight: float  # share of the fleet
    fw_current: str
    fw_new: str
    sw_current: str
    sw_new: str
    failure_rate: float | None  # None: the simulator's global rate
    duration_s: tuple[float, float]  # processing time of one attempt, min..max


MODELS: tuple[DeviceModel, ...] = (
    DeviceModel(
        "meters", "WaterMeter", "WM-200", "Aquaflow", "CoAP", Connectivity.ALWAYS, 0, 0.40,
        "1.4.2", "1.5.0", "2.0.1", "2.1.0", None, (60.0, 600.0),
    ),
    DeviceModel(
        "sensors", "SmokeSensor", "NBS-10", "Sensorix", "LWM2M", Connectivity.SLEEPER, 30, 0.25,
        "3.1.0", "3.2.0", "1.0.7", "1.1.0", None, (300.0, 1800.0),
    ),
    DeviceModel(
        "trackers", "Tracker", "TRK-9", "Roamly", "MQTT", Connectivity.ALWAYS, 0, 0.20,
        "0.9.8", "1.0.0", "5.2.0", "5.3.0", None, (120.0, 900.0),
    ),
    DeviceModel(
        "gas", "GasMeter", "GM-50", "Gasmetrix", "CoAP", Connectivity.SLEEPER, 60, 0.12,
        "2.2.0", "2.3.1", "4.0.0", "4.0.2", None, (300.0, 2400.0),
    ),
    DeviceModel(
        "flaky", "MultiSensor", "FLAKY-1", "Flakeworks", "CoAP", Connectivity.ALWAYS, 0, 0.03,
        "0.1.0", "0.2.0", "0.5.0", "0.6.0", 0.5, (60.0, 300.0),
    ),
)  # fmt: skip

_CITIES = (
    "berlin", "paris", "madrid", "rome", "vienna", "oslo", "lisbon", "prague",
    "warsaw", "dublin", "athens", "zurich", "helsinki", "riga", "sofia", "porto",
)  # fmt: skip

# Fixed fractions of the fleet whose status is not ONLINE (drawn per device).
OFFLINE_SHARE = 0.01
ABNORMAL_SHARE = 0.005  # reachable once a day
INACTIVE_SHARE = 0.005  # never connected
ALREADY_NEW_SHARE = 0.05  # already on the newer firmware/software

STATUS_CODES = ("ONLINE", "OFFLINE", "ABNORMAL", "INACTIVE")


@dataclass(frozen=True, slots=True)
class Group:
    """A device group: the contiguous index range ``[start, stop)`` of one model."""

    number: int
    group_id: str
    name: str
    model: DeviceModel
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True, slots=True)
class Package:
    """A version package on the platform."""

    file_id: str
    name: str
    version: str
    file_type: str  # firmwarePackage | softwarePackage
    model: DeviceModel
    date: str
    upload_time: str

    def to_json(self) -> dict[str, object]:
        return {
            "fileId": self.file_id,
            "name": self.name,
            "version": self.version,
            "fileType": self.file_type,
            "deviceType": self.model.device_type,
            "model": self.model.model,
            "manufacturerName": self.model.manufacturer,
            "protocolType": self.model.protocol,
            "description": f"{self.model.model} {self.file_type[:-7]} {self.version}",
            "date": self.date,
            "uploadTime": self.upload_time,
        }


def _hex_id(seed: int, *parts: int, length: int = 24) -> str:
    a = hash64(seed, SALT_ID, *parts)
    b = hash64(seed, SALT_ID, *parts, 0xABCDEF)
    return f"{a:016x}{b:016x}"[:length]


class Fleet:
    """The generated fleet for ``(devices, groups, seed)``; cheap to build for a million devices."""

    ID_PREFIX = "dev-"

    def __init__(self, devices: int, groups: int, seed: int) -> None:
        if devices < 1:
            raise ValueError(f"the fleet needs at least one device, not {devices}")
        if groups < 1 or groups > devices:
            raise ValueError(f"groups must be between 1 and the number of devices, not {groups}")
        self.size = devices
        self.seed = seed
        self.groups: tuple[Group, ...] = self._make_groups(devices, groups, seed)
        self._starts = [g.start for g in self.groups]
        self.groups_by_id = {g.group_id: g for g in self.groups}
        self.groups_by_name = {g.name: g for g in self.groups}
        self.packages: tuple[Package, ...] = self._make_packages(seed)
        self.id_width = max(8, len(str(devices - 1)))

    # groups ---------------------------------------------------------------------------

    @staticmethod
    def _make_groups(devices: int, groups: int, seed: int) -> tuple[Group, ...]:
        models = [MODELS[g % len(MODELS)] for g in range(groups)]
        per_model: dict[str, int] = {}
        for m in models:
            per_model[m.key] = per_model.get(m.key, 0) + 1
        present = sum(m.weight for m in MODELS if m.key in per_model)
        # mixed sizes: each group's share of its model is jittered by the seed (0.3 .. 1.7)
        jitter = [0.3 + 1.4 * hash_u(seed, SALT_GROUP, g) for g in range(groups)]
        jsum: dict[str, float] = {}
        for m, j in zip(models, jitter, strict=True):
            jsum[m.key] = jsum.get(m.key, 0.0) + j
        shares = [
            (m.weight / present) * (j / jsum[m.key]) for m, j in zip(models, jitter, strict=True)
        ]
        sizes = [max(1, int(s * devices)) for s in shares]
        # fix rounding so sizes sum to the fleet; adjust the largest group
        diff = devices - sum(sizes)
        big = max(range(groups), key=lambda i: sizes[i])
        sizes[big] += diff
        while sizes[big] < 1:  # tiny fleets: take from others
            donor = max(range(groups), key=lambda i: sizes[i])
            sizes[donor] -= 1
            sizes[big] += 1
        out: list[Group] = []
        start = 0
        used: dict[str, int] = {}
        for g, (m, size) in enumerate(zip(models, sizes, strict=True)):
            n = used.get(m.key, 0)
            used[m.key] = n + 1
            city = _CITIES[(g + n) % len(_CITIES)]
            round_ = (g + n) // len(_CITIES)
            name = f"{m.key}-{city}" + (f"-{round_ + 1}" if round_ else "")
            gid = _hex_id(seed, 7, g, length=32)
            gid = f"{gid[:8]}-{gid[8:12]}-{gid[12:16]}-{gid[16:20]}-{gid[20:32]}"
            out.append(Group(g, gid, name, m, start, start + size))
            start += size
        return tuple(out)

    def group_of(self, index: int) -> Group:
        return self.groups[bisect.bisect_right(self._starts, index) - 1]

    def model_of(self, index: int) -> DeviceModel:
        return self.group_of(index).model

    # device ids -----------------------------------------------------------------------

    def device_id(self, index: int) -> str:
        return f"{self.ID_PREFIX}{index:0{self.id_width}d}"

    def index_of(self, device_id: str) -> int | None:
        """The index of ``device_id`` or None when it is not a device of this fleet."""
        if not device_id.startswith(self.ID_PREFIX):
            return None
        digits = device_id[len(self.ID_PREFIX) :]
        if len(digits) != self.id_width or not digits.isdigit():
            return None
        index = int(digits)
        return index if index < self.size else None

    # per-device attributes --------------------------------------------------------------

    def base_status(self, index: int) -> str:
        u = hash_u(self.seed, index, SALT_STATUS)
        return _status_for(u)

    def status_array(self) -> npt.NDArray[np.uint8]:
        """Status codes (index into STATUS_CODES) of every device, vectorised."""
        u = hash_u_array(self.seed, np.arange(self.size, dtype=np.int64), SALT_STATUS)
        codes = np.zeros(self.size, dtype=np.uint8)
        codes[u < OFFLINE_SHARE + ABNORMAL_SHARE + INACTIVE_SHARE] = 3
        codes[u < OFFLINE_SHARE + ABNORMAL_SHARE] = 2
        codes[u < OFFLINE_SHARE] = 1
        return codes

    def base_connectivity(self, index: int) -> tuple[Connectivity, int]:
        """(connectivity, wake period in minutes) before any override."""
        status = self.base_status(index)
        if status in ("OFFLINE", "INACTIVE"):
            return Connectivity.OFFLINE, 0
        if status == "ABNORMAL":
            return Connectivity.SLEEPER, 24 * 60
        m = self.model_of(index)
        return m.connectivity, m.wake_minutes

    def wake_phase(self, index: int) -> float:
        """Fraction of the wake period at which a sleeper wakes (0..1)."""
        return hash_u(self.seed, index, SALT_PHASE)

    def base_versions(self, index: int) -> tuple[str, str]:
        """(fwVersion, swVersion) before any upgrade task ran."""
        m = self.model_of(index)
        u = hash_u(self.seed, index, SALT_VERSION)
        fw = m.fw_new if u < ALREADY_NEW_SHARE else m.fw_current
        sw = m.sw_new if ALREADY_NEW_SHARE <= u < 2 * ALREADY_NEW_SHARE else m.sw_current
        return fw, sw

    def create_time(self, index: int) -> str:
        """Registration time (wire format): devices registered one a minute from 2024-01-01."""
        import pendulum

        t = pendulum.datetime(2024, 1, 1, tz="UTC").add(minutes=index % 1_000_000)
        return t.format("YYYYMMDD[T]HHmmss[Z]")

    # packages -------------------------------------------------------------------------

    def _make_packages(self, seed: int) -> tuple[Package, ...]:
        out: list[Package] = []
        for mi, m in enumerate(MODELS):
            for ki, (ftype, versions) in enumerate(
                (
                    ("firmwarePackage", (m.fw_current, m.fw_new)),
                    ("softwarePackage", (m.sw_current, m.sw_new)),
                )
            ):
                for vi, version in enumerate(versions):
                    short = "fw" if ki == 0 else "sw"
                    out.append(
                        Package(
                            file_id=_hex_id(seed, 9, mi, ki, vi),
                            name=f"{m.model}-{short}-{version}",
                            version=version,
                            file_type=ftype,
                            model=m,
                            date=f"2025-{3 + 4 * vi + ki:02d}-15",
                            upload_time=f"2025{3 + 4 * vi + ki:02d}16T090000Z",
                        )
                    )
        return tuple(out)

    def models_present(self) -> Sequence[DeviceModel]:
        seen: dict[str, DeviceModel] = {}
        for g in self.groups:
            seen.setdefault(g.model.key, g.model)
        return list(seen.values())


def _status_for(u: float) -> str:
    if u < OFFLINE_SHARE:
        return "OFFLINE"
    if u < OFFLINE_SHARE + ABNORMAL_SHARE:
        return "ABNORMAL"
    if u < OFFLINE_SHARE + ABNORMAL_SHARE + INACTIVE_SHARE:
        return "INACTIVE"
    return "ONLINE"

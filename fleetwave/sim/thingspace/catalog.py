"""The ThingSpace view of the generated fleet: IMEIs, MDNs, makes and models, and the
firmware, software and file packages an account can schedule.

It reuses :class:`fleetwave.sim.fleet.Fleet` (the same seeded groups and models as the IoDM
simulator) and only renames: device index ``i`` is the IMEI ``35`` + 12-digit serial + Luhn
check digit.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetwave.sim.fleet import MODELS, DeviceModel, Fleet

__all__ = ["Catalog", "FileImage", "FirmwareImage", "SoftwareImage", "luhn_digit"]

_IMEI_BASE = 35_0000_0000_0000 // 10  # 13 digits "35" + serial; the 15th is the Luhn digit
_TAC = 35_1234_56  # 8-digit type allocation code shared by the simulated devices

# ThingSpace distribution type of each simulated model: LWM2M/OMA-DM devices take FOTA v1
# firmware; HTTP clients take FOTA v2 software and file campaigns.
_DISTRIBUTION = {"meters": "HTTP", "sensors": "LWM2M", "trackers": "HTTP", "gas": "LWM2M"}
_NO_ROLLBACK = {"gas"}  # models whose previous firmware/software is not listed
FILE_BASE_VERSION = "1.0"
FILE_NEW_VERSION = "2.0"


def luhn_digit(body: str) -> int:
    """The Luhn check digit of the digit string ``body`` (the 15th digit of an IMEI)."""
    total = 0
    for pos, ch in enumerate(reversed(body)):
        d = int(ch)
        if pos % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


@dataclass(frozen=True, slots=True)
class FirmwareImage:
    """A FOTA v1 firmware image: upgrades devices of one make/model from one version."""

    name: str
    model: DeviceModel
    from_version: str
    to_version: str
    launch_date: str

    def to_json(self) -> dict[str, object]:
        return {
            "firmwareName": self.name,
            "participantName": "fleetwave-sim",
            "launchDate": self.launch_date,
            "releaseNote": f"{self.model.model} firmware {self.from_version} to {self.to_version}",
            "model": self.model.model,
            "make": self.model.manufacturer,
            "fromVersion": self.from_version,
            "toVersion": self.to_version,
        }


@dataclass(frozen=True, slots=True)
class SoftwareImage:
    """A FOTA v2 software package for HTTP clients of one make/model."""

    name: str
    model: DeviceModel
    from_version: str
    to_version: str
    launch_date: str

    def to_json(self) -> dict[str, object]:
        return {
            "softwareName": self.name,
            "launchDate": self.launch_date,
            "releaseNote": f"{self.model.model} software {self.from_version} to {self.to_version}",
            "model": self.model.model,
            "make": self.model.manufacturer,
            "distributionType": distribution_of(self.model),
            "devicePlatformId": "IoT",
        }


@dataclass(frozen=True, slots=True)
class FileImage:
    """A configuration file version for devices of one make/model (FOTA v2 file campaigns)."""

    name: str
    version: str
    model: DeviceModel

    def to_json(self) -> dict[str, object]:
        return {
            "fileName": self.name,
            "fileVersion": self.version,
            "releaseNote": f"{self.model.model} configuration {self.version}",
            "make": self.model.manufacturer,
            "model": self.model.model,
            "localTargetPath": "/etc/device/config.json",
            "distributionType": distribution_of(self.model),
            "devicePlatformId": "IoT",
        }


def distribution_of(model: DeviceModel) -> str:
    return _DISTRIBUTION.get(model.key, "HTTP")


class Catalog:
    """Device identities and the packages of one account, derived from a :class:`Fleet`."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.firmware: dict[str, FirmwareImage] = {}
        self.software: dict[str, SoftwareImage] = {}
        self.files: dict[tuple[str, str], FileImage] = {}
        for m in MODELS:
            mk = f"{m.manufacturer}_{m.model}"
            pairs = [(m.fw_current, m.fw_new, "2025-06-01")]
            if m.key not in _NO_ROLLBACK:
                pairs.append((m.fw_new, m.fw_current, "2025-06-02"))
            for a, b, day in pairs:
                name = f"FOTA_{mk}_{a}To{b}"
                self.firmware[name] = FirmwareImage(name, m, a, b, day)
            pairs = [(m.sw_current, m.sw_new, "2025-07-01")]
            if m.key not in _NO_ROLLBACK:
                pairs.append((m.sw_new, m.sw_current, "2025-07-02"))
            for a, b, day in pairs:
                name = f"SW_{mk}_{a}To{b}"
                self.software[name] = SoftwareImage(name, m, a, b, day)
            for version in (FILE_BASE_VERSION, FILE_NEW_VERSION):
                fname = f"{m.model}-config"
                self.files[(fname, version)] = FileImage(fname, version, m)

    # identities -----------------------------------------------------------------------

    def imei(self, index: int) -> str:
        body = f"{_TAC:08d}{index:06d}"
        return body + str(luhn_digit(body))

    def index_of(self, imei: str) -> int | None:
        """The fleet index of ``imei``, or None when it is not a device of this account."""
        if len(imei) != 15 or not imei.isdigit() or not imei.startswith(f"{_TAC:08d}"):
            return None
        if luhn_digit(imei[:14]) != int(imei[14]):
            return None
        index = int(imei[8:14])
        return index if index < self.fleet.size else None

    def mdn(self, index: int) -> str:
        return f"555{index:07d}"

    def model_of(self, index: int) -> DeviceModel:
        return self.fleet.model_of(index)

    def fota_eligible(self, index: int) -> bool:
        """Devices that never connected are not FOTA eligible."""
        return self.fleet.base_status(index) != "INACTIVE"

    def base_firmware(self, index: int) -> str:
        return self.fleet.base_versions(index)[0]

    def base_software(self, index: int) -> str:
        return self.fleet.base_versions(index)[1]

    def files_for(self, model: DeviceModel) -> list[FileImage]:
        return [f for f in self.files.values() if f.model.key == model.key]

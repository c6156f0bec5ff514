"""Test builders: campaign specs, packages, and an in-memory platform with a hand-built fleet.

The platform is the real :class:`~fleetwave.platforms.memory.MemoryPlatform` (on a
ManualClock), its fleet filled by the test through ``platform.fleet.add_*`` and
``platform.add_task`` instead of drawn from a seed.
"""

from __future__ import annotations

from fleetwave.clock import ManualClock
from fleetwave.platforms.base import PackageInfo, PackageKind
from fleetwave.platforms.memory import MemoryPlatform
from fleetwave.platforms.memory.fleet import Fleet
from fleetwave.spec.model import CampaignSpec

__all__ = ["hand_built_platform", "make_package", "make_spec", "spec_dict", "writes"]

#: Calls that change the platform (everything else only reads).
WRITE_CALLS = ("create_upgrade_task", "subscribe_upgrade_events")


def make_package(
    file_id: str,
    version: str,
    *,
    kind: PackageKind = PackageKind.FIRMWARE,
    device_type: str = "WaterMeter",
    model: str = "WM-200",
    manufacturer_name: str = "Aquaflow",
) -> PackageInfo:
    return PackageInfo(
        file_id=file_id,
        name=f"{model}-{kind.value[:2]}-{version}",
        version=version,
        kind=kind,
        device_type=device_type,
        model=model,
        manufacturer_name=manufacturer_name,
    )


def hand_built_platform(*packages: PackageInfo) -> MemoryPlatform:
    """An in-memory platform offering ``packages`` and holding no devices, groups or tasks."""
    fleet = Fleet()
    for package in packages:
        fleet.add_package(package)
    return MemoryPlatform(fleet=fleet, clock=ManualClock())


def writes(platform: MemoryPlatform) -> int:
    """Calls made so far that would change the platform."""
    return sum(platform.calls[label] for label in WRITE_CALLS)


def spec_dict(**overrides: object) -> dict[str, object]:
    """A minimal valid campaign as a dict (WaterMeter firmware 1.5.0); keys replaced whole."""
    base: dict[str, object] = {
        "name": "test-campaign",
        "kind": "firmware",
        "package": {"version": "1.5.0", "device_type": "WaterMeter"},
        "targets": {"groups": [{"name": "meters-a"}]},
        "waves": [{"count": 2}, {"percent": 50}, {"percent": 100}],
    }
    base.update(overrides)
    return base


def make_spec(**overrides: object) -> CampaignSpec:
    """A validated :class:`CampaignSpec` from :func:`spec_dict` with ``overrides``."""
    return CampaignSpec.model_validate(spec_dict(**overrides))

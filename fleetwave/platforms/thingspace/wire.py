"""ThingSpace's wire bodies read into neutral value types (packages, devices, tasks, results).

The shapes follow Verizon's Software Management API reference and its Python SDK
(``sdksio-verizon-apis-sdk`` 2.0.0, models ``Firmware``, ``FirmwareUpgrade``,
``DeviceListQueryItem``, ``V2CampaignMetaInfo``, ``DeviceSoftwareUpgrade`` ...). A body
without a documented field raises :class:`MalformedResponse` naming the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fleetwave.platforms.base import (
    DeviceInfo,
    DeviceOutcome,
    PackageInfo,
    PackageKind,
    PlatformTask,
    SubtaskResult,
)

from .errors import MalformedResponse
from .vocab import counts_of, device_outcome, is_final_task_status, task_state

__all__ = [
    "FILE_ID_SEPARATOR",
    "V1_PREFIX",
    "V2_PREFIX",
    "device_info",
    "field",
    "file_package",
    "firmware_package",
    "items",
    "operation_id_of",
    "reason_of",
    "split_file_id",
    "split_operation_id",
    "v1_results",
    "v1_task",
    "v2_task",
]

V1_PREFIX = "v1:"
V2_PREFIX = "v2:"
FILE_ID_SEPARATOR = "@"


def field(body: Any, name: str, where: str) -> Any:
    """``body[name]``, or a MalformedResponse naming the field and the call."""
    if not isinstance(body, Mapping) or body.get(name) in (None, ""):
        raise MalformedResponse(
            f"ThingSpace's answer to {where} has no {name!r}; check that THINGSPACE_BASE_URL "
            "points at ThingSpace"
        )
    return body[name]


def items(body: Any, key: str, where: str) -> list[Mapping[str, Any]]:
    """The list under ``key`` (or the body itself when it is a list)."""
    value = body if isinstance(body, list) else (body or {}).get(key, [])
    if not isinstance(value, list) or not all(isinstance(x, Mapping) for x in value):
        raise MalformedResponse(f"ThingSpace's answer to {where} has no list {key!r}")
    return value


def operation_id_of(version: int, platform_id: str) -> str:
    """fleetwave's operationId of a v1 upgrade or v2 campaign id (the API is in the prefix)."""
    return f"{V1_PREFIX if version == 1 else V2_PREFIX}{platform_id}"


def split_operation_id(operation_id: str) -> tuple[int, str] | None:
    """(API version, ThingSpace id) of an operationId fleetwave made; None for others."""
    for version, prefix in ((1, V1_PREFIX), (2, V2_PREFIX)):
        if operation_id.startswith(prefix) and len(operation_id) > len(prefix):
            return version, operation_id[len(prefix) :]
    return None


def split_file_id(file_id: str) -> tuple[str, str] | None:
    """(fileName, fileVersion) of a v2 file's package id ``NAME@VERSION``."""
    name, sep, version = file_id.rpartition(FILE_ID_SEPARATOR)
    return (name, version) if sep and name and version else None


def reason_of(d: Mapping[str, Any]) -> str | None:
    """A device's result reason (``resultReason`` in upgrade lists, ``reason`` in history)."""
    value = d.get("resultReason") or d.get("reason") or d.get("Reason")
    return str(value) if value else None


def firmware_package(f: Mapping[str, Any]) -> PackageInfo:
    """A FOTA v1 firmware image (GET /firmware/{account})."""
    name = str(field(f, "firmwareName", "GET /firmware"))
    return PackageInfo(
        file_id=name,
        name=name,
        version=str(f.get("toVersion") or f.get("firmwareTo") or ""),
        kind=PackageKind.FIRMWARE,
        device_type="",
        model=str(f.get("model") or ""),
        manufacturer_name=str(f.get("make") or ""),
        protocol_type=str(f["protocol"]) if f.get("protocol") else None,
        description=str(f["releaseNote"]) if f.get("releaseNote") else None,
        # every device of a v1 upgrade must run the image's from-version (DeviceMismatch)
        from_version=str(f["fromVersion"]) if f.get("fromVersion") else None,
    )


def file_package(f: Mapping[str, Any]) -> PackageInfo:
    """A FOTA v2 file (GET /files/{acc}); its id is ``fileName@fileVersion``."""
    name = str(field(f, "fileName", "GET /files"))
    version = str(field(f, "fileVersion", "GET /files"))
    return PackageInfo(
        file_id=f"{name}{FILE_ID_SEPARATOR}{version}",
        name=name,
        version=version,
        kind=PackageKind.SOFTWARE,
        device_type="",
        model=str(f.get("model") or ""),
        manufacturer_name=str(f.get("make") or ""),
        protocol_type=str(f["distributionType"]) if f.get("distributionType") else None,
        description=str(f["releaseNote"]) if f.get("releaseNote") else None,
    )


#: Why a device the account lists with ``fotaEligible: false`` is skipped.
NOT_FOTA_ELIGIBLE = "not FOTA eligible on ThingSpace (fotaEligible false: never registered)"


def device_info(d: Mapping[str, Any]) -> DeviceInfo:
    """One device of the account (v1 device list). ThingSpace has no device types and no
    online status in this list: both are None. A device listed as not FOTA eligible is
    ``ineligible`` (ThingSpace would refuse any upgrade naming it)."""
    software = d.get("softwareList")
    sw_version = None
    if isinstance(software, list) and software and isinstance(software[0], Mapping):
        sw_version = software[0].get("version")
    return DeviceInfo(
        device_id=str(field(d, "deviceId", "the device list")),
        device_type=None,
        model=d.get("model"),
        manufacturer_name=d.get("make"),
        fw_version=d.get("firmware"),
        sw_version=sw_version,
        status=None,
        ineligible=NOT_FOTA_ELIGIBLE if d.get("fotaEligible") is False else None,
    )


def v1_results(upgrade: Mapping[str, Any], where: str) -> list[SubtaskResult]:
    """Every device's outcome of a FOTA v1 upgrade (its ``deviceList``)."""
    final = is_final_task_status(upgrade.get("status"))
    target = upgrade.get("firmwareTo")
    out = []
    for d in items(upgrade, "deviceList", where):
        detail = reason_of(d)
        outcome = device_outcome(d.get("status"), task_final=final, reason=detail)
        out.append(
            SubtaskResult(
                device_id=str(field(d, "deviceId", where)),
                outcome=outcome,
                detail=detail,
                target_version=target,
                current_version=target if outcome is DeviceOutcome.SUCCEEDED else None,
            )
        )
    return out


def v1_task(upgrade: Mapping[str, Any], where: str) -> PlatformTask:
    """A FOTA v1 upgrade as a neutral task."""
    results = v1_results(upgrade, where)
    counts = counts_of(r.outcome for r in results)
    return PlatformTask(
        operation_id=operation_id_of(1, str(field(upgrade, "id", where))),
        kind=PackageKind.FIRMWARE,
        state=task_state(upgrade.get("status"), counts),
        device_ids=tuple(r.device_id for r in results),
        counts=counts,
        created_at=None,  # ThingSpace does not say when; startDate is the schedule
        file_version=upgrade.get("firmwareTo"),
    )


def v2_task(
    campaign: Mapping[str, Any], devices: Iterable[Mapping[str, Any]], where: str
) -> PlatformTask:
    """A FOTA v2 campaign and its device statuses as a neutral task."""
    final = is_final_task_status(campaign.get("status"))
    ids, outcomes = [], []
    for d in devices:
        ids.append(str(field(d, "deviceId", where)))
        outcomes.append(device_outcome(d.get("status"), task_final=final, reason=reason_of(d)))
    counts = counts_of(outcomes)
    version = campaign.get("fileVersion") or campaign.get("softwareTo")
    return PlatformTask(
        operation_id=operation_id_of(2, str(field(campaign, "id", where))),
        kind=PackageKind.SOFTWARE,
        state=task_state(campaign.get("status"), counts),
        device_ids=tuple(ids),
        counts=counts,
        created_at=None,  # ThingSpace does not say when; startDate is the schedule
        file_version=str(version) if version else None,
    )

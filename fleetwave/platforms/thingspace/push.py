"""ThingSpace Software Management callbacks read into neutral upgrade events.

A FOTA v1 callback (service ``Fota``) names the upgrade (``upgradeId``, or ``id``) and
a device with its status; a FOTA v2 callback names the campaign (``campaignId``) and a
device. A body may hold one object, a list of them, or ``{"deviceList": [...]}`` under
one upgrade. Statuses map through :mod:`.vocab`; a final status is a result, anything
else a step. A body that is not JSON, or names no device, raises :class:`PushParseError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pendulum

from fleetwave.platforms.base import (
    PackageKind,
    PushParseError,
    UpgradeEvent,
    UpgradeEventKind,
    UpgradeStep,
)

from .vocab import device_outcome
from .wire import operation_id_of

__all__ = ["parse_push_body"]

_STEPS = {
    "downloading": UpgradeStep.DOWNLOADING,
    "downloaded": UpgradeStep.DOWNLOADED,
    "downloadsuccess": UpgradeStep.DOWNLOADED,
    "installing": UpgradeStep.INSTALLING,
    "inprogress": UpgradeStep.DOWNLOADING,
}


def _device(item: Mapping[str, Any]) -> str | None:
    for key in ("deviceId", "deviceIMEI", "imei", "IMEI"):
        value = item.get(key)
        if value:
            return str(value)
    return None


def _events(
    item: Mapping[str, Any], parent: Mapping[str, Any], now: pendulum.DateTime
) -> list[UpgradeEvent]:
    merged = {**parent, **item}
    devices = merged.get("deviceList")
    if isinstance(devices, list) and _device(item) is None:
        out: list[UpgradeEvent] = []
        inner_parent = {k: v for k, v in merged.items() if k != "deviceList"}
        for d in devices:
            if not isinstance(d, Mapping):
                raise PushParseError("a deviceList entry of the callback is not an object")
            out += _events(d, inner_parent, now)
        return out
    device = _device(merged)
    if device is None:
        raise PushParseError("the callback names no device (deviceId)")
    campaign = merged.get("campaignId")
    upgrade = merged.get("upgradeId") or merged.get("id")
    op: str | None
    if campaign:
        kind, op = PackageKind.SOFTWARE, operation_id_of(2, str(campaign))
    else:
        kind, op = PackageKind.FIRMWARE, operation_id_of(1, str(upgrade)) if upgrade else None
    status = str(merged.get("status") or merged.get("deviceStatus") or "")
    detail = merged.get("resultReason") or merged.get("reason")
    outcome = device_outcome(status, reason=str(detail) if detail else None)
    target = merged.get("firmwareTo") or merged.get("fileVersion") or merged.get("softwareTo")
    source = merged.get("firmwareFrom") or merged.get("softwareFrom")
    common: dict[str, Any] = {
        "package_kind": kind,
        "device_id": device,
        "operation_id": op,
        "received_at": now,
        "source": status or "callback",
        "target_version": str(target) if target else None,
        "source_version": str(source) if source else None,
        "detail": str(detail) if detail else None,
    }
    if outcome.is_final:
        return [
            UpgradeEvent(
                kind=UpgradeEventKind.RESULT,
                outcome=outcome,
                current_version=str(target) if target and outcome.value == "succeeded" else None,
                **common,
            )
        ]
    step = _STEPS.get(status.replace(" ", "").lower())
    if step is None:
        return []  # pending and unknown statuses are no step of the device's own
    return [UpgradeEvent(kind=UpgradeEventKind.STEP, step=step, **common)]


def parse_push_body(body: bytes, *, received_at: pendulum.DateTime) -> list[UpgradeEvent]:
    """The events of one callback body."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PushParseError(f"the callback body is not JSON ({exc})") from None
    entries = data if isinstance(data, list) else [data]
    out: list[UpgradeEvent] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise PushParseError("the callback body is not a JSON object or a list of them")
        out += _events(entry, {}, received_at)
    return out

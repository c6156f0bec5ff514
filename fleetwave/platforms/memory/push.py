"""The in-memory platform's push bodies: its own JSON shape, built and parsed here.

A body is ``{"source": "memory", "events": [EVENT, ...]}``; an EVENT is::

    {"type": "step" | "result", "packageKind": "firmware" | "software",
     "deviceId": str, "taskId": str, "at": ISO-8601 UTC,
     "step": "downloading" | ... (steps only), "outcome": "succeeded" | ... (results only),
     "sourceVersion", "targetVersion", "currentVersion", "detail": str | null}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pendulum

from fleetwave.platforms.base import (
    DeviceOutcome,
    PackageKind,
    PushParseError,
    UpgradeEvent,
    UpgradeEventKind,
    UpgradeStep,
)

__all__ = ["SOURCE", "event_json", "parse_body"]

SOURCE = "memory"
_MAX_EVENTS = 10_000


def event_json(event: UpgradeEvent) -> dict[str, Any]:
    """One event in the pushed shape (``reported_at`` becomes ``at``)."""
    at = event.reported_at or event.received_at
    return {
        "type": event.kind.value,
        "packageKind": event.package_kind.value,
        "deviceId": event.device_id,
        "taskId": event.operation_id,
        "at": at.in_tz("UTC").isoformat(),
        "step": event.step.value if event.step else None,
        "outcome": event.outcome.value if event.outcome else None,
        "sourceVersion": event.source_version,
        "targetVersion": event.target_version,
        "currentVersion": event.current_version,
        "detail": event.detail,
    }


def _text(item: Mapping[str, Any], name: str, where: str, *, required: bool) -> str | None:
    value = item.get(name)
    if value is None:
        if required:
            raise PushParseError(f"{where}: field {name!r} is missing")
        return None
    if not isinstance(value, str) or (required and not value):
        raise PushParseError(f"{where}: field {name!r} must be a non-empty string")
    return value


def _enum(item: Mapping[str, Any], name: str, where: str, cls: Any) -> Any:
    value = _text(item, name, where, required=True)
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise PushParseError(
            f"{where}: field {name!r} is {value!r}, not one of {allowed}"
        ) from None


def _event(item: Any, where: str, received_at: pendulum.DateTime) -> UpgradeEvent:
    if not isinstance(item, dict):
        raise PushParseError(f"{where}: an event must be a JSON object")
    kind = _enum(item, "type", where, UpgradeEventKind)
    at_text = _text(item, "at", where, required=True)
    try:
        at = pendulum.parse(at_text or "")
    except (ValueError, pendulum.parsing.exceptions.ParserError):
        raise PushParseError(f"{where}: field 'at' is not an ISO-8601 time: {at_text!r}") from None
    if not isinstance(at, pendulum.DateTime):
        raise PushParseError(f"{where}: field 'at' is not an ISO-8601 time: {at_text!r}")
    step = _enum(item, "step", where, UpgradeStep) if kind is UpgradeEventKind.STEP else None
    outcome = None
    if kind is UpgradeEventKind.RESULT:
        outcome = _enum(item, "outcome", where, DeviceOutcome)
        if not outcome.is_final:
            raise PushParseError(f"{where}: a result needs a final outcome, not {outcome.value!r}")
    return UpgradeEvent(
        kind=kind,
        package_kind=_enum(item, "packageKind", where, PackageKind),
        device_id=_text(item, "deviceId", where, required=True) or "",
        operation_id=_text(item, "taskId", where, required=False),
        received_at=received_at,
        source=f"{SOURCE}:{kind.value}",
        step=step,
        outcome=outcome,
        current_version=_text(item, "currentVersion", where, required=False),
        target_version=_text(item, "targetVersion", where, required=False),
        source_version=_text(item, "sourceVersion", where, required=False),
        detail=_text(item, "detail", where, required=False),
        reported_at=at.in_tz("UTC"),
    )


def parse_body(body: bytes, *, received_at: pendulum.DateTime) -> list[UpgradeEvent]:
    """The events of one pushed body; raises :class:`PushParseError` naming the field."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PushParseError(f"the body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PushParseError("the body must be a JSON object with an 'events' list")
    if data.get("source") != SOURCE:
        raise PushParseError(f"field 'source' must be {SOURCE!r}, not {data.get('source')!r}")
    items = data.get("events")
    if not isinstance(items, list):
        raise PushParseError("field 'events' must be a list")
    if len(items) > _MAX_EVENTS:
        raise PushParseError(f"field 'events' holds {len(items)} events, more than {_MAX_EVENTS}")
    return [_event(item, f"events[{i}]", received_at) for i, item in enumerate(items)]

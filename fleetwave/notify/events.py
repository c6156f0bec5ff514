"""Parsing of the four IoDM upgrade notifications into platform-neutral :class:`PushEvent` values.

Tolerant like the client: field names and status words are matched case-insensitively,
unknown fields are ignored, numbers where strings are documented are accepted. A body that
cannot be understood raises :class:`NotificationError` saying which field is wrong.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pendulum

from fleetwave.platforms.base import PackageKind, TaskStatus

__all__ = [
    "MAX_ID_LENGTH",
    "NOTIFY_TYPES",
    "EventKind",
    "NotificationError",
    "PushEvent",
    "UpgradeState",
    "parse_notification",
]

NOTIFY_TYPES: tuple[str, ...] = (
    "swUpgradeStateChangeNotify",
    "swUpgradeResultNotify",
    "fwUpgradeStateChangeNotify",
    "fwUpgradeResultNotify",
)
"""The notification types fleetwave subscribes to (API reference 1.6.2, 1.6.7.15-18)."""

MAX_ID_LENGTH = 128
"""Longest device/operation ID accepted (the store's column width)."""

_MAX_TEXT = 1000  # free-text fields are cut to this many characters


class NotificationError(ValueError):
    """A notification body that is not one of the four documented upgrade notifications."""


class EventKind(enum.StrEnum):
    """A progress step of a device's upgrade, or its final result."""

    STATE_CHANGE = "state_change"
    RESULT = "result"


class UpgradeState(enum.StrEnum):
    """The documented upgrade states (firmware ``step`` 1, 2, 3, 0)."""

    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    UPDATING = "updating"
    IDLE = "idle"


_FW_STEPS = {
    "0": UpgradeState.IDLE,
    "1": UpgradeState.DOWNLOADING,
    "2": UpgradeState.DOWNLOADED,
    "3": UpgradeState.UPDATING,
}
_RESULTS = {
    "success": TaskStatus.SUCCESS,
    "succeeded": TaskStatus.SUCCESS,
    "fail": TaskStatus.FAIL,
    "failed": TaskStatus.FAIL,
    "failure": TaskStatus.FAIL,
}
_TYPES = {t.lower(): t for t in NOTIFY_TYPES}


@dataclass(frozen=True, slots=True)
class PushEvent:
    """One device's upgrade progress or result, as a platform pushed it.

    ``state`` is set for a state change, ``result`` (SUCCESS or FAIL) for a result.
    ``reported_at`` is the platform's ``upgradeTime`` when it is a timestamp (firmware
    results send a duration there instead); ``received_at`` is when fleetwave got it.
    """

    notify_type: str
    package_kind: PackageKind
    kind: EventKind
    device_id: str
    operation_id: str | None
    received_at: pendulum.DateTime
    sub_operation_id: str | None = None
    state: UpgradeState | None = None
    result: TaskStatus | None = None
    current_version: str | None = None
    target_version: str | None = None
    source_version: str | None = None
    detail: str | None = None
    reported_at: pendulum.DateTime | None = None

    @property
    def is_result(self) -> bool:
        return self.kind is EventKind.RESULT


def _text(fields: Mapping[str, Any], name: str, *, limit: int = _MAX_TEXT) -> str | None:
    """A string field (numbers accepted); None when absent, null or blank."""
    value = fields.get(name.lower())
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        raise NotificationError(f"field {name!r} must be a string, not {type(value).__name__}")
    value = value.strip()
    return value[:limit] if value else None


def _ident(fields: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = _text(fields, name, limit=MAX_ID_LENGTH + 1)
    if value is None:
        if required:
            raise NotificationError(f"field {name!r} is missing or empty")
        return None
    if len(value) > MAX_ID_LENGTH:
        raise NotificationError(f"field {name!r} is longer than {MAX_ID_LENGTH} characters")
    if not value.isprintable():
        raise NotificationError(f"field {name!r} holds control characters")
    return value


def _reported_time(value: str | None) -> pendulum.DateTime | None:
    if value is None or len(value) != 16:  # yyyyMMddTHHmmssZ; durations and junk are skipped
        return None
    from fleetwave.platforms.iodm.timefmt import parse_iodm_time

    try:
        return parse_iodm_time(value)
    except (ValueError, OverflowError):
        return None


def _state(fields: Mapping[str, Any], prefix: str) -> UpgradeState:
    if prefix == "sw":
        word = _text(fields, "swUpgradeState")
        if word is None:
            raise NotificationError("field 'swUpgradeState' is missing or empty")
        try:
            return UpgradeState(word.lower())
        except ValueError:
            raise NotificationError(
                f"field 'swUpgradeState' is {word[:40]!r}, not one of "
                + ", ".join(s.value for s in UpgradeState)
            ) from None
    step, desc = _text(fields, "step"), _text(fields, "stepDesc")
    if step is not None and step in _FW_STEPS:
        return _FW_STEPS[step]
    if desc is not None:
        try:
            return UpgradeState(desc.lower())
        except ValueError:
            pass
    raise NotificationError(
        f"fields 'step' ({(step or '')[:10]!r}) and 'stepDesc' ({(desc or '')[:40]!r}) name no "
        "firmware upgrade state: step must be 0, 1, 2 or 3"
    )


def _result(fields: Mapping[str, Any], name: str) -> TaskStatus:
    word = _text(fields, name)
    if word is None:
        raise NotificationError(f"field {name!r} is missing or empty")
    status = _RESULTS.get(word.lower())
    if status is None:
        raise NotificationError(f"field {name!r} is {word[:40]!r}, not SUCCESS or FAIL")
    return status


def parse_notification(body: Any, *, received_at: pendulum.DateTime) -> PushEvent:
    """Turn one decoded JSON body into a :class:`PushEvent`; :class:`NotificationError` if bad."""
    if not isinstance(body, Mapping):
        raise NotificationError(f"the body must be a JSON object, not {type(body).__name__}")
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(key, str):
            fields.setdefault(key.lower(), value)
    raw_type = _text(fields, "notifyType", limit=100)
    if raw_type is None:
        raise NotificationError("field 'notifyType' is missing or empty")
    notify_type = _TYPES.get(raw_type.lower())
    if notify_type is None:
        raise NotificationError(
            f"notifyType {raw_type[:60]!r} is not one of {', '.join(NOTIFY_TYPES)}"
        )
    prefix = notify_type[:2]
    package_kind = PackageKind.FIRMWARE if prefix == "fw" else PackageKind.SOFTWARE
    device_id = _ident(fields, "deviceId", required=True)
    assert device_id is not None
    common: dict[str, Any] = {
        "notify_type": notify_type,
        "package_kind": package_kind,
        "device_id": device_id,
        "operation_id": _ident(fields, "operationId", required=False),
        "sub_operation_id": _ident(fields, "subOperationId", required=False),
        "received_at": received_at,
    }
    if notify_type.endswith("StateChangeNotify"):
        return PushEvent(kind=EventKind.STATE_CHANGE, state=_state(fields, prefix), **common)
    if prefix == "sw":
        result = _result(fields, "swUpgradeResult")
        details = [_text(fields, n) for n in ("description", "resultDesc", "errorCode")]
    else:
        result = _result(fields, "status")
        details = [_text(fields, "statusDesc")]
    detail = None
    if result is TaskStatus.FAIL:
        detail = next((d for d in details if d), None)
    return PushEvent(
        kind=EventKind.RESULT,
        result=result,
        current_version=_text(fields, "curVersion", limit=100),
        target_version=_text(fields, "targetVersion", limit=100),
        source_version=_text(fields, "sourceVersion", limit=100),
        detail=detail,
        reported_at=_reported_time(_text(fields, "upgradeTime", limit=40)),
        **common,
    )

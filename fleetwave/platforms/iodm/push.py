"""Parsing of the four IoDM upgrade notifications into neutral :class:`UpgradeEvent` values.

Tolerant like the client: field names and status words are matched case-insensitively,
unknown fields are ignored, numbers where strings are documented are accepted. A body that
cannot be understood raises :class:`PushParseError` saying which field is wrong.
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

from .timefmt import parse_iodm_time

__all__ = [
    "MAX_ID_LENGTH",
    "NOTIFY_TYPES",
    "NOTIFY_TYPES_OF",
    "parse_notification",
    "parse_push_body",
]

NOTIFY_TYPES: tuple[str, ...] = (
    "swUpgradeStateChangeNotify",
    "swUpgradeResultNotify",
    "fwUpgradeStateChangeNotify",
    "fwUpgradeResultNotify",
)
"""The notification types fleetwave subscribes to (API reference 1.6.2, 1.6.7.15-18)."""

NOTIFY_TYPES_OF: Mapping[PackageKind, tuple[str, str]] = {
    PackageKind.FIRMWARE: ("fwUpgradeStateChangeNotify", "fwUpgradeResultNotify"),
    PackageKind.SOFTWARE: ("swUpgradeStateChangeNotify", "swUpgradeResultNotify"),
}
"""The state-change and result notification of each package kind."""

MAX_ID_LENGTH = 128
"""Longest device/operation ID accepted (the store's column width)."""

_MAX_TEXT = 1000  # free-text fields are cut to this many characters

# the documented upgrade states (software swUpgradeState words, firmware step 1, 2, 3, 0)
_STATE_WORDS = {
    "downloading": UpgradeStep.DOWNLOADING,
    "downloaded": UpgradeStep.DOWNLOADED,
    "updating": UpgradeStep.INSTALLING,
    "idle": UpgradeStep.IDLE,
}
_FW_STEPS = {
    "0": UpgradeStep.IDLE,
    "1": UpgradeStep.DOWNLOADING,
    "2": UpgradeStep.DOWNLOADED,
    "3": UpgradeStep.INSTALLING,
}
_RESULTS = {
    "success": DeviceOutcome.SUCCEEDED,
    "succeeded": DeviceOutcome.SUCCEEDED,
    "fail": DeviceOutcome.FAILED,
    "failed": DeviceOutcome.FAILED,
    "failure": DeviceOutcome.FAILED,
}
_TYPES = {t.lower(): t for t in NOTIFY_TYPES}


def _text(fields: Mapping[str, Any], name: str, *, limit: int = _MAX_TEXT) -> str | None:
    """A string field (numbers accepted); None when absent, null or blank."""
    value = fields.get(name.lower())
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        raise PushParseError(f"field {name!r} must be a string, not {type(value).__name__}")
    value = value.strip()
    return value[:limit] if value else None


def _ident(fields: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = _text(fields, name, limit=MAX_ID_LENGTH + 1)
    if value is None:
        if required:
            raise PushParseError(f"field {name!r} is missing or empty")
        return None
    if len(value) > MAX_ID_LENGTH:
        raise PushParseError(f"field {name!r} is longer than {MAX_ID_LENGTH} characters")
    if not value.isprintable():
        raise PushParseError(f"field {name!r} holds control characters")
    return value


def _reported_time(value: str | None) -> pendulum.DateTime | None:
    if value is None or len(value) != 16:  # yyyyMMddTHHmmssZ; durations and junk are skipped
        return None
    try:
        return parse_iodm_time(value)
    except (ValueError, OverflowError):
        return None


def _step(fields: Mapping[str, Any], prefix: str) -> UpgradeStep:
    if prefix == "sw":
        word = _text(fields, "swUpgradeState")
        if word is None:
            raise PushParseError("field 'swUpgradeState' is missing or empty")
        step = _STATE_WORDS.get(word.lower())
        if step is None:
            raise PushParseError(
                f"field 'swUpgradeState' is {word[:40]!r}, not one of " + ", ".join(_STATE_WORDS)
            )
        return step
    number, desc = _text(fields, "step"), _text(fields, "stepDesc")
    if number is not None and number in _FW_STEPS:
        return _FW_STEPS[number]
    if desc is not None and desc.lower() in _STATE_WORDS:
        return _STATE_WORDS[desc.lower()]
    raise PushParseError(
        f"fields 'step' ({(number or '')[:10]!r}) and 'stepDesc' ({(desc or '')[:40]!r}) name "
        "no firmware upgrade state: step must be 0, 1, 2 or 3"
    )


def _result(fields: Mapping[str, Any], name: str) -> DeviceOutcome:
    word = _text(fields, name)
    if word is None:
        raise PushParseError(f"field {name!r} is missing or empty")
    outcome = _RESULTS.get(word.lower())
    if outcome is None:
        raise PushParseError(f"field {name!r} is {word[:40]!r}, not SUCCESS or FAIL")
    return outcome


def parse_notification(body: Any, *, received_at: pendulum.DateTime) -> UpgradeEvent:
    """Turn one decoded JSON body into an :class:`UpgradeEvent`; :class:`PushParseError` if bad."""
    if not isinstance(body, Mapping):
        raise PushParseError(f"the body must be a JSON object, not {type(body).__name__}")
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(key, str):
            fields.setdefault(key.lower(), value)
    raw_type = _text(fields, "notifyType", limit=100)
    if raw_type is None:
        raise PushParseError("field 'notifyType' is missing or empty")
    notify_type = _TYPES.get(raw_type.lower())
    if notify_type is None:
        raise PushParseError(
            f"notifyType {raw_type[:60]!r} is not one of {', '.join(NOTIFY_TYPES)}"
        )
    prefix = notify_type[:2]
    device_id = _ident(fields, "deviceId", required=True)
    assert device_id is not None
    common: dict[str, Any] = {
        "source": notify_type,
        "package_kind": PackageKind.FIRMWARE if prefix == "fw" else PackageKind.SOFTWARE,
        "device_id": device_id,
        "operation_id": _ident(fields, "operationId", required=False),
        "received_at": received_at,
    }
    _ident(fields, "subOperationId", required=False)  # checked, not kept
    if notify_type.endswith("StateChangeNotify"):
        return UpgradeEvent(kind=UpgradeEventKind.STEP, step=_step(fields, prefix), **common)
    if prefix == "sw":
        outcome = _result(fields, "swUpgradeResult")
        details = [_text(fields, n) for n in ("description", "resultDesc", "errorCode")]
    else:
        outcome = _result(fields, "status")
        details = [_text(fields, "statusDesc")]
    detail = None
    if outcome is DeviceOutcome.FAILED:
        detail = next((d for d in details if d), None)
    return UpgradeEvent(
        kind=UpgradeEventKind.RESULT,
        outcome=outcome,
        current_version=_text(fields, "curVersion", limit=100),
        target_version=_text(fields, "targetVersion", limit=100),
        source_version=_text(fields, "sourceVersion", limit=100),
        detail=detail,
        reported_at=_reported_time(_text(fields, "upgradeTime", limit=40)),
        **common,
    )


def parse_push_body(
    body: bytes, *, received_at: pendulum.DateTime | None = None
) -> list[UpgradeEvent]:
    """The events of one pushed HTTP body (IoDM posts one notification per request);
    ``received_at`` defaults to now (a receiver stamps its own arrival time anyway)."""
    if received_at is None:
        received_at = pendulum.now("UTC")
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise PushParseError(f"the body is not JSON: {type(exc).__name__}") from None
    return [parse_notification(decoded, received_at=received_at)]

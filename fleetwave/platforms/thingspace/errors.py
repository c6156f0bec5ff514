"""ThingSpace error answers mapped onto the platform-neutral error tree, with what to check.

ThingSpace answers a refused request with HTTP 400 ``{"errorCode", "errorMessage"}``
(codes shaped ``Service.CATEGORY.Code``, e.g. ``FOTA.REQUEST.InvalidDate``) and the API
gateway refuses a bad or expired OAuth token with HTTP 401
``{"fault": {"code": "900901", ...}}``. The M2M session's refusals come as 400/401 with a
``SessionToken`` code. Messages never contain a key, secret, password or token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fleetwave.platforms.errors import (
    AuthFailed,
    DeviceNotFound,
    DevicesRefused,
    InvalidPolicy,
    NotFound,
    PackageNotFound,
    PlatformError,
    PlatformUnavailable,
    RequestRejected,
    TargetMismatch,
    TaskNotFound,
    Throttled,
    TooManyTargets,
)

__all__ = [
    "GATEWAY_TOKEN_CODES",
    "LoginRefused",
    "MalformedResponse",
    "SessionExpired",
    "ThingSpaceConnectionError",
    "ThingSpaceServerError",
    "TokenExpired",
    "error_fields",
    "error_for",
    "is_session_refusal",
    "is_token_refusal",
    "refused_devices",
]

# the API gateway's fault codes for a missing, invalid or expired OAuth token
GATEWAY_TOKEN_CODES = frozenset({"900901", "900902", "900900"})


class ThingSpaceServerError(PlatformUnavailable):
    """ThingSpace kept answering with HTTP 5xx."""


class ThingSpaceConnectionError(PlatformUnavailable):
    """ThingSpace could not be reached, or the connection broke, on every attempt."""


class MalformedResponse(PlatformUnavailable):
    """A successful answer whose body is not the JSON the API documents."""


class LoginRefused(AuthFailed):
    """The OAuth token or M2M session login was refused; it is not tried again by itself
    (five failed M2M logins lock the account)."""


class TokenExpired(AuthFailed):
    """The gateway refused the OAuth token (fault 900901) even after a fresh one."""


class SessionExpired(AuthFailed):
    """The M2M session token was refused even after a fresh session login."""


def error_fields(body: Any) -> tuple[str | None, str | None]:
    """(code, message) of an error body: ``errorCode``/``errorMessage`` or a gateway fault."""
    if not isinstance(body, dict):
        return None, None
    fault = body.get("fault")
    if isinstance(fault, dict):
        code, message = fault.get("code"), fault.get("message") or fault.get("description")
    else:
        code = body.get("errorCode", body.get("error"))
        message = body.get("errorMessage", body.get("error_description", body.get("message")))
    return (None if code is None else str(code)), (None if message is None else str(message)[:300])


def is_token_refusal(status: int, code: str | None) -> bool:
    """The gateway refused the OAuth bearer token (a fresh token may be tried once)."""
    return status == 401 and (code in GATEWAY_TOKEN_CODES or code is None)


def is_session_refusal(status: int, code: str | None, message: str | None) -> bool:
    """The M2M session token was refused (a fresh session may be tried once)."""
    text = f"{code or ''} {message or ''}".lower()
    return status in (400, 401) and ("sessiontoken" in text or "session token" in text)


_HINT_REQUEST = "check the request against the ThingSpace Software Management API reference"


_POLICY_HINT = (
    "check the window: dates not in the past, startDate <= endDate, hour windows "
    "startTime 0-23 < endTime 1-24"
)
_MISMATCH_HINT = (
    "all devices of one upgrade must share make, model and current firmware, and the "
    "package must fit them"
)
# the last part of a ``Service.CATEGORY.Code`` code -> (class, what to check)
_CODES: dict[str, tuple[type[PlatformError], str]] = {
    "UpgradeId": (TaskNotFound, "check the upgrade id (a cancelled upgrade is gone)"),
    "CampaignId": (TaskNotFound, "check the campaign id"),
    "FirmwareName": (PackageNotFound, "check the firmware name against GET /firmware"),
    "FirmwareTo": (PackageNotFound, "firmwareTo must be the firmware image's toVersion"),
    "SoftwareName": (PackageNotFound, "check the software name against GET /software"),
    "FileName": (PackageNotFound, "check the file name against GET /files"),
    "FileVersion": (PackageNotFound, "check the file version against GET /files"),
    "DeviceId": (DeviceNotFound, "check the IMEIs: each must be a device of the account, once"),
    "StartDate": (InvalidPolicy, _POLICY_HINT),
    "EndDate": (InvalidPolicy, _POLICY_HINT),
    "DownloadAfterDate": (InvalidPolicy, _POLICY_HINT),
    "InstallAfterDate": (InvalidPolicy, _POLICY_HINT),
    "TimeWindow": (InvalidPolicy, _POLICY_HINT),
    "DeviceMismatch": (TargetMismatch, _MISMATCH_HINT),
    "DeviceNotEligible": (TargetMismatch, "the devices must be FOTA eligible"),
    "LicenseNotAssigned": (
        RequestRejected,
        "the account's subscription needs a Software Management license on each device",
    ),
    "DeviceInActiveUpgrade": (
        RequestRejected,
        "a device is already in an unfinished upgrade of this kind; wait for it or cancel it",
    ),
    "RequestStarted": (RequestRejected, "it has started: it can no longer be changed"),
    "UserLocked": (
        AuthFailed,
        "the M2M user is locked after five failed logins; have Verizon unlock it, then "
        "check THINGSPACE_USERNAME and THINGSPACE_PASSWORD",
    ),
    "InvalidCredentials": (
        AuthFailed,
        "check THINGSPACE_USERNAME and THINGSPACE_PASSWORD (five failures lock the user)",
    ),
}


def _rule(
    status: int | None, code: str | None, message: str | None
) -> tuple[type[PlatformError], str]:
    known = _CODES.get((code or "").rsplit(".", 1)[-1])
    if known is not None and status is not None and status < 500:
        return known
    if (code or "").rsplit(".", 1)[-1] == "DeviceList":
        if "over" in (message or "") or "too many" in (message or "").lower():
            return TooManyTargets, "send fewer devices per upgrade"
        return RequestRejected, "the device list must be a non-empty list of IMEIs"
    text = f"{code or ''} {message or ''}".lower()
    if status == 429 or "throttl" in text or "ratelimit" in text or "rate limit" in text:
        return Throttled, (
            "the contract's call budget was exceeded: lower THINGSPACE_RATE_LIMIT to the "
            "budget Verizon gave the account"
        )
    if status in (401, 403):
        return AuthFailed, (
            "check THINGSPACE_KEY/THINGSPACE_SECRET (OAuth) and THINGSPACE_USERNAME/"
            "THINGSPACE_PASSWORD (M2M user), and that the account may use Software Management"
        )
    if "upgrade" in text and ("notfound" in text or "not found" in text or "invalidid" in text):
        return TaskNotFound, "check the upgrade or campaign id"
    if "campaign" in text and ("notfound" in text or "not found" in text):
        return TaskNotFound, "check the campaign id"
    if ("firmware" in text or "software" in text or "file" in text) and (
        "notfound" in text or "not found" in text or "invalidname" in text
    ):
        return PackageNotFound, "check the package name against GET /firmware, /software or /files"
    if "device" in text and ("notfound" in text or "not found" in text):
        return DeviceNotFound, "check the IMEI and that the device belongs to the account"
    if "date" in text or "window" in text or "time" in text:
        return InvalidPolicy, (
            "check the window: dates in the future, startDate <= endDate, hour windows "
            "startTime 0-23 < endTime 1-24"
        )
    if "make" in text or "model" in text or "firmwarefrom" in text or "mismatch" in text:
        return TargetMismatch, (
            "all devices of one upgrade must share make, model and current firmware, "
            "and the package must fit them"
        )
    if "too many" in text or "toomany" in text or "maxdevice" in text:
        return TooManyTargets, "send fewer devices per upgrade"
    if "license" in text:
        return RequestRejected, "assign Software Management licenses to the devices first"
    if status == 404:
        return NotFound, "check the id in the request"
    if status is not None and 400 <= status < 500:
        return RequestRejected, _HINT_REQUEST
    return ThingSpaceServerError, "ThingSpace is failing; retry later or contact Verizon support"


def error_for(
    *,
    status_code: int | None,
    code: str | None,
    description: str | None,
    method: str,
    path: str,
) -> PlatformError:
    """The most specific error for a ThingSpace error answer (code and message, then status)."""
    cls, hint = _rule(status_code, code, description)
    what = (cls.__doc__ or cls.__name__).strip().splitlines()[0].rstrip(".")
    return cls(
        f"ThingSpace refused the call: {what}; {hint}",
        status_code=status_code,
        code=code,
        description=description,
        method=method,
        path=path,
    )


#: Codes by which ThingSpace refuses a whole upgrade because of one device it names.
_PER_DEVICE = {"DeviceNotEligible", "DeviceMismatch", "LicenseNotAssigned"}
_IMEI = re.compile(r"\d{8,20}")


def refused_devices(exc: PlatformError, sent: Sequence[str]) -> DevicesRefused | None:
    """The refusal of an upgrade naming ``sent`` narrowed to the one device its message
    names (not eligible, other make/model/firmware, no license), or None when it names
    none of them or more than one (then the whole request is at fault)."""
    code = (exc.code or "").rsplit(".", 1)[-1]
    if code not in _PER_DEVICE or not exc.description:
        return None
    listed = set(sent)
    named = {m for m in _IMEI.findall(exc.description) if m in listed}
    if len(named) != 1:
        return None
    (imei,) = named
    return DevicesRefused(
        f"ThingSpace refused the upgrade because of device {imei} ({code}): {exc.description}",
        device_ids=(imei,),
        status_code=exc.status_code,
        code=exc.code,
        description=exc.description,
        method=exc.method,
        path=exc.path,
    )

"""IoDM error codes mapped onto the platform-neutral error tree, with what to check for each.

Every IoDM class subclasses a neutral one, so the engine catches the neutral classes::

    PlatformError
    ├── OutcomeUnknown              create-task POST sent, answer lost: reconcile, never replay
    ├── PlatformUnavailable
    │   ├── IoDMServerError         HTTP 5xx (50252 ...) after retries
    │   ├── IoDMConnectionError     connect/read/write failures, timeouts after retries
    │   └── MalformedResponse       a 2xx whose body is not the JSON the API documents
    ├── Throttled
    │   └── IoDMThrottled           403 1010009 "app throttle exceed" after backing off
    ├── AuthFailed
    │   ├── BadCredentials          401 100208: appId or secret wrong
    │   ├── TokenInvalid            403 1010005 even after one re-login
    │   └── AppNotAuthorized        100203 / 100217 / 100449 / 100229
    ├── NotFound
    │   ├── PackageNotFound         123002 (device or package file not found)
    │   ├── TaskNotFound            123009
    │   ├── DeviceNotFound          100403 / 100418
    │   └── GroupNotFound           100603
    └── RequestRejected
        ├── InvalidRequest          120015 / 123029 / 100405 / 100216 / 102202 / 50400 ...
        ├── InvalidTargets          123019-123023: groups need type/model/manufacturer ...
        ├── TargetMismatch          123016: package does not fit the devices
        ├── InvalidPolicy           123025 / 123026 / 123028 / 123032 / 123033 / 123034
        └── TooManyTargets          123024: more than 256 devices or groups

An unknown code falls back by HTTP status (401/403 auth, 404 not found, other 4xx
rejected, 5xx unavailable). Messages never contain a secret or an access token.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetwave.platforms.errors import (
    AuthFailed,
    DeviceNotFound,
    GroupNotFound,
    InvalidPolicy,
    NotFound,
    OutcomeUnknown,
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
    "THROTTLE_CODE",
    "TOKEN_INVALID_CODE",
    "AppNotAuthorized",
    "BadCredentials",
    "InvalidRequest",
    "InvalidTargets",
    "IoDMConnectionError",
    "IoDMServerError",
    "IoDMThrottled",
    "MalformedResponse",
    "OutcomeUnknown",
    "TokenInvalid",
    "error_for",
]

THROTTLE_CODE = "1010009"
TOKEN_INVALID_CODE = "1010005"


class IoDMServerError(PlatformUnavailable):
    """The platform kept answering with HTTP 5xx."""


class IoDMConnectionError(PlatformUnavailable):
    """The platform could not be reached, or the connection broke, on every attempt."""


class MalformedResponse(PlatformUnavailable):
    """A successful answer whose body is not the JSON the API documents."""


class IoDMThrottled(Throttled):
    """403 1010009: the app's call budget (100 a minute by default) was exceeded."""


class BadCredentials(AuthFailed):
    """401 100208: the appId or secret is wrong."""


class TokenInvalid(AuthFailed):
    """403 1010005: the access token was refused even after a fresh login."""


class AppNotAuthorized(AuthFailed):
    """The application does not exist, is not authorised, or is frozen."""


class InvalidRequest(RequestRejected):
    """A parameter was missing or out of range (page size, IDs, formats)."""


class InvalidTargets(RequestRejected):
    """The task's targets are incomplete or contradictory (groups vs devices)."""


@dataclass(frozen=True, slots=True)
class _Rule:
    cls: type[PlatformError]
    hint: str


_BAD_INPUT = "check the request parameters against the IoDM API reference"
_POLICY = "check the task policy: executeType, start/end time (UTC, future, >5 min apart), retries"

_CODES: dict[str, _Rule] = {
    "100208": _Rule(
        BadCredentials,
        "check IODM_APP_ID and IODM_SECRET (no extra characters) and IODM_BASE_URL",
    ),
    TOKEN_INVALID_CODE: _Rule(
        TokenInvalid,
        "another login with the same appId may have replaced this token; "
        "run one fleetwave process per appId or share the token",
    ),
    THROTTLE_CODE: _Rule(
        IoDMThrottled,
        "lower IODM_RATE_LIMIT to the platform's budget or ask the platform operator "
        "to raise the app's flow control threshold",
    ),
    "100203": _Rule(AppNotAuthorized, "check IODM_APP_ID: the application does not exist"),
    "100217": _Rule(AppNotAuthorized, "the application has not been authorised for this data"),
    "100449": _Rule(AppNotAuthorized, "the user of this appId lacks permission for this API"),
    "100229": _Rule(AppNotAuthorized, "the app_key header was missing or unreadable"),
    "123002": _Rule(
        PackageNotFound,
        "check the fileId (fleetwave lists packages with GET /category) and the device IDs",
    ),
    "123009": _Rule(TaskNotFound, "check the operationId"),
    "100403": _Rule(DeviceNotFound, "check the deviceId"),
    "100418": _Rule(DeviceNotFound, "check that the deviceId belongs to this appId"),
    "100603": _Rule(GroupNotFound, "check the device group ID"),
    "123016": _Rule(
        TargetMismatch,
        "the package's deviceType, model and manufacturerName must match every target device",
    ),
    "123019": _Rule(InvalidTargets, "group targets need manufacturerName"),
    "123020": _Rule(InvalidTargets, "group targets need deviceType"),
    "123021": _Rule(InvalidTargets, "group targets need model"),
    "123022": _Rule(InvalidTargets, "give either device groups or devices"),
    "123023": _Rule(InvalidTargets, "give device groups or devices, not both"),
    "123024": _Rule(TooManyTargets, "one task takes at most 256 devices or 256 groups"),
    "123025": _Rule(InvalidPolicy, _POLICY),
    "123026": _Rule(InvalidPolicy, _POLICY),
    "123028": _Rule(InvalidPolicy, "retryTimes must be between 1 and 5"),
    "123032": _Rule(InvalidPolicy, "the window's start must not be after its end"),
    "123033": _Rule(InvalidPolicy, "the window's start must not be in the past"),
    "123034": _Rule(InvalidPolicy, "the window must be longer than 5 minutes"),
    "120015": _Rule(InvalidRequest, _BAD_INPUT),
    "123029": _Rule(InvalidRequest, "pageNo or pageSize is beyond the endpoint's limit"),
    "100216": _Rule(InvalidRequest, _BAD_INPUT),
    "100218": _Rule(InvalidRequest, "give gatewayId or pageNo"),
    "100222": _Rule(InvalidRequest, "check the callback URL"),
    "100228": _Rule(InvalidRequest, _BAD_INPUT),
    "100405": _Rule(InvalidRequest, _BAD_INPUT),
    "102202": _Rule(InvalidRequest, "a mandatory parameter was empty"),
    "50400": _Rule(InvalidRequest, _BAD_INPUT),
    "50252": _Rule(
        IoDMServerError,
        "the platform had an internal error; retry later or contact its operator",
    ),
}


def _by_status(status: int | None) -> _Rule:
    if status in (401, 403):
        return _Rule(AuthFailed, "check IODM_APP_ID, IODM_SECRET and the app's permissions")
    if status == 404:
        return _Rule(NotFound, "check the ID in the request")
    if status is not None and 400 <= status < 500:
        return _Rule(RequestRejected, _BAD_INPUT)
    return _Rule(IoDMServerError, "the platform is failing; retry later or contact its operator")


def error_for(
    *,
    status_code: int | None,
    code: str | None,
    description: str | None,
    method: str,
    path: str,
) -> PlatformError:
    """Build the most specific error for an IoDM error answer (code first, then status)."""
    rule = _CODES.get(code or "") or _by_status(status_code)
    what = (rule.cls.__doc__ or rule.cls.__name__).strip().splitlines()[0].rstrip(".")
    return rule.cls(
        f"IoDM refused the call: {what}; {rule.hint}",
        status_code=status_code,
        code=code,
        description=description,
        method=method,
        path=path,
    )

"""Platform-neutral errors the engine handles; adapters map their wire errors onto these.

    PlatformError
    ├── OutcomeUnknown        a create-task call may or may not have taken effect: reconcile
    ├── PlatformUnavailable   connection errors, timeouts, 5xx after retries
    ├── Throttled             the platform's rate limit was hit after retries
    ├── AuthFailed            credentials refused (bad appId/secret, token not accepted)
    ├── NotFound
    │   ├── PackageNotFound
    │   ├── TaskNotFound
    │   ├── DeviceNotFound
    │   └── GroupNotFound
    └── RequestRejected       the platform refused the request as invalid
        ├── TargetMismatch    package does not fit the devices' type/model/manufacturer
        ├── InvalidPolicy     bad execute type, window or retry settings
        └── TooManyTargets    more devices or groups than one task allows

Adapters may subclass these further; each instance carries what the platform said.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AuthFailed",
    "DeviceNotFound",
    "DevicesRefused",
    "GroupNotFound",
    "InvalidPolicy",
    "NotFound",
    "OutcomeUnknown",
    "PackageNotFound",
    "PlatformError",
    "PlatformUnavailable",
    "RequestRejected",
    "TargetMismatch",
    "TaskNotFound",
    "Throttled",
    "TooManyTargets",
    "task_targets",
]


class PlatformError(Exception):
    """Any error talking to a platform. Never carries a secret or an access token."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        description: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.description = description
        self.method = method
        self.path = path

    def __str__(self) -> str:
        where = f" [{self.method} {self.path}]" if self.method and self.path else ""
        said = f" (HTTP {self.status_code}" if self.status_code is not None else ""
        if said:
            said += f", code {self.code}" if self.code else ""
            said += f": {self.description}" if self.description else ""
            said += ")"
        return f"{self.message}{said}{where}"


class OutcomeUnknown(PlatformError):
    """A call that changes the platform may or may not have taken effect; never replay it."""


class PlatformUnavailable(PlatformError):
    """The platform could not be reached or kept failing with server errors."""


class Throttled(PlatformError):
    """The platform's per-app rate limit refused calls even after backing off."""


class AuthFailed(PlatformError):
    """The platform refused the credentials or the access token."""


class NotFound(PlatformError):
    """The named object does not exist on the platform."""


class PackageNotFound(NotFound):
    """No version package with that fileId."""


class TaskNotFound(NotFound):
    """No upgrade task with that operationId."""


class DeviceNotFound(NotFound):
    """No device with that deviceId."""


class GroupNotFound(NotFound):
    """No device group with that ID or name."""


class RequestRejected(PlatformError):
    """The platform rejected the request as invalid."""


class TargetMismatch(RequestRejected):
    """The package does not fit the devices' type, model or manufacturer."""


class DevicesRefused(TargetMismatch):
    """The platform refused a task because of the named devices only (not eligible, on
    another version, unlicensed); the same task without them may be sent."""

    def __init__(self, message: str, *, device_ids: tuple[str, ...], **kw: Any) -> None:
        super().__init__(message, **kw)
        self.device_ids = device_ids


class InvalidPolicy(RequestRejected):
    """The task's policy (execute type, window, retries) was refused."""


class TooManyTargets(RequestRejected):
    """More devices or groups than one task allows."""


def task_targets(device_ids: Sequence[str], *, limit: int, taker: str) -> list[str]:
    """The devices of one upgrade task, refused before any call when there are none, more
    than ``limit`` (``taker`` names who sets it, e.g. "IoDM takes") or one named twice."""
    devices = list(device_ids)
    if not devices:
        raise RequestRejected("an upgrade task needs at least one device")
    if len(devices) > limit:
        raise TooManyTargets(
            f"{len(devices)} devices for one task; {taker} at most {limit}: split them into chunks"
        )
    if len(set(devices)) != len(devices):
        raise RequestRejected("the device list of a task names a device twice")
    return devices

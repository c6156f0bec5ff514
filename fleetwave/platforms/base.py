"""The Platform protocol: everything the engine may ask of a device-management platform.

Platform-neutral value types live here too, so the engine never sees a platform's wire
format. Adapters (``fleetwave.platforms.iodm``) translate to and from it; every call they
make passes one rate limiter per platform application.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pendulum

__all__ = [
    "DeviceGroup",
    "DeviceInfo",
    "ExecuteType",
    "PackageInfo",
    "PackageKind",
    "Platform",
    "PlatformTask",
    "SubtaskResult",
    "TaskPolicy",
    "TaskStats",
    "TaskStatus",
]


class PackageKind(enum.StrEnum):
    """What a campaign upgrades; IoDM's fileType and operation type derive from it."""

    FIRMWARE = "firmware"
    SOFTWARE = "software"


class ExecuteType(enum.StrEnum):
    """When the platform runs a task: at once, when each device comes online, or in a window."""

    NOW = "now"
    DEVICE_ONLINE = "device_online"
    CUSTOM = "custom"


class TaskStatus(enum.StrEnum):
    """Status of a platform task or of one device's subtask (lower case, normalised)."""

    WAIT = "wait"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAIL = "fail"
    STOP = "stop"
    TIMEOUT = "timeout"

    @property
    def is_final(self) -> bool:
        return self not in (TaskStatus.WAIT, TaskStatus.PROCESSING)


@dataclass(frozen=True, slots=True)
class PackageInfo:
    """A version package uploaded to the platform."""

    file_id: str
    name: str
    version: str
    kind: PackageKind
    device_type: str
    model: str
    manufacturer_name: str
    protocol_type: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceGroup:
    """A device group; ``device_count`` is None when the platform did not say."""

    group_id: str
    name: str
    device_count: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One device as the inventory reports it."""

    device_id: str
    device_type: str | None
    model: str | None
    manufacturer_name: str | None
    fw_version: str | None
    sw_version: str | None
    status: str | None  # ONLINE | OFFLINE | INACTIVE | ABNORMAL

    def version(self, kind: PackageKind) -> str | None:
        return self.fw_version if kind is PackageKind.FIRMWARE else self.sw_version


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    """How the platform executes a task. ``retry_times`` None means no platform retries."""

    execute_type: ExecuteType = ExecuteType.NOW
    start_time: pendulum.DateTime | None = None
    end_time: pendulum.DateTime | None = None
    retry_times: int | None = None


@dataclass(frozen=True, slots=True)
class TaskStats:
    """Per-status device counts of a task (IoDM ``staResult``)."""

    total: int = 0
    wait: int = 0
    processing: int = 0
    success: int = 0
    fail: int = 0
    stop: int = 0
    timeout: int = 0

    @property
    def finished(self) -> int:
        return self.success + self.fail + self.stop + self.timeout


@dataclass(frozen=True, slots=True)
class PlatformTask:
    """An upgrade task (IoDM operation) with its statistics."""

    operation_id: str
    kind: PackageKind
    status: TaskStatus
    device_ids: tuple[str, ...] = ()
    stats: TaskStats = field(default_factory=TaskStats)
    created_at: pendulum.DateTime | None = None
    started_at: pendulum.DateTime | None = None
    stopped_at: pendulum.DateTime | None = None
    file_version: str | None = None
    policy: TaskPolicy | None = None


@dataclass(frozen=True, slots=True)
class SubtaskResult:
    """One device's part of a task."""

    device_id: str
    status: TaskStatus
    detail: str | None = None
    started_at: pendulum.DateTime | None = None
    stopped_at: pendulum.DateTime | None = None
    source_version: str | None = None
    target_version: str | None = None
    current_version: str | None = None


@runtime_checkable
class Platform(Protocol):
    """What the engine may ask of any platform. All listings are async iterators over pages.

    ``connection_key`` names the platform connection stably and without secrets (IoDM:
    ``iodm:HOST:PORT/APP_ID``): operationIds are unique per connection, not globally, so the
    store keys every task by (connection_key, operation_id).
    """

    name: str
    max_devices_per_task: int
    connection_key: str

    async def get_package(self, file_id: str) -> PackageInfo: ...

    def find_packages(
        self,
        *,
        kind: PackageKind | None = None,
        version: str | None = None,
        device_type: str | None = None,
        model: str | None = None,
        manufacturer_name: str | None = None,
    ) -> AsyncIterator[PackageInfo]: ...

    def list_groups(self, *, name: str | None = None) -> AsyncIterator[DeviceGroup]: ...

    def group_members(self, group_id: str) -> AsyncIterator[str]: ...

    def devices(
        self, *, device_type: str | None = None, status: str | None = None
    ) -> AsyncIterator[DeviceInfo]: ...

    async def get_device(self, device_id: str) -> DeviceInfo: ...

    async def create_upgrade_task(
        self,
        *,
        kind: PackageKind,
        file_id: str,
        device_ids: Sequence[str],
        policy: TaskPolicy,
    ) -> str:
        """Create one task and return its operationId; raises OutcomeUnknown if unsure."""
        ...

    async def get_task(self, operation_id: str) -> PlatformTask: ...

    def list_tasks(
        self,
        *,
        kind: PackageKind | None = None,
        status: TaskStatus | None = None,
        device_id: str | None = None,
    ) -> AsyncIterator[PlatformTask]: ...

    def subtasks(
        self, operation_id: str, *, status: TaskStatus | None = None
    ) -> AsyncIterator[SubtaskResult]: ...

    async def subscribe(self, notify_type: str, callback_url: str) -> None: ...

    def call_counts(self) -> Mapping[str, int]:
        """Calls made so far, per endpoint label (e.g. ``GET /operations``)."""
        ...

    async def aclose(self) -> None: ...

"""The Platform protocol: everything the engine may ask of a device-management platform.

Platform-neutral value types live here too, in fleetwave's own words (capabilities, task
states, device outcomes, upgrade events), so the engine never sees a platform's wire
format or vocabulary. Each adapter (``fleetwave.platforms.<name>``) maps its platform's
statuses, page sizes, error codes and notification bodies onto these; every call it makes
passes one rate limiter per platform application.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import pendulum

__all__ = [
    "MEMO_MAX_LENGTH",
    "AsyncClosing",
    "Capabilities",
    "DeviceGroup",
    "DeviceInfo",
    "DeviceOutcome",
    "ExecuteType",
    "OutcomeCounts",
    "PackageInfo",
    "PackageKind",
    "Platform",
    "PlatformTask",
    "PolicyChecker",
    "PushParseError",
    "SubtaskResult",
    "TaskPolicy",
    "TaskProgress",
    "TaskRef",
    "TaskState",
    "UpgradeEvent",
    "UpgradeEventKind",
    "UpgradeStep",
    "WindowDescriber",
]


class PackageKind(enum.StrEnum):
    """What a campaign upgrades; each platform's package and task types derive from it."""

    FIRMWARE = "firmware"
    SOFTWARE = "software"


class ExecuteType(enum.StrEnum):
    """When the platform runs a task: at once, when each device comes online, or in a window."""

    NOW = "now"
    DEVICE_ONLINE = "device_online"
    CUSTOM = "custom"


class DeviceOutcome(enum.StrEnum):
    """Where one device's part of an upgrade task stands (each adapter maps its statuses)."""

    PENDING = "pending"
    """Accepted by the platform, not started on the device yet."""
    RUNNING = "running"
    """Being downloaded or installed."""
    SUCCEEDED = "succeeded"
    """The device runs the target version."""
    FAILED = "failed"
    """The upgrade ended without success (download, install or verification failed)."""
    CANCELLED = "cancelled"
    """Stopped before it finished (cancelled by an operator, the platform or the user)."""
    TIMED_OUT = "timed_out"
    """No final answer before the platform's own deadline (or the engine's task timeout)."""

    @property
    def is_final(self) -> bool:
        return self not in (DeviceOutcome.PENDING, DeviceOutcome.RUNNING)


class TaskState(enum.StrEnum):
    """Where a platform task stands as a whole."""

    PENDING = "pending"
    """Accepted; no device has started (e.g. waiting for its window or for approval)."""
    RUNNING = "running"
    """At least one device has started and not every device is final."""
    FINISHED = "finished"
    """Every device has a final outcome, or the platform ended the task (cancelled, failed)."""

    @property
    def is_final(self) -> bool:
        return self is TaskState.FINISHED


@dataclass(frozen=True, slots=True)
class OutcomeCounts:
    """Devices of a task per :class:`DeviceOutcome` (what a progress read reports)."""

    total: int = 0
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled + self.timed_out

    def as_dict(self) -> dict[str, int]:
        """Counts keyed by :class:`DeviceOutcome` value, plus ``total``."""
        return {
            "total": self.total,
            DeviceOutcome.PENDING.value: self.pending,
            DeviceOutcome.RUNNING.value: self.running,
            DeviceOutcome.SUCCEEDED.value: self.succeeded,
            DeviceOutcome.FAILED.value: self.failed,
            DeviceOutcome.CANCELLED.value: self.cancelled,
            DeviceOutcome.TIMED_OUT.value: self.timed_out,
        }


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a platform can do and what it costs; the engine, spec checks and planner read
    these instead of any platform's constants."""

    platform: str
    """The platform type, as in the spec's ``platform: {type: ...}``."""
    max_devices_per_task: int
    """The largest task (devices per create call)."""
    package_kinds: frozenset[PackageKind]
    """Which kinds of package the platform upgrades."""
    execute_types: frozenset[ExecuteType]
    """Which execution policies a task may carry."""
    min_window: timedelta | None
    """The shortest custom execution window accepted; None when tasks take no window."""
    window_granularity: timedelta
    """Window bounds are sent rounded to this (start up, end down)."""
    page_sizes: Mapping[str, int]
    """Items per list call: ``tasks``, ``task_devices``, ``group_members``, ``devices``."""
    rate_limit_per_minute: int | None
    """Calls a minute this connection may spend (None: no limit known)."""
    can_cancel_tasks: bool
    """Whether :meth:`Platform.cancel_task` can stop a task that has not started."""
    has_groups: bool
    """Whether targets may name device groups."""
    push: bool
    """Whether the platform can post upgrade events to a callback URL."""
    install_windows: bool = False
    """Whether a task may carry install hours apart from its (download) window."""


MEMO_MAX_LENGTH = 24
"""The longest :attr:`TaskProgress.memo` the engine stores (the store's column width)."""


@dataclass(frozen=True, slots=True)
class TaskRef:
    """A task the engine tracks, as it asks for progress.

    ``memo`` is what the adapter said about the task at its last progress read
    (:attr:`TaskProgress.memo`), stored by the engine and handed back unread, so an
    adapter can choose the cheapest read for the next round (e.g. which lists to page);
    at most :data:`MEMO_MAX_LENGTH` characters. ``file_id`` is the task's package, so an
    adapter can narrow its lists to that package's devices.
    """

    operation_id: str
    kind: PackageKind
    submitted_at: pendulum.DateTime | None = None
    memo: str | None = None
    file_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskProgress:
    """One task's progress as a progress read saw it."""

    operation_id: str
    state: TaskState
    counts: OutcomeCounts = field(default_factory=OutcomeCounts)
    memo: str | None = None


class UpgradeEventKind(enum.StrEnum):
    """A device's upgrade moved a step, or ended."""

    STEP = "step"
    RESULT = "result"


class UpgradeStep(enum.StrEnum):
    """The steps a device's upgrade reports on its way (push events)."""

    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    INSTALLING = "installing"
    IDLE = "idle"


@dataclass(frozen=True, slots=True)
class UpgradeEvent:
    """One device's upgrade step or result, as a platform pushed it, in fleetwave's words.

    ``outcome`` is set (final) for a result, ``step`` for a step. ``source`` is the
    platform's own name of the notification, kept for the event log only.
    """

    kind: UpgradeEventKind
    package_kind: PackageKind
    device_id: str
    operation_id: str | None
    received_at: pendulum.DateTime
    source: str = ""
    step: UpgradeStep | None = None
    outcome: DeviceOutcome | None = None
    current_version: str | None = None
    target_version: str | None = None
    source_version: str | None = None
    detail: str | None = None
    reported_at: pendulum.DateTime | None = None

    @property
    def is_result(self) -> bool:
        return self.kind is UpgradeEventKind.RESULT


class PushParseError(ValueError):
    """A pushed body the platform's parser cannot understand (the message names the field)."""


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
    from_version: str | None = None
    """The only version a device may run to take this package (None: any version). A
    platform that refuses a task when one device runs another version sets it."""


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
    ineligible: str | None = None
    """Why the platform will refuse any update task naming this device (None: it will
    not), in words an operator can act on; the engine skips such a device."""

    def version(self, kind: PackageKind) -> str | None:
        return self.fw_version if kind is PackageKind.FIRMWARE else self.sw_version


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    """How the platform executes a task. ``retry_times`` None means no platform retries."""

    execute_type: ExecuteType = ExecuteType.NOW
    start_time: pendulum.DateTime | None = None
    end_time: pendulum.DateTime | None = None
    retry_times: int | None = None
    install_start: pendulum.DateTime | None = None
    """With a custom window on a platform with ``install_windows``: when devices may begin
    to install (the window itself is then the download window)."""
    install_end: pendulum.DateTime | None = None


@dataclass(frozen=True, slots=True)
class PlatformTask:
    """An upgrade task with its per-outcome device counts."""

    operation_id: str
    kind: PackageKind
    state: TaskState
    device_ids: tuple[str, ...] = ()
    counts: OutcomeCounts = field(default_factory=OutcomeCounts)
    created_at: pendulum.DateTime | None = None
    started_at: pendulum.DateTime | None = None
    stopped_at: pendulum.DateTime | None = None
    file_version: str | None = None
    policy: TaskPolicy | None = None


@dataclass(frozen=True, slots=True)
class SubtaskResult:
    """One device's part of a task."""

    device_id: str
    outcome: DeviceOutcome
    detail: str | None = None
    started_at: pendulum.DateTime | None = None
    stopped_at: pendulum.DateTime | None = None
    source_version: str | None = None
    target_version: str | None = None
    current_version: str | None = None


@runtime_checkable
class Platform(Protocol):
    """What the engine may ask of any platform. All listings are async iterators over pages.

    ``connection_key`` names the platform connection stably and without secrets (e.g.
    ``TYPE:HOST:PORT/APP_ID``): operationIds are unique per connection, not globally, so the
    store keys every task by (connection_key, operation_id).
    """

    name: str
    connection_key: str

    @property
    def capabilities(self) -> Capabilities:
        """What this platform can do and what it costs (constant for a connection)."""
        ...

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
        state: TaskState | None = None,
        device_id: str | None = None,
    ) -> AsyncIterator[PlatformTask]:
        """Tasks on the platform (reconciliation, the live-task check), optionally filtered."""
        ...

    # ---- progress, results and push, in fleetwave's words (issue 11)

    async def task_progress(self, tasks: Sequence[TaskRef]) -> Mapping[str, TaskProgress]:
        """Progress of these tasks, read the cheapest way the adapter knows (list pages,
        single reads, what push said). A task absent from the answer has finished (or
        vanished): the engine then reads its device results once."""
        ...

    def task_results(self, operation_id: str) -> AsyncIterator[SubtaskResult]:
        """Every device's outcome in a task (all pages)."""
        ...

    async def subscribe_upgrade_events(self, kind: PackageKind, callback_url: str) -> None:
        """Ask the platform to post upgrade steps and results of ``kind`` to the URL."""
        ...

    def parse_push(self, body: bytes) -> list[UpgradeEvent]:
        """The upgrade events in one pushed body; raises :class:`PushParseError`."""
        ...

    async def cancel_task(self, operation_id: str) -> bool:
        """Cancel a task none of whose devices has started; True when the platform
        cancelled it, False when it cannot (already started or ended, or the platform has
        no cancel call: :attr:`Capabilities.can_cancel_tasks` is False). Safe to repeat."""
        ...

    def call_counts(self) -> Mapping[str, int]:
        """Calls made so far, per endpoint label (e.g. ``GET /operations``)."""
        ...

    async def aclose(self) -> None: ...


class AsyncClosing:
    """``async with`` for an object that owns connections: entering gives the object, leaving
    calls its :meth:`aclose` (which the subclass defines)."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@runtime_checkable
class PolicyChecker(Protocol):
    """A platform that refuses some task policies its capabilities cannot express (a
    window it schedules only by whole days, say) says so before any call."""

    def policy_problem(self, kind: PackageKind, policy: TaskPolicy) -> str | None:
        """Why a task of ``kind`` with ``policy`` sent now would be refused, or None."""
        ...


@runtime_checkable
class WindowDescriber(Protocol):
    """A platform that cannot keep a window to the instant says how it would send one."""

    def describe_window(
        self,
        kind: PackageKind,
        start: pendulum.DateTime,
        end: pendulum.DateTime,
        install: tuple[pendulum.DateTime, pendulum.DateTime] | None = None,
    ) -> str:
        """How a task of ``kind`` with the window ``start..end`` (and the install hours
        ``install``, if any) would be sent (the platform's own terms, rounded as it rounds
        them), or why it cannot be."""
        ...

"""``MemoryPlatform``: a working platform held in memory, on the engine's clock.

Tasks are real: each device's part moves pending -> running -> final on the clock
(``fleetwave.clock.ManualClock`` in tests), honours the task's window, waits while the
device is offline, and fails or times out in a configurable share. The platform is
lazy: every call first *settles* all live tasks up to the clock's now (in time order,
recording the instant of each transition) and then posts the push events that became
due to the subscribed callback URLs over real HTTP. :meth:`MemoryPlatform.pump` does the
same without a call, for a test that moved the clock.

Faults (:class:`MemoryFaults`) stand in for a flaky network: a create call that commits
and then raises :class:`OutcomeUnknown`, one that raises before it commits, and calls
that fail with :class:`PlatformUnavailable`.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pendulum

from fleetwave.clock import Clock, RealClock
from fleetwave.platforms.base import (
    AsyncClosing,
    Capabilities,
    DeviceGroup,
    DeviceInfo,
    DeviceOutcome,
    ExecuteType,
    OutcomeCounts,
    PackageInfo,
    PackageKind,
    PlatformTask,
    SubtaskResult,
    TaskPolicy,
    TaskProgress,
    TaskRef,
    TaskState,
    UpgradeEvent,
    UpgradeEventKind,
    UpgradeStep,
)
from fleetwave.platforms.errors import (
    DeviceNotFound,
    GroupNotFound,
    InvalidPolicy,
    OutcomeUnknown,
    PackageNotFound,
    PlatformUnavailable,
    RequestRejected,
    TargetMismatch,
    TaskNotFound,
    task_targets,
)

from .fleet import Fleet, MemoryConfig, MemoryDevice
from .push import SOURCE, event_json, parse_body

__all__ = ["CAPABILITIES", "MemoryFaults", "MemoryPlatform", "MemoryTask"]

log = logging.getLogger(__name__)

PAGE_SIZES = {"tasks": 50, "task_devices": 50, "group_members": 200, "devices": 100}

CAPABILITIES = Capabilities(
    platform="memory",
    max_devices_per_task=100,
    package_kinds=frozenset(PackageKind),
    execute_types=frozenset(ExecuteType),
    min_window=timedelta(minutes=10),
    window_granularity=timedelta(minutes=1),
    page_sizes=PAGE_SIZES,
    rate_limit_per_minute=None,
    can_cancel_tasks=True,
    has_groups=True,
    push=True,
)

_FAIL_DETAILS = (
    "download failed: connection reset by device",
    "package verification failed on device",
    "device rolled back after a failed install",
)


@dataclass
class MemoryFaults:
    """Faults to inject, each a count of calls it applies to (0: off)."""

    create_outcome_unknown: int = 0
    """Create calls that commit the task, then raise OutcomeUnknown (a reply lost)."""
    create_lost: int = 0
    """Create calls that raise OutcomeUnknown without committing (a request lost)."""
    unavailable: int = 0
    """Calls of any kind that raise PlatformUnavailable without effect."""


@dataclass
class _Part:
    """One device's part of a task, with the draws that decide its course."""

    device: MemoryDevice
    start_delay_s: float
    run_s: float
    outcome: DeviceOutcome  # the final outcome it will reach once it runs
    detail: str
    source_version: str
    state: DeviceOutcome = DeviceOutcome.PENDING
    eligible_at: pendulum.DateTime | None = None
    started_at: pendulum.DateTime | None = None
    stopped_at: pendulum.DateTime | None = None
    final_detail: str | None = None


@dataclass
class MemoryTask:
    """One upgrade task held by the platform."""

    operation_id: str
    kind: PackageKind
    package: PackageInfo
    policy: TaskPolicy
    created_at: pendulum.DateTime
    parts: list[_Part]
    settled_at: pendulum.DateTime
    state: TaskState = TaskState.PENDING
    external: bool = False
    """Put there by :meth:`MemoryPlatform.add_task` (another tool's task): it keeps its state."""
    reported_version: str | None = None
    """The version the task list shows (an external task may show none)."""

    @property
    def device_ids(self) -> tuple[str, ...]:
        return tuple(p.device.device_id for p in self.parts)

    def counts(self) -> OutcomeCounts:
        c = Counter(p.state for p in self.parts)
        return OutcomeCounts(
            total=len(self.parts),
            pending=c[DeviceOutcome.PENDING],
            running=c[DeviceOutcome.RUNNING],
            succeeded=c[DeviceOutcome.SUCCEEDED],
            failed=c[DeviceOutcome.FAILED],
            cancelled=c[DeviceOutcome.CANCELLED],
            timed_out=c[DeviceOutcome.TIMED_OUT],
        )

    def window(self) -> tuple[pendulum.DateTime | None, pendulum.DateTime | None]:
        if self.policy.execute_type is ExecuteType.CUSTOM:
            return self.policy.start_time, self.policy.end_time
        return None, None


def _state_of(parts: Iterable[_Part]) -> TaskState:
    states = [p.state for p in parts]
    if all(s.is_final for s in states):
        return TaskState.FINISHED
    if all(s is DeviceOutcome.PENDING for s in states):
        return TaskState.PENDING
    return TaskState.RUNNING


class MemoryPlatform(AsyncClosing):
    """A platform in memory: a seeded fleet, tasks on a clock, faults, push over HTTP."""

    name = "memory"

    def __init__(
        self,
        config: MemoryConfig | None = None,
        *,
        clock: Clock | None = None,
        capabilities: Capabilities = CAPABILITIES,
        transport: httpx.AsyncBaseTransport | None = None,
        fleet: Fleet | None = None,
    ) -> None:
        """``fleet``: a hand-built fleet (see :class:`Fleet`'s ``add_*``) instead of the one
        ``config`` draws."""
        self.config = config or MemoryConfig()
        self.config.validate()
        self.clock: Clock = clock or RealClock()
        self._capabilities = capabilities
        self.connection_key = self.config.connection_key
        self.fleet = fleet if fleet is not None else Fleet.generate(self.config)
        self.tasks: dict[str, MemoryTask] = {}
        self.faults = MemoryFaults()
        self.calls: Counter[str] = Counter()
        self.subscriptions: dict[PackageKind, set[str]] = {}
        self.pushed = 0
        self.push_failed = 0
        self._outbox: list[UpgradeEvent] = []
        self._seq = 0
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return (
            f"MemoryPlatform(devices={self.config.devices}, seed={self.config.seed}, "
            f"tasks={len(self.tasks)})"
        )

    # -- capabilities --------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    # -- bookkeeping ---------------------------------------------------------------------

    async def _call(self, label: str) -> None:
        """Count one call, apply the unavailable fault, settle tasks and deliver push."""
        self.calls[label] += 1
        if self.faults.unavailable > 0:
            self.faults.unavailable -= 1
            raise PlatformUnavailable(f"the in-memory platform is unavailable ({label})")
        await self.pump()

    def call_counts(self) -> Mapping[str, int]:
        return dict(self.calls)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- packages ------------------------------------------------------------------------

    async def get_package(self, file_id: str) -> PackageInfo:
        await self._call("get_package")
        return self._package(file_id)

    def _package(self, file_id: str) -> PackageInfo:
        for p in self.fleet.packages:
            if p.file_id == file_id:
                return p
        raise PackageNotFound(f"no package {file_id!r} on the in-memory platform")

    async def find_packages(
        self,
        *,
        kind: PackageKind | None = None,
        version: str | None = None,
        device_type: str | None = None,
        model: str | None = None,
        manufacturer_name: str | None = None,
    ) -> AsyncIterator[PackageInfo]:
        await self._call("find_packages")
        for p in list(self.fleet.packages):
            if (
                (kind is None or p.kind is kind)
                and (version is None or p.version == version)
                and (device_type is None or p.device_type == device_type)
                and (model is None or p.model == model)
                and (manufacturer_name is None or p.manufacturer_name == manufacturer_name)
            ):
                yield p

    # -- groups and devices --------------------------------------------------------------

    async def list_groups(self, *, name: str | None = None) -> AsyncIterator[DeviceGroup]:
        await self._call("list_groups")
        for g in list(self.fleet.groups):
            if name is None or g.name == name:
                yield g

    async def group_members(self, group_id: str) -> AsyncIterator[str]:
        if group_id not in self.fleet.members:
            await self._call("group_members")
            raise GroupNotFound(f"no device group {group_id!r} on the in-memory platform")
        ids = list(self.fleet.members[group_id])
        for page in _pages(ids, PAGE_SIZES["group_members"]):
            await self._call("group_members")
            for device_id in page:
                yield device_id

    def _device_info(self, d: MemoryDevice) -> DeviceInfo:
        return DeviceInfo(
            device_id=d.device_id,
            device_type=d.model.device_type,
            model=d.model.model,
            manufacturer_name=d.model.manufacturer,
            fw_version=d.fw_version,
            sw_version=d.sw_version,
            status="ONLINE" if d.online else "OFFLINE",
        )

    async def devices(
        self, *, device_type: str | None = None, status: str | None = None
    ) -> AsyncIterator[DeviceInfo]:
        wanted = status.upper() if status else None
        matching = [
            d
            for d in self.fleet.devices
            if (device_type is None or d.model.device_type == device_type)
            and (wanted is None or ("ONLINE" if d.online else "OFFLINE") == wanted)
        ]
        for page in _pages(matching, PAGE_SIZES["devices"]):
            await self._call("devices")
            for d in page:
                yield self._device_info(d)

    async def get_device(self, device_id: str) -> DeviceInfo:
        await self._call("get_device")
        d = self.fleet.by_id.get(device_id)
        if d is None:
            raise DeviceNotFound(f"no device {device_id!r} on the in-memory platform")
        return self._device_info(d)

    # -- tasks ---------------------------------------------------------------------------

    def _check_policy(self, policy: TaskPolicy) -> None:
        caps = self._capabilities
        if policy.execute_type not in caps.execute_types:
            raise InvalidPolicy(f"execute type {policy.execute_type.value} is not supported")
        if policy.execute_type is ExecuteType.CUSTOM:
            if policy.start_time is None or policy.end_time is None:
                raise InvalidPolicy("a custom execution window needs both start_time and end_time")
            assert caps.min_window is not None
            if policy.end_time - policy.start_time < caps.min_window:
                raise InvalidPolicy(
                    f"the window {policy.start_time} .. {policy.end_time} is shorter than "
                    f"{int(caps.min_window.total_seconds() // 60)} minutes"
                )
        elif policy.start_time is not None or policy.end_time is not None:
            raise InvalidPolicy(
                f"start_time/end_time need execute_type custom, not {policy.execute_type.value}"
            )
        if policy.retry_times is not None and not 1 <= policy.retry_times <= 5:
            raise InvalidPolicy(
                f"platform retries must be between 1 and 5, not {policy.retry_times}"
            )

    def _plan(
        self, seq: int, device: MemoryDevice, policy: TaskPolicy
    ) -> tuple[float, float, DeviceOutcome, str]:
        """Draw one device's course in a task: (start delay, run time, outcome, detail)."""
        cfg = self.config
        rng = random.Random(f"{cfg.seed}/{seq}/{device.index}")
        delay = rng.uniform(*cfg.start_delay_s)
        fail = (
            device.model.failure_rate if device.model.failure_rate is not None else cfg.failure_rate
        )
        run = 0.0
        for attempt in range((policy.retry_times or 0) + 1):
            if attempt:
                run += 60.0  # the platform's pause before a retry
            u = rng.random()
            if u < cfg.timeout_rate:
                return (
                    delay,
                    run + cfg.device_timeout_s,
                    DeviceOutcome.TIMED_OUT,
                    ("the device stopped answering during the upgrade"),
                )
            duration = rng.uniform(*cfg.run_s)
            if u < cfg.timeout_rate + fail:
                run += duration * rng.uniform(0.1, 1.0)
                continue
            return delay, run + duration, DeviceOutcome.SUCCEEDED, "upgrade succeeded"
        return delay, run, DeviceOutcome.FAILED, rng.choice(_FAIL_DETAILS)

    async def create_upgrade_task(
        self,
        *,
        kind: PackageKind,
        file_id: str,
        device_ids: Sequence[str],
        policy: TaskPolicy,
    ) -> str:
        await self._call("create_upgrade_task")
        if self.faults.create_lost > 0:
            self.faults.create_lost -= 1
            raise OutcomeUnknown("the create call was lost on the way (in-memory fault)")
        devices = task_targets(
            device_ids,
            limit=self._capabilities.max_devices_per_task,
            taker="the in-memory platform takes",
        )
        self._check_policy(policy)
        package = self._package(file_id)
        if package.kind is not kind:
            raise RequestRejected(f"package {file_id} is {package.kind.value}, not {kind.value}")
        targets: list[MemoryDevice] = []
        for device_id in devices:
            d = self.fleet.by_id.get(device_id)
            if d is None:
                raise DeviceNotFound(f"no device {device_id!r} on the in-memory platform")
            if (d.model.device_type, d.model.model, d.model.manufacturer) != (
                package.device_type,
                package.model,
                package.manufacturer_name,
            ):
                raise TargetMismatch(
                    f"package {file_id} ({package.model}) does not fit device {device_id} "
                    f"({d.model.model})"
                )
            targets.append(d)
        now = self.clock.now()
        self._seq += 1
        seq = self._seq
        operation_id = f"mem-{self.config.seed:x}-{seq:06d}"
        parts = []
        for d in targets:
            delay, run, outcome, detail = self._plan(seq, d, policy)
            parts.append(_Part(d, delay, run, outcome, detail, d.version(kind)))
        self.tasks[operation_id] = MemoryTask(
            operation_id=operation_id,
            kind=kind,
            package=package,
            policy=policy,
            created_at=now,
            parts=parts,
            settled_at=now,
        )
        log.info("created %s task %s for %d devices", kind.value, operation_id, len(parts))
        if self.faults.create_outcome_unknown > 0:
            self.faults.create_outcome_unknown -= 1
            raise OutcomeUnknown(
                f"the reply to a create call was lost; task {operation_id} exists "
                "(in-memory fault): reconcile through the task list"
            )
        return operation_id

    def _platform_task(self, t: MemoryTask) -> PlatformTask:
        starts = [p.started_at for p in t.parts if p.started_at is not None]
        stops = [p.stopped_at for p in t.parts if p.stopped_at is not None]
        return PlatformTask(
            operation_id=t.operation_id,
            kind=t.kind,
            state=t.state,
            counts=t.counts(),
            device_ids=t.device_ids,
            created_at=t.created_at,
            started_at=min(starts) if starts else None,
            stopped_at=max(stops) if t.state is TaskState.FINISHED and stops else None,
            file_version=t.reported_version if t.external else t.package.version,
            policy=t.policy,
        )

    async def get_task(self, operation_id: str) -> PlatformTask:
        await self._call("get_task")
        t = self.tasks.get(operation_id)
        if t is None:
            raise TaskNotFound(f"no task {operation_id!r} on the in-memory platform")
        return self._platform_task(t)

    async def list_tasks(
        self,
        *,
        kind: PackageKind | None = None,
        state: TaskState | None = None,
        device_id: str | None = None,
    ) -> AsyncIterator[PlatformTask]:
        """Tasks by kind, state and target device."""
        await self.pump()
        matching = [
            t
            for t in self.tasks.values()
            if (kind is None or t.kind is kind)
            and (state is None or t.state is state)
            and (device_id is None or device_id in t.device_ids)
        ]
        for page in _pages(matching, PAGE_SIZES["tasks"]):
            await self._call("list_tasks")
            for t in page:
                yield self._platform_task(t)

    async def task_progress(self, tasks: Sequence[TaskRef]) -> Mapping[str, TaskProgress]:
        """Every known task of ``tasks``, final ones included; unknown IDs are absent.

        One call per page of the task list (the in-memory platform always lists)."""
        known = [self.tasks[r.operation_id] for r in tasks if r.operation_id in self.tasks]
        out: dict[str, TaskProgress] = {}
        for page in _pages(known, PAGE_SIZES["tasks"]):
            await self._call("task_progress")
            for t in page:
                out[t.operation_id] = TaskProgress(t.operation_id, t.state, t.counts())
        return out

    def _result(self, t: MemoryTask, p: _Part) -> SubtaskResult:
        detail = p.final_detail or ("running" if p.state is DeviceOutcome.RUNNING else "waiting")
        return SubtaskResult(
            device_id=p.device.device_id,
            outcome=p.state,
            detail=detail,
            started_at=p.started_at,
            stopped_at=p.stopped_at,
            source_version=p.source_version,
            target_version=t.package.version,
            current_version=p.device.version(t.kind),
        )

    async def task_results(self, operation_id: str) -> AsyncIterator[SubtaskResult]:
        """Every device's outcome in the task, a page of ``task_devices`` a call."""
        t = self.tasks.get(operation_id)
        if t is None:
            await self._call("task_results")
            raise TaskNotFound(f"no task {operation_id!r} on the in-memory platform")
        for page in _pages(t.parts, PAGE_SIZES["task_devices"]):
            await self._call("task_results")
            for p in page:
                yield self._result(t, p)

    # -- push ----------------------------------------------------------------------------

    async def subscribe_upgrade_events(self, kind: PackageKind, callback_url: str) -> None:
        await self._call("subscribe_upgrade_events")
        if not callback_url.startswith(("http://", "https://")):
            scheme = callback_url.partition(":")[0] if ":" in callback_url else "no scheme"
            raise RequestRejected(f"the callback URL must start with http(s)://, not {scheme!r}")
        self.subscriptions.setdefault(kind, set()).add(callback_url)

    def parse_push(self, body: bytes) -> list[UpgradeEvent]:
        return parse_body(body, received_at=self.clock.now())

    # -- time ----------------------------------------------------------------------------

    async def cancel_task(self, operation_id: str) -> bool:
        """Cancel a task none of whose devices has started (every device CANCELLED)."""
        await self._call("cancel_task")
        t = self.tasks.get(operation_id)
        if t is None:
            raise TaskNotFound(f"no task {operation_id!r} on the in-memory platform")
        now = self.clock.now()
        self._settle(now)
        if t.state is not TaskState.PENDING or any(
            p.state is not DeviceOutcome.PENDING for p in t.parts
        ):
            return False
        for p in t.parts:
            self._finish(t, p, now, DeviceOutcome.CANCELLED, "cancelled before it started")
        t.state = TaskState.FINISHED
        return True

    async def pump(self) -> int:
        """Settle every live task up to now and post the due push events; returns how many
        events were posted."""
        self._settle(self.clock.now())
        return await self._deliver()

    def _emit(self, t: MemoryTask, p: _Part, at: pendulum.DateTime, kind: UpgradeEventKind) -> None:
        if not self.subscriptions.get(t.kind):
            return
        self._outbox.append(
            UpgradeEvent(
                kind=kind,
                package_kind=t.kind,
                device_id=p.device.device_id,
                operation_id=t.operation_id,
                received_at=at,
                source=f"{SOURCE}:{kind.value}",
                step=UpgradeStep.DOWNLOADING if kind is UpgradeEventKind.STEP else None,
                outcome=p.state if kind is UpgradeEventKind.RESULT else None,
                current_version=p.device.version(t.kind),
                target_version=t.package.version,
                source_version=p.source_version,
                detail=p.final_detail,
                reported_at=at,
            )
        )

    def _settle(self, now: pendulum.DateTime) -> None:
        """Move every live task's devices up to ``now`` (each transition at its instant)."""
        for t in self.tasks.values():
            if t.external or t.state is TaskState.FINISHED or now <= t.settled_at:
                continue
            w_start, w_end = t.window()
            for p in t.parts:
                self._settle_part(t, p, now, w_start, w_end)
            t.settled_at = now
            t.state = _state_of(t.parts)

    def _settle_part(
        self,
        t: MemoryTask,
        p: _Part,
        now: pendulum.DateTime,
        w_start: pendulum.DateTime | None,
        w_end: pendulum.DateTime | None,
    ) -> None:
        if p.state is DeviceOutcome.PENDING and p.eligible_at is None and p.device.online:
            # online throughout (t.settled_at, now]: a change of online state settles first
            p.eligible_at = max(x for x in (t.settled_at, t.created_at, w_start) if x is not None)
        if p.state is DeviceOutcome.PENDING and p.eligible_at is not None:
            start = p.eligible_at.add(microseconds=int(p.start_delay_s * 1e6))
            if start <= now and (w_end is None or start < w_end):
                p.state = DeviceOutcome.RUNNING
                p.started_at = start
                self._emit(t, p, start, UpgradeEventKind.STEP)
        if p.state is DeviceOutcome.RUNNING:
            assert p.started_at is not None
            end = p.started_at.add(microseconds=int(p.run_s * 1e6))
            if w_end is not None and w_end < end:
                end = w_end
                outcome, detail = DeviceOutcome.TIMED_OUT, "the task window ended"
            else:
                outcome, detail = p.outcome, p.detail
            if end <= now:
                self._finish(t, p, end, outcome, detail)
        if p.state is DeviceOutcome.PENDING and w_end is not None and w_end <= now:
            reason = "the task window ended" if p.device.online else "device did not come online"
            self._finish(t, p, w_end, DeviceOutcome.TIMED_OUT, reason)

    def _finish(
        self, t: MemoryTask, p: _Part, at: pendulum.DateTime, outcome: DeviceOutcome, detail: str
    ) -> None:
        p.state = outcome
        p.stopped_at = at
        p.final_detail = detail
        if outcome is DeviceOutcome.SUCCEEDED:
            p.device.set_version(t.kind, t.package.version)
        self._emit(t, p, at, UpgradeEventKind.RESULT)

    async def _deliver(self) -> int:
        if not self._outbox:
            return 0
        events = sorted(self._outbox, key=lambda e: e.reported_at or e.received_at)
        self._outbox = []
        sent = 0
        for kind in PackageKind:
            mine = [event_json(e) for e in events if e.package_kind is kind]
            if not mine:
                continue
            body = {"source": SOURCE, "events": mine}
            for url in sorted(self.subscriptions.get(kind, ())):
                if self._http is None:
                    self._http = httpx.AsyncClient(timeout=10.0, transport=self._transport)
                try:
                    resp = await self._http.post(url, json=body)
                    resp.raise_for_status()
                except httpx.HTTPError as exc:
                    self.push_failed += len(mine)
                    log.warning("push of %d events failed: %s", len(mine), type(exc).__name__)
                    continue
                self.pushed += len(mine)
                sent += len(mine)
        return sent

    # -- the test driver's levers --------------------------------------------------------

    async def set_online(self, device_ids: Iterable[str], online: bool) -> None:
        """Take devices on or off line from now (live tasks are settled first)."""
        await self.pump()
        for device_id in device_ids:
            self.fleet.by_id[device_id].online = online

    def add_task(
        self,
        operation_id: str,
        device_ids: Iterable[str],
        *,
        version: str | None,
        kind: PackageKind = PackageKind.FIRMWARE,
        state: TaskState = TaskState.RUNNING,
    ) -> None:
        """Put a task on the platform as another tool (or an earlier run) would have: it stays
        in ``state``, shows ``version`` in the task list, and may name any device IDs."""
        now = self.clock.now()
        package = PackageInfo(
            file_id=f"external-{operation_id}",
            name=f"external-{operation_id}",
            version=version or "",
            kind=kind,
            device_type="",
            model="",
            manufacturer_name="",
        )
        outcome = {
            TaskState.PENDING: DeviceOutcome.PENDING,
            TaskState.RUNNING: DeviceOutcome.RUNNING,
        }.get(state, DeviceOutcome.SUCCEEDED)
        parts = []
        for device_id in device_ids:
            d = self.fleet.by_id.get(device_id) or Fleet().add_device(device_id)
            parts.append(_Part(d, 0.0, 0.0, outcome, "", d.version(kind), state=outcome))
        self.tasks[operation_id] = MemoryTask(
            operation_id=operation_id,
            kind=kind,
            package=package,
            policy=TaskPolicy(),
            created_at=now,
            parts=parts,
            settled_at=now,
            state=state,
            external=True,
            reported_version=version,
        )

    def tasks_per_device(self, file_ids: Iterable[str] | None = None) -> Counter[str]:
        """The platform's own count of tasks per device (of these packages, or all)."""
        wanted = set(file_ids) if file_ids is not None else None
        out: Counter[str] = Counter()
        for t in self.tasks.values():
            if wanted is None or t.package.file_id in wanted:
                out.update(t.device_ids)
        return out


def _pages(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """``items`` in pages of ``size``; an empty list is one empty page (still one call)."""
    if not items:
        yield items
        return
    for start in range(0, len(items), size):
        yield items[start : start + size]

"""In-memory fakes for tests: a small Platform implementation with a fleet and call counts.

``FakePlatform`` implements the read side of :class:`fleetwave.platforms.base.Platform`
faithfully (packages, groups, members, inventory with filters) and records every call;
its write side records tasks so a test can assert that nothing was written.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import pendulum

from fleetwave.platforms.base import (
    Capabilities,
    DeviceGroup,
    DeviceInfo,
    DeviceOutcome,
    ExecuteType,
    PackageInfo,
    PackageKind,
    PlatformTask,
    PushParseError,
    SubtaskResult,
    TaskPolicy,
    TaskProgress,
    TaskRef,
    TaskState,
    UpgradeEvent,
    UpgradeEventKind,
)
from fleetwave.platforms.errors import NotFound, PackageNotFound, TaskNotFound
from fleetwave.spec.model import CampaignSpec

__all__ = ["FakePlatform", "make_device", "make_package", "make_spec", "spec_dict"]


def make_package(
    file_id: str,
    version: str,
    *,
    kind: PackageKind = PackageKind.FIRMWARE,
    device_type: str = "WaterMeter",
    model: str = "WM-200",
    manufacturer_name: str = "Aquaflow",
) -> PackageInfo:
    return PackageInfo(
        file_id=file_id,
        name=f"{model}-{kind.value[:2]}-{version}",
        version=version,
        kind=kind,
        device_type=device_type,
        model=model,
        manufacturer_name=manufacturer_name,
    )


def make_device(
    device_id: str,
    *,
    device_type: str = "WaterMeter",
    model: str = "WM-200",
    manufacturer_name: str = "Aquaflow",
    fw_version: str = "1.4.2",
    sw_version: str = "2.0.1",
    status: str = "ONLINE",
) -> DeviceInfo:
    return DeviceInfo(
        device_id, device_type, model, manufacturer_name, fw_version, sw_version, status
    )


@dataclass
class FakePlatform:
    """A platform held in dictionaries; every call is counted in ``calls``."""

    packages: list[PackageInfo] = field(default_factory=list)
    groups: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # id -> (name, ids)
    inventory: list[DeviceInfo] = field(default_factory=list)
    name: str = "fake"
    max_devices_per_task: int = 256
    connection_key: str = "fake:local"
    subscriptions: list[tuple[PackageKind, str]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    tasks: list[tuple[str, tuple[str, ...], TaskPolicy]] = field(default_factory=list)
    task_list: dict[str, PlatformTask] = field(default_factory=dict)  # operationId -> task
    task_page: int = 100  # tasks per list page (IoDM: 100)

    @property
    def capabilities(self) -> Capabilities:
        """IoDM-like limits (the largest task and the task page follow the fields above)."""
        return Capabilities(
            platform=self.name,
            max_devices_per_task=self.max_devices_per_task,
            package_kinds=frozenset(PackageKind),
            execute_types=frozenset(ExecuteType),
            min_window=timedelta(minutes=5),
            window_granularity=timedelta(seconds=1),
            page_sizes={
                "tasks": self.task_page,
                "task_devices": 100,
                "group_members": 1000,
                "devices": 250,
            },
            rate_limit_per_minute=None,
            can_cancel_tasks=False,
            has_groups=True,
            push=True,
        )

    def add_group(self, group_id: str, name: str, device_ids: Iterable[str]) -> None:
        self.groups[group_id] = (name, list(device_ids))

    def add_task(
        self,
        operation_id: str,
        device_ids: Iterable[str],
        *,
        version: str | None,
        kind: PackageKind = PackageKind.FIRMWARE,
        state: TaskState = TaskState.RUNNING,
    ) -> PlatformTask:
        """Put a task on the platform (as another tool or an earlier run would have)."""
        task = PlatformTask(
            operation_id=operation_id,
            kind=kind,
            state=state,
            device_ids=tuple(device_ids),
            file_version=version,
        )
        self.task_list[operation_id] = task
        return task

    async def get_package(self, file_id: str) -> PackageInfo:
        self.calls["GET /category/{fileId}"] += 1
        for p in self.packages:
            if p.file_id == file_id:
                return p
        raise PackageNotFound(f"no package {file_id}", status_code=404)

    async def find_packages(
        self,
        *,
        kind: PackageKind | None = None,
        version: str | None = None,
        device_type: str | None = None,
        model: str | None = None,
        manufacturer_name: str | None = None,
    ) -> AsyncIterator[PackageInfo]:
        self.calls["GET /category"] += 1
        for p in self.packages:
            if (
                (kind is None or p.kind is kind)
                and (version is None or p.version == version)
                and (device_type is None or p.device_type == device_type)
                and (model is None or p.model == model)
                and (manufacturer_name is None or p.manufacturer_name == manufacturer_name)
            ):
                yield p

    async def list_groups(self, *, name: str | None = None) -> AsyncIterator[DeviceGroup]:
        self.calls["GET /devGroups"] += 1
        for gid, (gname, ids) in self.groups.items():
            if name is None or gname == name:
                yield DeviceGroup(gid, gname, len(ids))

    async def group_members(self, group_id: str) -> AsyncIterator[str]:
        if group_id not in self.groups:
            self.calls["GET /devices/ids"] += 1
            raise NotFound(f"no group {group_id}", status_code=404)
        ids = self.groups[group_id][1]
        for start in range(0, max(1, len(ids)), 1000):
            self.calls["GET /devices/ids"] += 1
            for d in ids[start : start + 1000]:
                yield d

    async def devices(
        self, *, device_type: str | None = None, status: str | None = None
    ) -> AsyncIterator[DeviceInfo]:
        matching = [
            d
            for d in self.inventory
            if (device_type is None or d.device_type == device_type)
            and (status is None or d.status == status)
        ]
        for start in range(0, max(1, len(matching)), 250):
            self.calls["GET /devices"] += 1
            for d in matching[start : start + 250]:
                yield d

    async def get_device(self, device_id: str) -> DeviceInfo:
        self.calls["GET /devices/{deviceId}"] += 1
        for d in self.inventory:
            if d.device_id == device_id:
                return d
        raise NotFound(f"no device {device_id}", status_code=404)

    async def create_upgrade_task(
        self,
        *,
        kind: PackageKind,
        file_id: str,
        device_ids: Sequence[str],
        policy: TaskPolicy,
    ) -> str:
        self.calls["POST /operations"] += 1
        self.tasks.append((file_id, tuple(device_ids), policy))
        operation_id = f"op-{len(self.tasks)}"
        version = next((p.version for p in self.packages if p.file_id == file_id), None)
        self.add_task(operation_id, device_ids, version=version, kind=kind, state=TaskState.PENDING)
        return operation_id

    async def get_task(self, operation_id: str) -> PlatformTask:
        self.calls["GET /operations/{operationId}"] += 1
        if operation_id in self.task_list:
            return self.task_list[operation_id]
        raise TaskNotFound(f"no task {operation_id}", status_code=404)

    async def list_tasks(
        self,
        *,
        kind: PackageKind | None = None,
        state: TaskState | None = None,
        device_id: str | None = None,
    ) -> AsyncIterator[PlatformTask]:
        matching = [
            t
            for t in self.task_list.values()
            if (kind is None or t.kind is kind)
            and (state is None or t.state is state)
            and (device_id is None or device_id in t.device_ids)
        ]
        for start in range(0, max(1, len(matching)), self.task_page):
            self.calls["GET /operations"] += 1
            for t in matching[start : start + self.task_page]:
                yield t

    async def task_progress(self, tasks: Sequence[TaskRef]) -> Mapping[str, TaskProgress]:
        """Live tasks from one list read per page of ``task_page``; finished ones left out."""
        wanted = {t.operation_id for t in tasks}
        live = [t for t in self.task_list.values() if not t.state.is_final]
        for _ in range(max(1, -(-len(live) // self.task_page)) if wanted else 0):
            self.calls["GET /operations"] += 1
        return {
            t.operation_id: TaskProgress(t.operation_id, t.state, t.counts, t.state.value)
            for t in live
            if t.operation_id in wanted
        }

    async def task_results(self, operation_id: str) -> AsyncIterator[SubtaskResult]:
        self.calls["GET /operations/{operationId}/subOperations"] += 1
        task = self.task_list.get(operation_id)
        if task is None:
            raise TaskNotFound(f"no task {operation_id}", status_code=404)
        outcome = DeviceOutcome.SUCCEEDED if task.state.is_final else DeviceOutcome.RUNNING
        for device_id in task.device_ids:
            yield SubtaskResult(device_id=device_id, outcome=outcome)

    async def subscribe_upgrade_events(self, kind: PackageKind, callback_url: str) -> None:
        self.calls["POST /subscriptions"] += 1
        self.subscriptions.append((kind, callback_url))

    def parse_push(self, body: bytes) -> list[UpgradeEvent]:
        """``{"device": ID, "task": OPERATION_ID, "outcome": DeviceOutcome value}``."""
        try:
            data = json.loads(body)
            outcome = DeviceOutcome(data["outcome"])
            return [
                UpgradeEvent(
                    kind=UpgradeEventKind.RESULT,
                    package_kind=PackageKind.FIRMWARE,
                    device_id=str(data["device"]),
                    operation_id=data.get("task"),
                    received_at=pendulum.now("UTC"),
                    source="fake",
                    outcome=outcome,
                )
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise PushParseError(f"not a fake push body: {exc}") from None

    def call_counts(self) -> Mapping[str, int]:
        return dict(self.calls)

    async def aclose(self) -> None:
        return None

    @property
    def writes(self) -> int:
        """Calls that would change the platform."""
        return sum(n for k, n in self.calls.items() if not k.startswith("GET "))


def spec_dict(**overrides: object) -> dict[str, object]:
    """A minimal valid campaign as a dict (WaterMeter firmware 1.5.0); keys replaced whole."""
    base: dict[str, object] = {
        "name": "test-campaign",
        "kind": "firmware",
        "package": {"version": "1.5.0", "device_type": "WaterMeter"},
        "targets": {"groups": [{"name": "meters-a"}]},
        "waves": [{"count": 2}, {"percent": 50}, {"percent": 100}],
    }
    base.update(overrides)
    return base


def make_spec(**overrides: object) -> CampaignSpec:
    """A validated :class:`CampaignSpec` from :func:`spec_dict` with ``overrides``."""
    return CampaignSpec.model_validate(spec_dict(**overrides))

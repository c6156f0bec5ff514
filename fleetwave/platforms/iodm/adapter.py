"""``IoDMPlatform``: the Platform protocol of ``platforms.base`` on top of the IoDM client.

Translates neutral requests to IoDM endpoints and wire models back to neutral value
types; checks what it can before spending a call (target count, policy window), and
uses the largest page each listing allows.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from fleetwave.clock import Clock
from fleetwave.platforms.base import (
    AsyncClosing,
    Capabilities,
    DeviceGroup,
    DeviceInfo,
    DeviceOutcome,
    ExecuteType,
    PackageInfo,
    PackageKind,
    PlatformTask,
    SubtaskResult,
    TaskPolicy,
    TaskProgress,
    TaskRef,
    TaskState,
    UpgradeEvent,
)
from fleetwave.platforms.errors import (
    InvalidPolicy,
    OutcomeUnknown,
    RequestRejected,
    task_targets,
)

from .client import IoDMClient, parse_body
from .errors import MalformedResponse
from .models import (
    CategoryInfo,
    DeviceGroupInfo,
    DeviceIdPage,
    DevicePage,
    DeviceRecord,
    GroupPage,
    IoDMStatus,
    OperationInfo,
    OperationPage,
    PackagePage,
    SubOperationInfo,
    SubOperationPage,
)
from .progress import ProgressReader, counts_of, state_of
from .push import NOTIFY_TYPES, NOTIFY_TYPES_OF, parse_push_body
from .settings import IoDMSettings
from .timefmt import format_iodm_time

__all__ = ["MAX_DEVICES_PER_TASK", "PAGE_SIZES", "PATHS", "IoDMPlatform", "connection_key_of"]

log = logging.getLogger(__name__)


_NB = "/iodm/northbound/v1.5.0"

PATHS = {
    "packages": f"{_NB}/category",
    "package": f"{_NB}/category/{{fileId}}",
    "firmware_task": f"{_NB}/operations/firmwareUpgrade",
    "software_task": f"{_NB}/operations/softwareUpgrade",
    "tasks": f"{_NB}/operations",
    "task": f"{_NB}/operations/{{operationId}}",
    "subtasks": f"{_NB}/operations/{{operationId}}/subOperations",
    "devices": "/iocm/app/dm/v1.4.0/devices",
    "device": "/iocm/app/dm/v1.4.0/devices/{deviceId}",
    "groups": "/iocm/app/devgroup/v1.3.0/devGroups",
    "members": "/iocm/app/dm/v1.2.0/devices/ids",
    "subscribe": "/iodm/app/sub/v1.1.0/subscribe",
}

# the largest page each listing accepts (API reference 1.5.2, 1.9.4, 1.9.6, 1.10.1/7/8)
PAGE_SIZES = {
    "packages": 100,
    "tasks": 100,
    "subtasks": 100,
    "devices": 250,
    "members": 1000,
    "groups": 100,
}

_FILE_TYPES = {PackageKind.FIRMWARE: "firmwarePackage", PackageKind.SOFTWARE: "softwarePackage"}
_OPERATION_TYPES = {
    PackageKind.FIRMWARE: "firmware_upgrade",
    PackageKind.SOFTWARE: "software_upgrade",
}
MAX_DEVICES_PER_TASK = 256  # devices a create call takes (API reference 1.10.1)
MIN_WINDOW = timedelta(minutes=5)  # a custom window must be longer (error 123034)

# the task list documents "failed" for tasks; subtasks use "fail"
_TASK_STATUS_WIRE = {
    IoDMStatus.WAIT: "wait",
    IoDMStatus.PROCESSING: "processing",
    IoDMStatus.SUCCESS: "success",
    IoDMStatus.FAIL: "failed",
    IoDMStatus.STOP: "stop",
}
# documented subtask filter values; TIMEOUT is not one, so it is filtered here instead
_SUBTASK_STATUS_WIRE = {
    IoDMStatus.WAIT: "wait",
    IoDMStatus.PROCESSING: "processing",
    IoDMStatus.SUCCESS: "success",
    IoDMStatus.FAIL: "fail",
    IoDMStatus.STOP: "stop",
}
# the live task states are single list filters; FINISHED is any final status
_STATE_WIRE = {TaskState.PENDING: IoDMStatus.WAIT, TaskState.RUNNING: IoDMStatus.PROCESSING}
_OUTCOME_OF = {
    IoDMStatus.WAIT: DeviceOutcome.PENDING,
    IoDMStatus.PROCESSING: DeviceOutcome.RUNNING,
    IoDMStatus.SUCCESS: DeviceOutcome.SUCCEEDED,
    IoDMStatus.FAIL: DeviceOutcome.FAILED,
    IoDMStatus.STOP: DeviceOutcome.CANCELLED,
    IoDMStatus.TIMEOUT: DeviceOutcome.TIMED_OUT,
}


def outcome_of(status: IoDMStatus | None) -> DeviceOutcome:
    """The neutral outcome of a subOperation status (none given: still running)."""
    return _OUTCOME_OF[status] if status is not None else DeviceOutcome.RUNNING


def _kind_of_file_type(value: str | None, where: str) -> PackageKind:
    text = (value or "").lower()
    if text.startswith("firmware"):
        return PackageKind.FIRMWARE
    if text.startswith("software"):
        return PackageKind.SOFTWARE
    raise MalformedResponse(
        f"package {where} has an unknown fileType {value!r} "
        "(expected firmwarePackage or softwarePackage)"
    )


def _kind_of_operation(value: str | None) -> PackageKind:
    return (
        PackageKind.SOFTWARE
        if (value or "").lower().startswith("software")
        else (PackageKind.FIRMWARE)
    )


_KEY_MAX = 200  # the store's column width


def connection_key_of(settings: IoDMSettings) -> str:
    """``iodm:HOST:PORT/APP_ID``: the stable, secret-free identity of one IoDM connection.

    Host and port only (never user info, never the secret); the port defaults by scheme.
    A key longer than the store's column keeps its start and ends in a hash of the whole.
    """
    parts = urlsplit(settings.base_url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    key = f"iodm:{host}:{port}/{settings.app_id}"
    if len(key) > _KEY_MAX:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        key = f"{key[: _KEY_MAX - 17]}#{digest}"
    return key


def package_info(c: CategoryInfo) -> PackageInfo:
    """Neutral PackageInfo from a wire CategoryInfo."""
    return PackageInfo(
        file_id=c.file_id,
        name=c.name or c.file_id,
        version=c.version or "",
        kind=_kind_of_file_type(c.file_type, c.file_id),
        device_type=c.device_type or "",
        model=c.model or "",
        manufacturer_name=c.manufacturer_name or "",
        protocol_type=c.protocol_type,
        description=c.description,
    )


def device_info(d: DeviceRecord) -> DeviceInfo:
    """Neutral DeviceInfo from a wire device record."""
    i = d.device_info
    return DeviceInfo(
        device_id=d.device_id,
        device_type=i.device_type,
        model=i.model,
        manufacturer_name=i.manufacturer_name,
        fw_version=i.fw_version,
        sw_version=i.sw_version,
        status=i.status.upper() if i.status else None,
    )


def platform_task(o: OperationInfo) -> PlatformTask:
    """Neutral PlatformTask from a wire OperationInfo."""
    policy = None
    if o.policy is not None:
        try:
            execute = ExecuteType((o.policy.execute_type or "now").lower())
        except ValueError:
            execute = ExecuteType.NOW
        policy = TaskPolicy(
            execute_type=execute,
            start_time=o.policy.start_time,
            end_time=o.policy.end_time,
            retry_times=o.policy.retry_times if o.policy.retry_type else None,
        )
    return PlatformTask(
        operation_id=o.operation_id,
        kind=_kind_of_operation(o.operate_type),
        state=state_of(o.status),
        device_ids=tuple(o.targets.devices),
        counts=counts_of(o),
        created_at=o.create_time,
        started_at=o.start_time,
        stopped_at=o.stop_time,
        file_version=o.extend_para.get("fileVersion"),
        policy=policy,
    )


def subtask_result(s: SubOperationInfo) -> SubtaskResult:
    """Neutral SubtaskResult from a wire SubOperationInfo."""
    ext = s.extend_para
    return SubtaskResult(
        device_id=s.device_id,
        outcome=outcome_of(s.status),
        detail=s.detail_info,
        started_at=s.start_time,
        stopped_at=s.stop_time,
        source_version=ext.get("sourceVersion"),
        target_version=ext.get("targetVersion"),
        current_version=ext.get("curVersion"),
    )


def policy_body(policy: TaskPolicy) -> dict[str, Any]:
    """The wire ``policy`` of a create-task call; raises InvalidPolicy before any call."""
    body: dict[str, Any] = {"executeType": policy.execute_type.value}
    if policy.execute_type is ExecuteType.CUSTOM:
        if policy.start_time is None or policy.end_time is None:
            raise InvalidPolicy("a custom execution window needs both start_time and end_time")
        if policy.end_time.diff(policy.start_time, abs=False).in_seconds() > -int(
            MIN_WINDOW.total_seconds()
        ):
            raise InvalidPolicy(
                f"the window {policy.start_time} .. {policy.end_time} must end more than "
                "5 minutes after it starts (IoDM 123034)"
            )
        body["startTime"] = format_iodm_time(policy.start_time)
        body["endTime"] = format_iodm_time(policy.end_time)
    elif policy.start_time is not None or policy.end_time is not None:
        raise InvalidPolicy(
            f"start_time/end_time need execute_type custom, not {policy.execute_type.value}"
        )
    if policy.retry_times is not None:
        if not 1 <= policy.retry_times <= 5:
            raise InvalidPolicy(
                f"platform retries must be between 1 and 5, not {policy.retry_times}"
            )
        body["retryType"] = True
        body["retryTimes"] = policy.retry_times
    return body


class IoDMPlatform(AsyncClosing):
    """Huawei IoDM behind the Platform protocol; one instance per app and event loop."""

    name = "iodm"

    def __init__(
        self,
        settings: IoDMSettings | None = None,
        *,
        client: IoDMClient | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if client is None:
            if settings is None:
                raise ValueError("IoDMPlatform needs settings or a client")
            client = IoDMClient(settings, clock=clock, transport=transport)
        self.client = client
        self.settings = client.settings
        self.connection_key = connection_key_of(self.settings)
        self._packages: dict[str, PackageInfo] = {}  # fileId -> package, from lookups
        self._progress = ProgressReader(
            fetch_page=self._task_page,
            get_task=self._operation,
            list_params=self._task_list_filters,
            page_size=PAGE_SIZES["tasks"],
        )
        self._capabilities = Capabilities(
            platform="iodm",
            max_devices_per_task=MAX_DEVICES_PER_TASK,
            package_kinds=frozenset(PackageKind),
            execute_types=frozenset(ExecuteType),
            min_window=MIN_WINDOW,
            window_granularity=timedelta(seconds=1),
            page_sizes={
                "tasks": PAGE_SIZES["tasks"],
                "task_devices": PAGE_SIZES["subtasks"],
                "group_members": PAGE_SIZES["members"],
                "devices": PAGE_SIZES["devices"],
            },
            rate_limit_per_minute=self.settings.rate_limit or None,
            can_cancel_tasks=False,  # the northbound reference documents no stop call
            has_groups=True,
            push=True,
        )

    def __repr__(self) -> str:
        return f"IoDMPlatform(base_url={self.settings.base_url!r}, app_id={self.settings.app_id!r})"

    @property
    def capabilities(self) -> Capabilities:
        """256 devices a task, firmware and software, windows over 5 minutes to the second,
        no cancel call, groups and push (API reference 1.10, 1.6)."""
        return self._capabilities

    # -- packages ------------------------------------------------------------------------

    async def get_package(self, file_id: str) -> PackageInfo:
        body = await self.client.get(PATHS["package"], path_params={"fileId": file_id})
        pkg = package_info(parse_body(CategoryInfo, body, "GET", PATHS["package"]))
        self._packages[pkg.file_id] = pkg
        return pkg

    async def find_packages(
        self,
        *,
        kind: PackageKind | None = None,
        version: str | None = None,
        device_type: str | None = None,
        model: str | None = None,
        manufacturer_name: str | None = None,
    ) -> AsyncIterator[PackageInfo]:
        params = {
            "fileType": _FILE_TYPES[kind] if kind else None,
            "version": version,
            "deviceType": device_type,
            "model": model,
            # the reference spells it both ways; a platform ignores the one it does not know
            "manufacturerName": manufacturer_name,
            "manufactureName": manufacturer_name,
        }
        async for item in self.client.paged(
            PATHS["packages"], PackagePage, page_size=PAGE_SIZES["packages"], params=params
        ):
            pkg = package_info(item)
            self._packages[pkg.file_id] = pkg
            # filter again: a platform that ignores a filter must not widen the result
            if (
                (kind is None or pkg.kind is kind)
                and (version is None or pkg.version == version)
                and (device_type is None or pkg.device_type == device_type)
                and (model is None or pkg.model == model)
                and (manufacturer_name is None or pkg.manufacturer_name == manufacturer_name)
            ):
                yield pkg

    # -- groups and devices --------------------------------------------------------------

    async def list_groups(self, *, name: str | None = None) -> AsyncIterator[DeviceGroup]:
        item: DeviceGroupInfo
        async for item in self.client.paged(
            PATHS["groups"], GroupPage, page_size=PAGE_SIZES["groups"], params={"name": name}
        ):
            if name is None or item.name == name:
                yield DeviceGroup(group_id=item.id, name=item.name, device_count=item.cur_dev_num)

    async def group_members(self, group_id: str) -> AsyncIterator[str]:
        async for device_id in self.client.paged(
            PATHS["members"],
            DeviceIdPage,
            page_size=PAGE_SIZES["members"],
            params={"devGroupId": group_id},
        ):
            yield device_id

    async def devices(
        self, *, device_type: str | None = None, status: str | None = None
    ) -> AsyncIterator[DeviceInfo]:
        params = {"deviceType": device_type, "status": status.upper() if status else None}
        async for record in self.client.paged(
            PATHS["devices"], DevicePage, page_size=PAGE_SIZES["devices"], params=params
        ):
            yield device_info(record)

    async def get_device(self, device_id: str) -> DeviceInfo:
        body = await self.client.get(PATHS["device"], path_params={"deviceId": device_id})
        return device_info(parse_body(DeviceRecord, body, "GET", PATHS["device"]))

    # -- tasks ---------------------------------------------------------------------------

    async def create_upgrade_task(
        self,
        *,
        kind: PackageKind,
        file_id: str,
        device_ids: Sequence[str],
        policy: TaskPolicy,
    ) -> str:
        devices = task_targets(device_ids, limit=MAX_DEVICES_PER_TASK, taker="IoDM takes")
        template = PATHS["firmware_task" if kind is PackageKind.FIRMWARE else "software_task"]
        body = {"fileId": file_id, "targets": {"devices": devices}, "policy": policy_body(policy)}
        answer = await self.client.post(template, json_body=body)
        operation_id = answer.get("operationId") if isinstance(answer, dict) else None
        if not operation_id:
            raise OutcomeUnknown(
                "the platform accepted the task but its answer has no operationId; "
                "reconcile through the task list",
                method="POST",
                path=template,
            )
        log.info("created %s task %s for %d devices", kind.value, operation_id, len(devices))
        return str(operation_id)

    async def _operation(self, operation_id: str) -> OperationInfo:
        body = await self.client.get(PATHS["task"], path_params={"operationId": operation_id})
        return parse_body(OperationInfo, body, "GET", PATHS["task"])

    async def get_task(self, operation_id: str) -> PlatformTask:
        return platform_task(await self._operation(operation_id))

    async def list_tasks(
        self,
        *,
        kind: PackageKind | None = None,
        state: TaskState | None = None,
        device_id: str | None = None,
    ) -> AsyncIterator[PlatformTask]:
        wire = _STATE_WIRE.get(state) if state is not None else None
        params = {
            "operationType": _OPERATION_TYPES[kind] if kind else None,
            "operationStatus": _TASK_STATUS_WIRE[wire] if wire is not None else None,
            "deviceId": device_id,
        }
        async for item in self.client.paged(
            PATHS["tasks"], OperationPage, page_size=PAGE_SIZES["tasks"], params=params
        ):
            task = platform_task(item)
            if (kind is None or task.kind is kind) and (state is None or task.state is state):
                yield task

    async def _task_page(
        self, params: Mapping[str, str | None], page_no: int, page_size: int
    ) -> OperationPage:
        query = {k: v for k, v in params.items() if v is not None}
        body = await self.client.get(
            PATHS["tasks"], params={**query, "pageNo": page_no, "pageSize": page_size}
        )
        return parse_body(OperationPage, body, "GET", PATHS["tasks"])

    def _task_list_filters(
        self, kind: PackageKind, tasks: Sequence[TaskRef]
    ) -> dict[str, str | None]:
        """The task-list filters for progress: the kind, and the package's device type, model
        and manufacturer when every task is of one package looked up before (the verify
        stage does), so other campaigns' tasks stay out of the pages."""
        params: dict[str, str | None] = {"operationType": _OPERATION_TYPES[kind]}
        files = {t.file_id for t in tasks}
        if len(files) == 1:
            pkg = self._packages.get(next(iter(files)) or "")
            if pkg is not None and pkg.kind is kind:
                params["deviceType"] = pkg.device_type or None
                params["model"] = pkg.model or None
                params["manufacturerName"] = pkg.manufacturer_name or None
        return params

    async def task_progress(self, tasks: Sequence[TaskRef]) -> Mapping[str, TaskProgress]:
        """Progress from the live task lists or single reads, whichever costs fewer calls
        (see :mod:`fleetwave.platforms.iodm.progress`); finished tasks are left out."""
        return await self._progress.read(tasks)

    async def task_results(self, operation_id: str) -> AsyncIterator[SubtaskResult]:
        async for result in self.subtasks(operation_id):
            yield result

    async def subtasks(
        self, operation_id: str, *, status: IoDMStatus | None = None
    ) -> AsyncIterator[SubtaskResult]:
        """A task's subOperations (IoDM's own filter on their status)."""
        params = {"subOperationStatus": _SUBTASK_STATUS_WIRE.get(status) if status else None}
        async for item in self.client.paged(
            PATHS["subtasks"],
            SubOperationPage,
            page_size=PAGE_SIZES["subtasks"],
            params=params,
            path_params={"operationId": operation_id},
        ):
            if status is None or item.status is status:
                yield subtask_result(item)

    async def subscribe_upgrade_events(self, kind: PackageKind, callback_url: str) -> None:
        """Subscribe the state-change and result notifications of ``kind`` (two calls)."""
        for notify_type in NOTIFY_TYPES_OF[kind]:
            await self.subscribe(notify_type, callback_url)

    def parse_push(self, body: bytes) -> list[UpgradeEvent]:
        """The event of one pushed notification body (:mod:`.push`)."""
        return parse_push_body(body, received_at=self.client.clock.now())

    async def subscribe(self, notify_type: str, callback_url: str) -> None:
        """Subscribe one IoDM notification type (replaces an earlier callback of that type)."""
        if notify_type not in NOTIFY_TYPES:
            raise RequestRejected(
                f"unknown notification type {notify_type!r}: use one of {', '.join(NOTIFY_TYPES)}"
            )
        if not callback_url.startswith(("http://", "https://")):
            # name the scheme only: the rest of a callback URL may carry its secret token
            scheme = urlsplit(callback_url).scheme or "no scheme"
            raise RequestRejected(f"the callback URL must start with http(s)://, not {scheme!r}")
        # The field is spelled "callbackurl" as Huawei's own Java, PHP and Python SDKs send
        # it (SubDeviceManagementDataInDTO), not "callbackUrl" as the HTTP chapter prints it:
        # the SDKs are the code that runs against the platform, and they spell the
        # neighbouring service-data subscription "callbackUrl", so the lower case is on
        # purpose. Subscribing again to the same type replaces the callback: safe to replay.
        await self.client.post(
            PATHS["subscribe"],
            json_body={"notifyType": notify_type, "callbackurl": callback_url},
            replay_safe=True,
        )

    async def cancel_task(self, operation_id: str) -> bool:
        """IoDM's northbound reference documents no call that stops a task: never cancelled."""
        return False

    # -- bookkeeping ---------------------------------------------------------------------

    def call_counts(self) -> Mapping[str, int]:
        return self.client.call_counts()

    async def aclose(self) -> None:
        await self.client.aclose()

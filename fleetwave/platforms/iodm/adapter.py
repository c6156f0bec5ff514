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
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from fleetwave.clock import Clock
from fleetwave.platforms.base import (
    Capabilities,
    DeviceGroup,
    DeviceInfo,
    ExecuteType,
    PackageInfo,
    PackageKind,
    PlatformTask,
    SubtaskResult,
    TaskPolicy,
    TaskStats,
    TaskStatus,
)
from fleetwave.platforms.errors import (
    InvalidPolicy,
    OutcomeUnknown,
    RequestRejected,
    TooManyTargets,
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
    OperationInfo,
    OperationPage,
    PackagePage,
    SubOperationInfo,
    SubOperationPage,
)
from .settings import IoDMSettings
from .timefmt import format_iodm_time

__all__ = ["PAGE_SIZES", "PATHS", "IoDMPlatform", "connection_key_of"]

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
# the task list documents "failed" for tasks; subtasks use "fail"
_TASK_STATUS_WIRE = {
    TaskStatus.WAIT: "wait",
    TaskStatus.PROCESSING: "processing",
    TaskStatus.SUCCESS: "success",
    TaskStatus.FAIL: "failed",
    TaskStatus.STOP: "stop",
}
# documented subtask filter values; TIMEOUT is not one, so it is filtered here instead
_SUBTASK_STATUS_WIRE = {
    TaskStatus.WAIT: "wait",
    TaskStatus.PROCESSING: "processing",
    TaskStatus.SUCCESS: "success",
    TaskStatus.FAIL: "fail",
    TaskStatus.STOP: "stop",
}
_NOTIFY_TYPES = (
    "swUpgradeStateChangeNotify",
    "swUpgradeResultNotify",
    "fwUpgradeStateChangeNotify",
    "fwUpgradeResultNotify",
)


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
    st = o.sta_result
    total = st.total or (st.wait + st.processing + st.success + st.fail + st.stop + st.timeout)
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
        status=o.status or TaskStatus.PROCESSING,
        device_ids=tuple(o.targets.devices),
        stats=TaskStats(
            total=total,
            wait=st.wait,
            processing=st.processing,
            success=st.success,
            fail=st.fail,
            stop=st.stop,
            timeout=st.timeout,
        ),
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
        status=s.status or TaskStatus.PROCESSING,
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
        if policy.end_time.diff(policy.start_time, abs=False).in_seconds() > -300:
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


class IoDMPlatform:
    """Huawei IoDM behind the Platform protocol; one instance per app and event loop."""

    name = "iodm"
    max_devices_per_task = 256

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

    async def __aenter__(self) -> IoDMPlatform:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def capabilities(self) -> Capabilities:
        """IoDM's limits: 256 devices a task (123024), custom windows of 5 minutes or more
        (123034) on whole seconds, the listings' largest pages, the app's rate limit."""
        rate = self.settings.rate_limit
        return Capabilities(
            platform=self.name,
            max_devices_per_task=self.max_devices_per_task,
            package_kinds=frozenset(PackageKind),
            execute_types=frozenset(
                (ExecuteType.NOW, ExecuteType.DEVICE_ONLINE, ExecuteType.CUSTOM)
            ),
            min_window=timedelta(minutes=5),
            window_granularity=timedelta(seconds=1),
            page_sizes={
                "tasks": PAGE_SIZES["tasks"],
                "task_devices": PAGE_SIZES["subtasks"],
                "group_members": PAGE_SIZES["members"],
                "devices": PAGE_SIZES["devices"],
            },
            rate_limit_per_minute=rate if rate > 0 else None,
            can_cancel_tasks=False,
            has_groups=True,
            push=True,
        )

    def __repr__(self) -> str:
        return f"IoDMPlatform(base_url={self.settings.base_url!r}, app_id={self.settings.app_id!r})"

    # -- packages ------------------------------------------------------------------------

    async def get_package(self, file_id: str) -> PackageInfo:
        body = await self.client.get(PATHS["package"], path_params={"fileId": file_id})
        return package_info(parse_body(CategoryInfo, body, "GET", PATHS["package"]))

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
        devices = list(device_ids)
        if not devices:
            raise RequestRejected("an upgrade task needs at least one device")
        if len(devices) > self.max_devices_per_task:
            raise TooManyTargets(
                f"{len(devices)} devices for one task; IoDM takes at most "
                f"{self.max_devices_per_task}: split them into chunks"
            )
        if len(set(devices)) != len(devices):
            raise RequestRejected("the device list of a task names a device twice")
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

    async def get_task(self, operation_id: str) -> PlatformTask:
        body = await self.client.get(PATHS["task"], path_params={"operationId": operation_id})
        return platform_task(parse_body(OperationInfo, body, "GET", PATHS["task"]))

    async def list_tasks(
        self,
        *,
        kind: PackageKind | None = None,
        status: TaskStatus | None = None,
        device_id: str | None = None,
    ) -> AsyncIterator[PlatformTask]:
        params = {
            "operationType": _OPERATION_TYPES[kind] if kind else None,
            "operationStatus": _TASK_STATUS_WIRE.get(status) if status else None,
            "deviceId": device_id,
        }
        async for item in self.client.paged(
            PATHS["tasks"], OperationPage, page_size=PAGE_SIZES["tasks"], params=params
        ):
            task = platform_task(item)
            if (kind is None or task.kind is kind) and (status is None or task.status is status):
                yield task

    async def subtasks(
        self, operation_id: str, *, status: TaskStatus | None = None
    ) -> AsyncIterator[SubtaskResult]:
        params = {"subOperationStatus": _SUBTASK_STATUS_WIRE.get(status) if status else None}
        async for item in self.client.paged(
            PATHS["subtasks"],
            SubOperationPage,
            page_size=PAGE_SIZES["subtasks"],
            params=params,
            path_params={"operationId": operation_id},
        ):
            result = subtask_result(item)
            if status is None or result.status is status:
                yield result

    async def subscribe(self, notify_type: str, callback_url: str) -> None:
        if notify_type not in _NOTIFY_TYPES:
            raise RequestRejected(
                f"unknown notification type {notify_type!r}: use one of {', '.join(_NOTIFY_TYPES)}"
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

    # -- bookkeeping ---------------------------------------------------------------------

    def call_counts(self) -> Mapping[str, int]:
        return self.client.call_counts()

    async def aclose(self) -> None:
        await self.client.aclose()

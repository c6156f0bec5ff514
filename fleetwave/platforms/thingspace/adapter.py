"""``ThingSpacePlatform``: the Platform protocol on Verizon ThingSpace Software Management.

Firmware goes out as FOTA v1 upgrades (``POST /api/fota/v1/upgrades``), files as FOTA v2
file campaigns (``POST /api/fota/v2/campaigns/files/{acc}``) with download and install hour
windows. fleetwave's operationId of a task is the ThingSpace id prefixed with its API
(``v1:`` / ``v2:``), so every later read goes to the right API without a lookup.
Progress comes from single reads of each upgrade or campaign (its device list, 1,000
devices a page for v2); reconciliation after a lost answer reads a device's upgrade
history. The FOTA API has no device groups; upgrades not yet started can be cancelled.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pendulum

from fleetwave.clock import Clock
from fleetwave.platforms.base import (
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
    DeviceNotFound,
    GroupNotFound,
    InvalidPolicy,
    NotFound,
    OutcomeUnknown,
    PackageNotFound,
    RequestRejected,
    TaskNotFound,
    task_targets,
)

from .client import ThingSpaceClient
from .errors import refused_devices
from .push import parse_push_body
from .settings import ThingSpaceSettings
from .vocab import device_outcome, final_statuses, is_final_task_status, live_statuses
from .windows import Schedule, schedule_for, schedule_note
from .wire import (
    device_info,
    field,
    file_package,
    firmware_package,
    items,
    operation_id_of,
    reason_of,
    split_file_id,
    split_operation_id,
    v1_results,
    v1_task,
    v2_task,
)

__all__ = [
    "MAX_DEVICES_PER_TASK",
    "PAGE_SIZES",
    "PATHS",
    "ThingSpacePlatform",
    "connection_key_of",
    "thingspace_capabilities",
]

log = logging.getLogger(__name__)

_V1 = "/api/fota/v1"
_V2 = "/api/fota/v2"

PATHS = {
    "firmware": f"{_V1}/firmware/{{account}}",
    "upgrades": f"{_V1}/upgrades",
    "upgrade": f"{_V1}/upgrades/{{account}}/upgrade/{{upgradeId}}",
    "v1_reports": f"{_V1}/reports/{{account}}/status/{{status}}/index/{{startIndex}}",
    "v1_history": f"{_V1}/reports/{{account}}/devices/{{deviceId}}",
    "v1_devices": f"{_V1}/devices/{{account}}/index/{{startIndex}}",
    "v1_callbacks": f"{_V1}/callbacks/{{account}}",
    "files": f"{_V2}/files/{{account}}",
    "file_campaign": f"{_V2}/campaigns/files/{{account}}",
    "campaign": f"{_V2}/campaigns/{{account}}/{{campaignId}}",
    "campaign_devices": f"{_V2}/reports/{{account}}/campaigns/{{campaignId}}/devices",
    "campaigns": f"{_V2}/reports/{{account}}/campaigns",
    "v2_history": f"{_V2}/reports/{{account}}/devices/{{deviceId}}",
    "v2_callbacks": f"{_V2}/callbacks/{{account}}",
}

# items a list call returns (the platform decides; v2 device status says 1,000)
PAGE_SIZES = {"tasks": 1000, "task_devices": 1000, "group_members": 1, "devices": 1000}
# devices one create call takes: not documented; one v2 device-status page holds 1,000
MAX_DEVICES_PER_TASK = 1000
_KEY_MAX = 200
V1_CALLBACK_NAME = "Fota"


def thingspace_capabilities(rate_limit: int) -> Capabilities:
    """What ThingSpace can do: firmware (v1) and files (v2), hour windows on dates, no
    groups, cancellable until started, callbacks; the budget is the contract's."""
    return Capabilities(
        platform="thingspace",
        max_devices_per_task=MAX_DEVICES_PER_TASK,
        package_kinds=frozenset(PackageKind),
        execute_types=frozenset({ExecuteType.NOW, ExecuteType.CUSTOM}),
        min_window=timedelta(hours=1),
        window_granularity=timedelta(hours=1),
        page_sizes=dict(PAGE_SIZES),
        rate_limit_per_minute=rate_limit or None,
        can_cancel_tasks=True,
        has_groups=False,
        push=True,
        install_windows=True,
    )


def connection_key_of(settings: ThingSpaceSettings) -> str:
    """``thingspace:HOST:PORT/ACCOUNT``: the stable, secret-free identity of a connection."""
    parts = urlsplit(settings.base_url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    key = f"thingspace:{host}:{port}/{settings.account_name}"
    if len(key) > _KEY_MAX:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        key = f"{key[: _KEY_MAX - 17]}#{digest}"
    return key


class ThingSpacePlatform:
    """Verizon ThingSpace behind the Platform protocol; one instance per account and loop."""

    name = "thingspace"

    def __init__(
        self,
        settings: ThingSpaceSettings | None = None,
        *,
        client: ThingSpaceClient | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if client is None:
            if settings is None:
                raise ValueError("ThingSpacePlatform needs settings or a client")
            client = ThingSpaceClient(settings, clock=clock, transport=transport)
        self.client = client
        self.settings = client.settings
        self.connection_key = connection_key_of(self.settings)
        self._packages: dict[str, PackageInfo] = {}
        self._cancelled: dict[str, tuple[str, ...]] = {}  # v1 upgrades cancelled here
        self._capabilities = thingspace_capabilities(self.settings.rate_limit)

    def __repr__(self) -> str:
        s = self.settings
        return f"ThingSpacePlatform(base_url={s.base_url!r}, account={s.account_name!r})"

    @property
    def capabilities(self) -> Capabilities:
        """Firmware (v1) and files (v2); hour windows on dates; no groups; cancellable."""
        return self._capabilities

    @property
    def _account(self) -> dict[str, str]:
        return {"account": self.settings.account_name}

    # -- packages ------------------------------------------------------------------------

    async def _all_packages(self, kind: PackageKind | None) -> list[PackageInfo]:
        out: list[PackageInfo] = []
        if kind in (None, PackageKind.FIRMWARE):
            body = await self.client.get(PATHS["firmware"], path_params=self._account)
            out += [firmware_package(f) for f in items(body, "firmwareList", "GET /firmware")]
        if kind in (None, PackageKind.SOFTWARE):
            body = await self.client.get(PATHS["files"], path_params=self._account)
            found = items(body, "AvailableFilesResponse", "GET /files")
            out += [file_package(f) for f in found]
        for p in out:
            self._packages[p.file_id] = p
        return out

    async def get_package(self, file_id: str) -> PackageInfo:
        kind = PackageKind.SOFTWARE if split_file_id(file_id) else PackageKind.FIRMWARE
        for p in await self._all_packages(kind):
            if p.file_id == file_id:
                return p
        raise PackageNotFound(
            f"ThingSpace account {self.settings.account_name} has no firmware or file "
            f"{file_id!r}; firmware is named as in GET /firmware, files as NAME@VERSION"
        )

    async def find_packages(
        self,
        *,
        kind: PackageKind | None = None,
        version: str | None = None,
        device_type: str | None = None,
        model: str | None = None,
        manufacturer_name: str | None = None,
    ) -> AsyncIterator[PackageInfo]:
        for p in await self._all_packages(kind):
            if (
                (version is None or p.version == version)
                and (not device_type or p.device_type == device_type)
                and (model is None or p.model == model)
                and (manufacturer_name is None or p.manufacturer_name == manufacturer_name)
            ):
                yield p

    # -- groups and devices --------------------------------------------------------------

    async def list_groups(self, *, name: str | None = None) -> AsyncIterator[DeviceGroup]:
        """The FOTA API has no device groups: always empty."""
        for _ in ():
            yield DeviceGroup("", "")

    async def group_members(self, group_id: str) -> AsyncIterator[str]:
        raise GroupNotFound(
            f"ThingSpace has no device groups (asked for {group_id!r}); list the devices' "
            "IMEIs in targets.devices or targets.devices_file"
        )
        yield ""  # pragma: no cover

    async def devices(
        self, *, device_type: str | None = None, status: str | None = None
    ) -> AsyncIterator[DeviceInfo]:
        """Every device of the account (v1 device list, paged by IMEI). ThingSpace has no
        device types or online status here: a filter on either matches no device."""
        start = "0"
        while True:
            body = await self.client.get(
                PATHS["v1_devices"], path_params={**self._account, "startIndex": start}
            )
            page = items(body, "deviceList", "GET /devices")
            for d in page:
                info = device_info(d)
                if (not device_type or info.device_type == device_type) and (
                    not status or info.status == status.upper()
                ):
                    yield info
            last = body.get("lastSeenDeviceId") if isinstance(body, dict) else None
            if not page or not body.get("hasMoreData") or not last or str(last) == start:
                return
            start = str(last)

    async def get_device(self, device_id: str) -> DeviceInfo:
        """One device, found by paging the account's device list (ThingSpace has no
        single-device read in the FOTA API; the engine never calls this per device)."""
        async for info in self.devices():
            if info.device_id == device_id:
                return info
        raise DeviceNotFound(
            f"no device with IMEI {device_id!r} in ThingSpace account "
            f"{self.settings.account_name}; check the IMEI"
        )

    # -- tasks ---------------------------------------------------------------------------

    def schedule(self, kind: PackageKind, policy: TaskPolicy) -> Schedule:
        """The dates and hour windows a task with ``policy`` would be sent with now."""
        return schedule_for(
            kind, policy, now=self.client.clock.now(), campaign_days=self.settings.campaign_days
        )

    def policy_problem(self, kind: PackageKind, policy: TaskPolicy) -> str | None:
        """Why ThingSpace would refuse a task of ``kind`` with ``policy`` now (e.g. hours on
        a FOTA v1 firmware upgrade, which is scheduled by date only), or None."""
        try:
            self.schedule(kind, policy)
        except InvalidPolicy as exc:
            return exc.message
        return None

    def describe_window(
        self,
        kind: PackageKind,
        start: pendulum.DateTime,
        end: pendulum.DateTime,
        install: tuple[pendulum.DateTime, pendulum.DateTime] | None = None,
    ) -> str:
        """The dates and UTC hours a task with this window is sent with, or why not."""
        i_start, i_end = install if install is not None else (None, None)
        try:
            schedule = schedule_for(
                kind,
                TaskPolicy(
                    ExecuteType.CUSTOM, start, end, install_start=i_start, install_end=i_end
                ),
                now=start,
                campaign_days=self.settings.campaign_days,
            )
        except InvalidPolicy as exc:
            return f"cannot be sent: {exc.message}"
        return schedule_note(schedule)

    async def create_upgrade_task(
        self,
        *,
        kind: PackageKind,
        file_id: str,
        device_ids: Sequence[str],
        policy: TaskPolicy,
    ) -> str:
        devices = task_targets(
            device_ids, limit=MAX_DEVICES_PER_TASK, taker="fleetwave sends ThingSpace"
        )
        schedule = self.schedule(kind, policy)
        if kind is PackageKind.FIRMWARE:
            package = self._packages.get(file_id) or await self.get_package(file_id)
            body: dict[str, Any] = {
                "accountName": self.settings.account_name,
                "firmwareName": file_id,
                "firmwareTo": package.version,
                "startDate": schedule.start_date.isoformat(),
                "endDate": schedule.end_date.isoformat(),
                "deviceList": devices,
            }
            answer = await self._create(PATHS["upgrades"], body, devices)
            version, path = 1, PATHS["upgrades"]
        else:
            name_version = split_file_id(file_id)
            if name_version is None:
                raise PackageNotFound(
                    f"{file_id!r} is not a ThingSpace file id (NAME@VERSION from GET /files)"
                )
            package = self._packages.get(file_id) or await self.get_package(file_id)
            windows = schedule.hour_windows()
            body = {
                "campaignName": f"fleetwave-{file_id}-{self.client.clock.now().int_timestamp}",
                "fileName": name_version[0],
                "fileVersion": name_version[1],
                "distributionType": package.protocol_type or "HTTP",
                "startDate": schedule.start_date.isoformat(),
                "endDate": schedule.end_date.isoformat(),
                "downloadAfterDate": schedule.start_date.isoformat(),
                "installAfterDate": schedule.start_date.isoformat(),
                "deviceList": devices,
            }
            if windows:
                body["downloadTimeWindowList"] = windows
            if schedule.install_windows():
                body["installTimeWindowList"] = schedule.install_windows()
            answer = await self._create(PATHS["file_campaign"], body, devices, self._account)
            version, path = 2, PATHS["file_campaign"]
        platform_id = answer.get("id") if isinstance(answer, dict) else None
        if not platform_id:
            raise OutcomeUnknown(
                "ThingSpace accepted the upgrade but its answer has no id; reconcile through "
                "the devices' upgrade history",
                method="POST",
                path=path,
            )
        operation_id = operation_id_of(version, str(platform_id))
        log.info(
            "created %s upgrade %s for %d devices, %s",
            kind.value,
            operation_id,
            len(devices),
            schedule_note(schedule),
        )
        return operation_id

    async def _create(
        self,
        path: str,
        body: dict[str, Any],
        devices: list[str],
        path_params: Mapping[str, str] | None = None,
    ) -> Any:
        """Send a create; a refusal caused by one device it names becomes
        :class:`DevicesRefused` (nothing was created: the rest may be sent again)."""
        try:
            return await self.client.send("POST", path, json_body=body, path_params=path_params)
        except RequestRejected as exc:
            narrowed = refused_devices(exc, devices)
            if narrowed is not None:
                raise narrowed from exc
            raise

    def _split(self, operation_id: str) -> tuple[int, str]:
        split = split_operation_id(operation_id)
        if split is None:
            raise TaskNotFound(
                f"{operation_id!r} is not a ThingSpace upgrade of fleetwave's (v1:ID or v2:ID)"
            )
        return split

    async def _v1_upgrade(self, upgrade_id: str) -> Mapping[str, Any]:
        body = await self.client.get(
            PATHS["upgrade"], path_params={**self._account, "upgradeId": upgrade_id}
        )
        if not isinstance(body, dict):
            raise TaskNotFound(f"ThingSpace has no upgrade {upgrade_id!r}")
        return body

    async def _v2_campaign(self, campaign_id: str) -> Mapping[str, Any]:
        body = await self.client.get(
            PATHS["campaign"], path_params={**self._account, "campaignId": campaign_id}
        )
        if not isinstance(body, dict):
            raise TaskNotFound(f"ThingSpace has no campaign {campaign_id!r}")
        return body

    async def _v2_devices(self, campaign_id: str) -> AsyncIterator[Mapping[str, Any]]:
        last: str | None = None
        where = "GET campaign devices"
        while True:
            body = await self.client.get(
                PATHS["campaign_devices"],
                path_params={**self._account, "campaignId": campaign_id},
                params={"lastSeenDeviceId": last},
            )
            page = items(body, "deviceList", where)
            for d in page:
                yield d
            nxt = body.get("lastSeenDeviceId") if isinstance(body, dict) else None
            if not page or not body.get("hasMoreData") or not nxt or str(nxt) == last:
                return
            last = str(nxt)

    async def get_task(self, operation_id: str) -> PlatformTask:
        version, platform_id = self._split(operation_id)
        if version == 1:
            return v1_task(await self._v1_upgrade(platform_id), "GET upgrade")
        campaign = await self._v2_campaign(platform_id)
        devices = [d async for d in self._v2_devices(platform_id)]
        return v2_task(campaign, devices, "GET campaign")

    async def list_tasks(
        self,
        *,
        kind: PackageKind | None = None,
        state: TaskState | None = None,
        device_id: str | None = None,
    ) -> AsyncIterator[PlatformTask]:
        """With a device: its upgrade history (one call per API) and each upgrade in it;
        without: the upgrades (v1 reports) and campaigns (v2 list) of the live statuses, or
        every status for ``state=None``/``FINISHED``."""
        kinds = [kind] if kind is not None else list(PackageKind)
        for k in kinds:
            async for op in self._operation_ids(k, state, device_id):
                try:
                    task = await self.get_task(op)
                except NotFound:
                    continue
                if (state is None or task.state is state) and (
                    device_id is None or device_id in task.device_ids
                ):
                    yield task

    async def _operation_ids(
        self, kind: PackageKind, state: TaskState | None, device_id: str | None
    ) -> AsyncIterator[str]:
        version = 1 if kind is PackageKind.FIRMWARE else 2
        seen: set[str] = set()
        if device_id is not None:
            template = PATHS["v1_history" if version == 1 else "v2_history"]
            body = await self.client.get(
                template, path_params={**self._account, "deviceId": device_id}
            )
            for h in items(body, "history", f"GET {template}"):
                pid = h.get("id") or h.get("campaignId") or h.get("upgradeId")
                if pid and str(pid) not in seen:
                    seen.add(str(pid))
                    yield operation_id_of(version, str(pid))
            return
        statuses = (
            live_statuses(version)
            if state in (TaskState.PENDING, TaskState.RUNNING)
            else (*live_statuses(version), *final_statuses(version))
        )
        for status in statuses:
            if version == 1:
                async for pid in self._v1_report_ids(status):
                    if pid not in seen:
                        seen.add(pid)
                        yield operation_id_of(1, pid)
            else:
                async for pid in self._v2_campaign_ids(status):
                    if pid not in seen:
                        seen.add(pid)
                        yield operation_id_of(2, pid)

    async def _v1_report_ids(self, status: str) -> AsyncIterator[str]:
        start = "0"
        while True:
            body = await self.client.get(
                PATHS["v1_reports"],
                path_params={**self._account, "status": status, "startIndex": start},
            )
            page = items(body, "reportList", "GET /reports by status")
            for r in page:
                pid = r.get("campaignId") or r.get("id") or r.get("upgradeId")
                if pid:
                    yield str(pid)
            last = body.get("lastSeenUpgradeId") if isinstance(body, dict) else None
            if not page or not body.get("hasMoreFlag") or not last or str(last) == start:
                return
            start = str(last)

    async def _v2_campaign_ids(self, status: str) -> AsyncIterator[str]:
        last: str | None = None
        while True:
            body = await self.client.get(
                PATHS["campaigns"],
                path_params=self._account,
                params={"campaignStatus": status, "lastSeenCampaignId": last},
            )
            page = items(body, "campaignList", "GET campaigns by status")
            for c in page:
                yield str(field(c, "id", "GET campaigns by status"))
            nxt = body.get("lastSeenCampaignId") if isinstance(body, dict) else None
            if not page or not body.get("hasMoreData") or not nxt or str(nxt) == last:
                return
            last = str(nxt)

    async def task_progress(self, tasks: Sequence[TaskRef]) -> Mapping[str, TaskProgress]:
        """One read per v1 upgrade; the device pages (and, unless every device is final,
        the campaign) per v2 campaign. Finished and unknown tasks are left out."""
        out: dict[str, TaskProgress] = {}
        for ref in tasks:
            try:
                version, platform_id = self._split(ref.operation_id)
                if version == 1:
                    task = v1_task(await self._v1_upgrade(platform_id), "GET upgrade")
                else:
                    devices = [d async for d in self._v2_devices(platform_id)]
                    if devices and all(
                        device_outcome(d.get("status"), reason=reason_of(d)).is_final
                        for d in devices
                    ):
                        campaign: Mapping[str, Any] = {"id": platform_id, "status": ""}
                    else:
                        campaign = await self._v2_campaign(platform_id)
                    task = v2_task(campaign, devices, "GET campaign")
            except NotFound:
                continue
            if task.state is not TaskState.FINISHED:
                out[ref.operation_id] = TaskProgress(ref.operation_id, task.state, task.counts)
        return out

    async def task_results(self, operation_id: str) -> AsyncIterator[SubtaskResult]:
        version, platform_id = self._split(operation_id)
        if version == 1:
            cancelled = self._cancelled_results(operation_id)
            if cancelled is not None:
                for r in cancelled:
                    yield r
                return
            for r in v1_results(await self._v1_upgrade(platform_id), "GET upgrade"):
                yield r
            return
        campaign = await self._v2_campaign(platform_id)
        final = is_final_task_status(campaign.get("status"))
        target = campaign.get("fileVersion") or campaign.get("softwareTo")
        async for d in self._v2_devices(platform_id):
            detail = reason_of(d)
            outcome = device_outcome(d.get("status"), task_final=final, reason=detail)
            yield SubtaskResult(
                device_id=str(field(d, "deviceId", "GET campaign devices")),
                outcome=outcome,
                detail=detail,
                target_version=target,
                current_version=target if outcome.value == "succeeded" else None,
            )

    async def cancel_task(self, operation_id: str) -> bool:
        """Cancel an upgrade or campaign that has not started. True when ThingSpace
        cancelled it; False when it had started or ended (ThingSpace refuses then).

        A v1 upgrade is read first (its status says whether it started; cancelled, it is
        gone from every read): the devices of the ones cancelled here read as CANCELLED
        for the rest of this process. After a restart, such an upgrade has vanished.
        """
        version, platform_id = self._split(operation_id)
        devices: tuple[str, ...] = ()
        if version == 1:
            try:
                task = v1_task(await self._v1_upgrade(platform_id), "GET upgrade")
            except NotFound:
                return False
            if task.state is not TaskState.PENDING:
                return False
            devices = task.device_ids
        template = PATHS["upgrade" if version == 1 else "campaign"]
        key = "upgradeId" if version == 1 else "campaignId"
        try:
            await self.client.send(
                "DELETE",
                template,
                path_params={**self._account, key: platform_id},
                replay_safe=True,  # cancelling twice asks for the same end state
            )
        except RequestRejected as exc:
            log.info("ThingSpace did not cancel %s: %s", operation_id, exc)
            return False
        if version == 1:
            self._cancelled[operation_id] = devices
        log.info("cancelled %s before it started", operation_id)
        return True

    def _cancelled_results(self, operation_id: str) -> list[SubtaskResult] | None:
        devices = self._cancelled.get(operation_id)
        if devices is None:
            return None
        return [
            SubtaskResult(d, DeviceOutcome.CANCELLED, "cancelled before it started")
            for d in devices
        ]

    # -- push ----------------------------------------------------------------------------

    async def subscribe_upgrade_events(self, kind: PackageKind, callback_url: str) -> None:
        """Register the account's callback of ``kind``'s API (v1 service ``Fota``; v2)."""
        if not callback_url.startswith("https://") and not callback_url.startswith("http://"):
            scheme = urlsplit(callback_url).scheme or "no scheme"
            raise RequestRejected(f"the callback URL must start with https://, not {scheme!r}")
        if kind is PackageKind.FIRMWARE:
            body: dict[str, Any] = {"name": V1_CALLBACK_NAME, "url": callback_url}
            template = PATHS["v1_callbacks"]
        else:
            body = {"url": callback_url}
            template = PATHS["v2_callbacks"]
        # registering the same URL again replaces it: safe to replay
        await self.client.send(
            "POST", template, json_body=body, path_params=self._account, replay_safe=True
        )

    def parse_push(self, body: bytes) -> list[UpgradeEvent]:
        """The upgrade events in one callback body (:mod:`.push`)."""
        return parse_push_body(body, received_at=self.client.clock.now())

    # -- bookkeeping ---------------------------------------------------------------------

    def call_counts(self) -> Mapping[str, int]:
        return self.client.call_counts()

    async def aclose(self) -> None:
        await self.client.aclose()

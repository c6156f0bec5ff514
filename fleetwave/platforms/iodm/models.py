"""Pydantic v2 models of the IoDM wire format, tolerant of the platform's documented quirks.

Unknown fields are ignored; numbers may arrive as strings (``"expiresIn": "3600"``); a
subtask page may be keyed ``date`` instead of ``data``; ``extendInfo`` stands in for
``extendPara`` (both are read, also as a JSON string); statuses come in any case
(``FAIL``, ``failed``); times use ``yyyyMMdd'T'HHmmss'Z'`` and become UTC pendulum DateTimes.
"""

from __future__ import annotations

import enum
import json
import logging
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import pendulum
from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from .timefmt import parse_iodm_time

__all__ = [
    "CategoryInfo",
    "DeviceGroupInfo",
    "DeviceIdPage",
    "DeviceInfoQuery",
    "DevicePage",
    "DeviceRecord",
    "GroupPage",
    "IoDMStatus",
    "OperateDevices",
    "OperatePolicy",
    "OperationInfo",
    "OperationPage",
    "OperationStatistic",
    "PackagePage",
    "Page",
    "SubOperationInfo",
    "SubOperationPage",
    "TokenResponse",
    "normalise_status",
]

log = logging.getLogger(__name__)


class IoDMStatus(enum.StrEnum):
    """Status of an IoDM operation (task) or subOperation (one device), normalised to lower
    case; the adapter maps it onto the neutral TaskState and DeviceOutcome."""

    WAIT = "wait"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAIL = "fail"
    STOP = "stop"
    TIMEOUT = "timeout"

    @property
    def is_final(self) -> bool:
        return self not in (IoDMStatus.WAIT, IoDMStatus.PROCESSING)


_STATUS_WORDS: dict[str, IoDMStatus] = {
    "wait": IoDMStatus.WAIT,
    "waiting": IoDMStatus.WAIT,
    "pending": IoDMStatus.WAIT,
    "processing": IoDMStatus.PROCESSING,
    "running": IoDMStatus.PROCESSING,
    "in_progress": IoDMStatus.PROCESSING,
    "success": IoDMStatus.SUCCESS,
    "succeeded": IoDMStatus.SUCCESS,
    "successful": IoDMStatus.SUCCESS,
    "fail": IoDMStatus.FAIL,
    "failed": IoDMStatus.FAIL,
    "failure": IoDMStatus.FAIL,
    "stop": IoDMStatus.STOP,
    "stopped": IoDMStatus.STOP,
    "timeout": IoDMStatus.TIMEOUT,
    "timed_out": IoDMStatus.TIMEOUT,
}


def normalise_status(value: Any) -> IoDMStatus | None:
    """Map a wire status in any case (``FAIL``, ``failed``, ``Success``) to a IoDMStatus.

    Unknown words give None (logged), so one odd value does not fail a whole page.
    """
    if value is None or isinstance(value, IoDMStatus):
        return value
    word = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    if not word:
        return None
    status = _STATUS_WORDS.get(word)
    if status is None:
        log.warning("IoDM sent an unknown task status %r; treating it as unknown", value)
    return status


def _time(value: Any) -> pendulum.DateTime | None:
    if value is None or isinstance(value, pendulum.DateTime):
        return value
    try:
        return parse_iodm_time(str(value))
    except ValueError:
        log.warning("IoDM sent an unreadable time %r; ignoring it", value)
        return None


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def _int_or_zero(value: Any) -> int:
    if value is None or value == "":
        return 0
    return int(value)


def _str_map(value: Any) -> dict[str, str | None]:
    """A string map from an object, or from a JSON string holding one (the SDKs' JsonString)."""
    if isinstance(value, str) and value.strip():
        try:
            value = json.loads(value)
        except ValueError:
            log.warning("IoDM sent an unreadable extension map %r; ignoring it", value[:80])
            return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): None if v is None else str(v) for k, v in value.items()}


def _merge_extend(data: Any) -> Any:
    """Read ``extendPara`` and ``extendInfo`` as one map when a body carries both.

    The reference's tables name a subtask's map ``extendPara``, its example and the SDKs
    ``extendInfo``; a value in ``extendPara`` wins, a null there does not hide one in
    ``extendInfo``.
    """
    if not isinstance(data, dict) or "extendPara" not in data or "extendInfo" not in data:
        return data
    merged = _str_map(data["extendInfo"])
    for k, v in _str_map(data["extendPara"]).items():
        if v is not None or k not in merged:
            merged[k] = v
    return {**data, "extendPara": merged}


def _list_or_empty(value: Any) -> Any:
    return [] if value is None else value


WireTime = Annotated[pendulum.DateTime | None, BeforeValidator(_time)]
WireStatus = Annotated[IoDMStatus | None, BeforeValidator(normalise_status)]
WireStr = Annotated[str | None, BeforeValidator(_str_or_none)]
WireCount = Annotated[int, BeforeValidator(_int_or_zero)]
WireMap = Annotated[dict[str, str | None], BeforeValidator(_str_map)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, arbitrary_types_allowed=True)


class TokenResponse(_Wire):
    """Answer of login and refreshToken. Tokens are kept out of repr."""

    access_token: str = Field(alias="accessToken", repr=False)
    refresh_token: str | None = Field(default=None, alias="refreshToken", repr=False)
    expires_in: int = Field(default=3600, alias="expiresIn")
    token_type: str | None = Field(default=None, alias="tokenType")
    scope: str | None = None


class CategoryInfo(_Wire):
    """One version package (``GET /category`` item or ``GET /category/{fileId}``)."""

    file_id: str = Field(alias="fileId")
    name: WireStr = None
    version: WireStr = None
    file_type: WireStr = Field(default=None, alias="fileType")
    device_type: WireStr = Field(default=None, alias="deviceType")
    model: WireStr = None
    manufacturer_name: WireStr = Field(
        default=None, validation_alias=AliasChoices("manufacturerName", "manufactureName")
    )
    protocol_type: WireStr = Field(default=None, alias="protocolType")
    description: WireStr = None
    upload_time: WireTime = Field(default=None, alias="uploadTime")


class DeviceInfoQuery(_Wire):
    """The ``deviceInfo`` part of a device."""

    name: WireStr = None
    manufacturer_name: WireStr = Field(default=None, alias="manufacturerName")
    device_type: WireStr = Field(default=None, alias="deviceType")
    model: WireStr = None
    sw_version: WireStr = Field(default=None, alias="swVersion")
    fw_version: WireStr = Field(default=None, alias="fwVersion")
    protocol_type: WireStr = Field(default=None, alias="protocolType")
    status: WireStr = None


class DeviceRecord(_Wire):
    """One device of ``GET /devices`` or ``GET /devices/{deviceId}``."""

    device_id: str = Field(alias="deviceId")
    gateway_id: WireStr = Field(default=None, alias="gatewayId")
    create_time: WireTime = Field(default=None, alias="createTime")
    device_info: DeviceInfoQuery = Field(default_factory=DeviceInfoQuery, alias="deviceInfo")


class DeviceGroupInfo(_Wire):
    """One device group of ``GET /devGroups``."""

    id: str
    name: str
    description: WireStr = None
    cur_dev_num: int | None = Field(default=None, alias="curDevNum")
    max_dev_num: int | None = Field(default=None, alias="maxDevNum")


class OperateDevices(_Wire):
    """A task's targets."""

    device_groups: Annotated[list[str], BeforeValidator(_list_or_empty)] = Field(
        default_factory=list, alias="deviceGroups"
    )
    device_type: WireStr = Field(default=None, alias="deviceType")
    model: WireStr = None
    manufacturer_name: WireStr = Field(default=None, alias="manufacturerName")
    devices: Annotated[list[str], BeforeValidator(_list_or_empty)] = Field(default_factory=list)


class OperatePolicy(_Wire):
    """A task's execution policy as the platform reports it."""

    execute_type: WireStr = Field(default=None, alias="executeType")
    start_time: WireTime = Field(default=None, alias="startTime")
    end_time: WireTime = Field(default=None, alias="endTime")
    retry_type: bool | None = Field(default=None, alias="retryType")
    retry_times: int | None = Field(default=None, alias="retryTimes")


class OperationStatistic(_Wire):
    """``staResult``: device counts per status."""

    total: WireCount = 0
    wait: WireCount = 0
    processing: WireCount = 0
    success: WireCount = 0
    fail: WireCount = 0
    stop: WireCount = 0
    timeout: WireCount = 0


class OperationInfo(_Wire):
    """One upgrade task (``GET /operations/{operationId}`` or a task-list item)."""

    operation_id: str = Field(alias="operationId")
    create_time: WireTime = Field(default=None, alias="createTime")
    start_time: WireTime = Field(default=None, alias="startTime")
    stop_time: WireTime = Field(default=None, alias="stopTime")
    operate_type: WireStr = Field(
        default=None, validation_alias=AliasChoices("operateType", "operationType")
    )
    targets: Annotated[OperateDevices, BeforeValidator(lambda v: {} if v is None else v)] = Field(
        default_factory=OperateDevices
    )
    policy: OperatePolicy | None = None
    status: WireStatus = None
    sta_result: Annotated[OperationStatistic, BeforeValidator(lambda v: {} if v is None else v)] = (
        Field(default_factory=OperationStatistic, alias="staResult")
    )
    extend_para: WireMap = Field(
        default_factory=dict, validation_alias=AliasChoices("extendPara", "extendInfo")
    )

    @model_validator(mode="before")
    @classmethod
    def _both_extend_maps(cls, data: Any) -> Any:
        return _merge_extend(data)


class SubOperationInfo(_Wire):
    """One device's subtask."""

    sub_operation_id: WireStr = Field(default=None, alias="subOperationId")
    create_time: WireTime = Field(default=None, alias="createTime")
    start_time: WireTime = Field(default=None, alias="startTime")
    stop_time: WireTime = Field(default=None, alias="stopTime")
    operate_type: WireStr = Field(default=None, alias="operateType")
    device_id: str = Field(alias="deviceId")
    status: WireStatus = None
    detail_info: WireStr = Field(default=None, alias="detailInfo")
    extend_para: WireMap = Field(
        default_factory=dict, validation_alias=AliasChoices("extendPara", "extendInfo")
    )

    @model_validator(mode="before")
    @classmethod
    def _both_extend_maps(cls, data: Any) -> Any:
        return _merge_extend(data)


T = TypeVar("T")


class Page(_Wire, Generic[T]):
    """One page of a listing; ``items`` is read from the first of ``list_keys`` the body holds."""

    #: The keys an endpoint may put its list under, in the order they are tried.
    list_keys: ClassVar[tuple[str, ...]] = ()

    total_count: int | None = Field(default=None, alias="totalCount")
    page_no: int | None = Field(default=None, alias="pageNo")
    page_size: int | None = Field(default=None, alias="pageSize")
    items: Annotated[list[T], BeforeValidator(_list_or_empty)] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _items_from_list_key(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in cls.list_keys:
                if key in data:
                    return {**data, "items": data[key]}
        return data


class PackagePage(Page[CategoryInfo]):
    list_keys = ("data", "date", "list")


class OperationPage(Page[OperationInfo]):
    list_keys = ("data", "date", "list")


class SubOperationPage(Page[SubOperationInfo]):
    list_keys = ("data", "date", "list")


class DevicePage(Page[DeviceRecord]):
    list_keys = ("devices", "data", "list")


class DeviceIdPage(Page[str]):
    list_keys = ("deviceIds", "data", "list")


class GroupPage(Page[DeviceGroupInfo]):
    list_keys = ("list", "data", "devGroups")

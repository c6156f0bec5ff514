"""Wire-format quirks and local checks, on httpx.MockTransport (no platform needed)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pendulum
import pytest

from fleetwave.clock import ManualClock
from fleetwave.platforms.base import (
    DeviceOutcome,
    ExecuteType,
    PackageKind,
    TaskPolicy,
    TaskState,
)
from fleetwave.platforms.errors import (
    GroupNotFound,
    InvalidPolicy,
    PlatformError,
    RequestRejected,
    TooManyTargets,
)
from fleetwave.platforms.iodm import IoDMPlatform, IoDMSettings, reset_limiters
from fleetwave.platforms.iodm.models import (
    IoDMStatus,
    OperationInfo,
    SubOperationPage,
    TokenResponse,
)

Handler = Callable[[httpx.Request], httpx.Response]
LOGIN = {"accessToken": "tok-abcdef", "refreshToken": "ref-abcdef", "expiresIn": "3600"}


def platform_with(handler: Handler, **overrides: object) -> IoDMPlatform:
    reset_limiters()
    values: dict[str, object] = {
        "base_url": "https://iodm.test:8743",
        "app_id": "app",
        "secret": "secret-xyz",
        "rate_limit": 0,
    }
    values.update(overrides)

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/login"):
            return httpx.Response(200, json=LOGIN)
        return handler(request)

    return IoDMPlatform(
        IoDMSettings(**values),  # type: ignore[arg-type]
        clock=ManualClock(),
        transport=httpx.MockTransport(route),
    )


def test_token_numbers_as_strings() -> None:
    t = TokenResponse.model_validate(LOGIN | {"scope": "default", "extra": 1})
    assert t.expires_in == 3600
    assert "tok-abcdef" not in repr(t)


def test_documented_task_example_with_uppercase_status_and_string_counts() -> None:
    op = OperationInfo.model_validate(
        {
            "operationId": "op1",
            "createTime": "20151212T121212Z",
            "stopTime": None,
            "operateType": "software_upgrade",
            "targets": {"deviceGroups": None, "devices": ["d1"]},
            "policy": None,
            "status": "FAIL",
            "staResult": {"wait": "0", "processing": 0, "success": 0, "fail": "1"},
            "extendPara": {"fileVersion": "V1.1.10"},
            "somethingNew": {"ignored": True},
        }
    )
    assert op.status is IoDMStatus.FAIL
    assert op.sta_result.fail == 1
    assert op.create_time == pendulum.datetime(2015, 12, 12, 12, 12, 12, tz="UTC")
    assert op.extend_para == {"fileVersion": "V1.1.10"}


async def test_subtask_page_keyed_date_with_extend_info() -> None:
    # the documented subOperations example: "date" instead of "data", "extendInfo"
    body = {
        "totalCount": "2",
        "pageNo": 0,
        "pageSize": 100,
        "date": [
            {
                "subOperationId": "s1",
                "deviceId": "d1",
                "status": "FAIL",
                "detailInfo": "no protocol service",
                "extendInfo": {"curVersion": "V1.1.10", "sourceVersion": None},
            },
            {"deviceId": "d2", "status": "Success", "extendPara": {"targetVersion": "2"}},
        ],
    }
    page = SubOperationPage.model_validate(body)
    assert [s.device_id for s in page.items] == ["d1", "d2"]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["pageSize"] == "100"
        return httpx.Response(200, json=body)

    async with platform_with(handler) as p:
        results = [r async for r in p.subtasks("op1")]
    assert [(r.device_id, r.outcome) for r in results] == [
        ("d1", DeviceOutcome.FAILED),
        ("d2", DeviceOutcome.SUCCEEDED),
    ]
    assert results[0].current_version == "V1.1.10"
    assert results[1].target_version == "2"


async def test_paging_follows_a_platform_that_caps_the_page_size() -> None:
    ids = [f"d{i}" for i in range(23)]
    asked: list[tuple[int, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        no, size = int(request.url.params["pageNo"]), int(request.url.params["pageSize"])
        asked.append((no, size))
        size = min(size, 10)  # the platform only gives 10 a page
        chunk = ids[no * size : (no + 1) * size]
        return httpx.Response(
            200,
            json={"totalCount": 23, "pageNo": no, "pageSize": size, "deviceIds": chunk},
        )

    async with platform_with(handler) as p:
        got = [d async for d in p.group_members("g1")]
    assert got == ids
    assert asked == [(0, 1000), (1, 10), (2, 10)]


async def test_paging_without_total_stops_at_a_short_page() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        no = int(request.url.params["pageNo"])
        items = [{"id": f"g{no}-{i}", "name": f"n{no}{i}"} for i in range(100 if no < 2 else 7)]
        return httpx.Response(200, json={"list": items})

    async with platform_with(handler) as p:
        groups = [g async for g in p.list_groups()]
    assert len(groups) == 207
    assert p.call_counts()["GET /iocm/app/devgroup/v1.3.0/devGroups"] == 3


async def test_error_reported_with_http_200_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"error_code": "100603", "error_desc": "The device group is not existed."}
        )

    async with platform_with(handler) as p:
        with pytest.raises(GroupNotFound, match="100603"):
            [d async for d in p.group_members("nope")]


async def test_create_task_wire_body_and_local_checks() -> None:
    sent: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        assert request.headers["app_key"] == "app"
        assert request.headers["authorization"] == "Bearer tok-abcdef"
        return httpx.Response(200, json={"operationId": "op-9"})

    start = pendulum.datetime(2026, 3, 29, 3, 0, tz="Europe/Berlin")
    policy = TaskPolicy(
        execute_type=ExecuteType.CUSTOM,
        start_time=start,
        end_time=start.add(hours=2),
        retry_times=3,
    )
    async with platform_with(handler) as p:
        op = await p.create_upgrade_task(
            kind=PackageKind.SOFTWARE, file_id="f1", device_ids=["a", "b"], policy=policy
        )
        assert op == "op-9"
        assert sent == [
            {
                "fileId": "f1",
                "targets": {"devices": ["a", "b"]},
                "policy": {
                    "executeType": "custom",
                    "startTime": "20260329T010000Z",
                    "endTime": "20260329T030000Z",
                    "retryType": True,
                    "retryTimes": 3,
                },
            }
        ]
        assert p.call_counts()["POST /iodm/northbound/v1.5.0/operations/softwareUpgrade"] == 1
        bad: list[tuple[dict[str, object], type[PlatformError]]] = [
            ({"device_ids": [f"d{i}" for i in range(257)]}, TooManyTargets),
            ({"device_ids": []}, RequestRejected),
            ({"device_ids": ["a", "a"]}, RequestRejected),
            ({"policy": TaskPolicy(retry_times=6)}, InvalidPolicy),
            ({"policy": TaskPolicy(execute_type=ExecuteType.CUSTOM)}, InvalidPolicy),
            (
                {
                    "policy": TaskPolicy(
                        execute_type=ExecuteType.CUSTOM, start_time=start, end_time=start
                    )
                },
                InvalidPolicy,
            ),
            ({"policy": TaskPolicy(start_time=start)}, InvalidPolicy),
        ]
        for override, cls in bad:
            kwargs: dict[str, object] = {
                "kind": PackageKind.FIRMWARE,
                "file_id": "f1",
                "device_ids": ["a"],
                "policy": TaskPolicy(),
            }
            kwargs.update(override)
            with pytest.raises(cls):
                await p.create_upgrade_task(**kwargs)  # type: ignore[arg-type]
        assert len(sent) == 1  # none of the bad ones cost a call


async def test_prefect_limit_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.concurrency.asyncio as pca

    async def missing(*args: object, **kwargs: object) -> None:
        raise pca.ConcurrencySlotAcquisitionError("limit not found")

    monkeypatch.setattr(pca, "rate_limit", missing)

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no call may pass without a slot")

    async with platform_with(handler, prefect_rate_limit="iodm-budget") as p:
        with pytest.raises(PlatformError, match="prefect gcl create iodm-budget"):
            await p.get_device("d1")


async def test_prefect_limit_is_taken_for_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.concurrency.asyncio as pca

    taken: list[tuple[object, ...]] = []

    async def fake(names: object, occupy: int = 1, **kwargs: object) -> None:
        taken.append((names, occupy))

    monkeypatch.setattr(pca, "rate_limit", fake)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"deviceId": "d1", "deviceInfo": {"model": "M"}})

    async with platform_with(handler, prefect_rate_limit="iodm-budget") as p:
        await p.get_device("d1")
        await p.get_device("d1")
    assert taken == [("iodm-budget", 1)] * 3  # login + 2 calls


async def test_status_filters_use_documented_words_and_timeout_is_filtered_locally() -> None:
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        rows = [
            {"operationId": "a", "deviceId": "d1", "status": "TIMEOUT"},
            {"operationId": "b", "deviceId": "d2", "status": "fail"},
        ]
        return httpx.Response(200, json={"totalCount": 2, "data": rows})

    async with platform_with(handler) as p:
        running = [t.operation_id async for t in p.list_tasks(state=TaskState.RUNNING)]
        finished = [t.operation_id async for t in p.list_tasks(state=TaskState.FINISHED)]
        timed_out = [s.device_id async for s in p.subtasks("op", status=IoDMStatus.TIMEOUT)]
    assert running == []  # the answer says fail and timeout: filtered again locally
    assert finished == ["a", "b"]
    assert timed_out == ["d1"]
    assert asked[0]["operationStatus"] == "processing"  # the task list's word
    assert "operationStatus" not in asked[1]  # finished is any final status
    assert "subOperationStatus" not in asked[2]


@pytest.mark.parametrize(
    ("error", "replayed"),
    [
        (httpx.ConnectError("refused"), True),  # never left: safe to send again
        (httpx.ConnectTimeout("slow connect"), True),
        (httpx.ReadTimeout("no answer"), False),  # may have been done: OutcomeUnknown
        (httpx.RemoteProtocolError("server disconnected"), False),
        (httpx.ReadError("reset"), False),
        (httpx.WriteError("broken pipe"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
async def test_create_task_is_replayed_only_when_it_never_left(
    error: Exception, replayed: bool
) -> None:
    from fleetwave.platforms.errors import OutcomeUnknown

    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise error
        return httpx.Response(200, json={"operationId": "op-1"})

    async with platform_with(handler) as p:
        create = p.create_upgrade_task(
            kind=PackageKind.FIRMWARE, file_id="f", device_ids=["a"], policy=TaskPolicy()
        )
        if replayed:
            assert await create == "op-1"
            assert attempts == 2
        else:
            with pytest.raises(OutcomeUnknown, match=type(error).__name__):
                await create
            assert attempts == 1


async def test_reads_retry_timeouts_then_give_up_with_a_clear_error() -> None:
    from fleetwave.platforms.errors import PlatformUnavailable

    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ReadTimeout("no answer")

    async with platform_with(handler, max_attempts=4) as p:
        with pytest.raises(PlatformUnavailable, match="after 4 attempts") as caught:
            await p.get_task("op-1")
    assert attempts == 4
    assert caught.value.path == "/iodm/northbound/v1.5.0/operations/op-1"


async def test_a_bad_callback_url_is_refused_without_showing_its_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    async with platform_with(handler) as p:
        with pytest.raises(RequestRejected, match="must start with http") as err:
            await p.subscribe("fwUpgradeResultNotify", "ftp://host/notify/tok-s3cr3t")
    assert "tok-s3cr3t" not in str(err.value) and "'ftp'" in str(err.value)

"""The spellings of Huawei's SDKs on the wire: ``callbackurl`` on subscribe, ``extendInfo``
(also as a JSON string, the SDKs' ``JsonString``) beside ``extendPara``."""

from __future__ import annotations

import json

import httpx

from fleetwave.platforms.iodm.models import OperationInfo, SubOperationInfo
from tests.unit.client.test_wire import platform_with


async def test_subscribe_sends_callbackurl_as_the_official_sdks_do() -> None:
    bodies: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/iodm/app/sub/v1.1.0/subscribe"
        bodies.append(json.loads(request.content))
        return httpx.Response(200)

    async with platform_with(handler) as p:
        await p.subscribe("fwUpgradeResultNotify", "https://receiver.example:8443/push/t0k")
    assert bodies == [
        {
            "notifyType": "fwUpgradeResultNotify",
            "callbackurl": "https://receiver.example:8443/push/t0k",
        }
    ]


def test_extend_info_as_a_json_string() -> None:
    sub = SubOperationInfo.model_validate(
        {
            "deviceId": "d1",
            "status": "success",
            "extendInfo": json.dumps(
                {"curVersion": "V1.1.10", "sourceVersion": "V1.1.9", "upgradeTime": None}
            ),
        }
    )
    assert sub.extend_para == {
        "curVersion": "V1.1.10",
        "sourceVersion": "V1.1.9",
        "upgradeTime": None,
    }
    task = OperationInfo.model_validate(
        {"operationId": "op1", "extendPara": '{"fileVersion": "V2"}'}
    )
    assert task.extend_para == {"fileVersion": "V2"}


def test_both_extension_maps_are_read_and_a_null_hides_nothing() -> None:
    sub = SubOperationInfo.model_validate(
        {
            "deviceId": "d1",
            "extendPara": {"curVersion": None, "targetVersion": "2.0"},
            "extendInfo": {"curVersion": "1.9", "sourceVersion": "1.9", "targetVersion": "x"},
        }
    )
    assert sub.extend_para == {"curVersion": "1.9", "sourceVersion": "1.9", "targetVersion": "2.0"}


def test_an_unreadable_extension_string_is_ignored() -> None:
    sub = SubOperationInfo.model_validate({"deviceId": "d1", "extendInfo": "{not json"})
    assert sub.extend_para == {}

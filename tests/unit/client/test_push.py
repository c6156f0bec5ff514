"""Parsing the four documented IoDM notification bodies (API reference 1.6.7.15-18) into
neutral upgrade events (``IoDMPlatform.parse_push``)."""

from __future__ import annotations

import json
from typing import Any

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwave.platforms.base import (
    DeviceOutcome,
    PackageKind,
    PushParseError,
    UpgradeEventKind,
    UpgradeStep,
)
from fleetwave.platforms.iodm import IoDMPlatform, IoDMSettings
from fleetwave.platforms.iodm.push import NOTIFY_TYPES, parse_notification, parse_push_body

NOW = pendulum.datetime(2026, 1, 5, tz="UTC")

# the documented request examples, with the placeholders filled in
SW_STATE = {
    "notifyType": "swUpgradeStateChangeNotify",
    "deviceId": "dev-1",
    "appId": "app",
    "operationId": "op-1",
    "subOperationId": "sub-1",
    "swUpgradeState": "downloading",
}
SW_RESULT = {
    "notifyType": "swUpgradeResultNotify",
    "deviceId": "dev-1",
    "appId": "app",
    "operationId": "op-1",
    "subOperationId": "sub-1",
    "curVersion": "1.3",
    "targetVersion": "1.5",
    "sourceVersion": "1.0",
    "swUpgradeResult": "SUCCESS",
    "upgradeTime": "20260105T010203Z",
    "resultDesc": "ok",
    "errorCode": "0",
    "description": "",
}
FW_STATE = {
    "notifyType": "fwUpgradeStateChangeNotify",
    "deviceId": "dev-1",
    "appId": "app",
    "operationId": "op-1",
    "subOperationId": "sub-1",
    "step": "1",
    "stepDesc": "downloading",
}
FW_RESULT = {
    "notifyType": "fwUpgradeResultNotify",
    "deviceId": "dev-1",
    "appId": "app",
    "operationId": "op-1",
    "subOperationId": "sub-1",
    "curVersion": "1.6",
    "targetVersion": "1.6",
    "sourceVersion": "1.3",
    "status": "SUCCESS",
    "statusDesc": "SUCCESS",
    "upgradeTime": "1234",
}


def parse(body: Any):  # type: ignore[no-untyped-def]
    return parse_notification(body, received_at=NOW)


def test_software_state_change() -> None:
    e = parse(SW_STATE)
    assert (e.kind, e.package_kind, e.step) == (
        UpgradeEventKind.STEP,
        PackageKind.SOFTWARE,
        UpgradeStep.DOWNLOADING,
    )
    assert (e.device_id, e.operation_id) == ("dev-1", "op-1")
    assert e.source == "swUpgradeStateChangeNotify"
    assert e.outcome is None and e.received_at == NOW


def test_software_result_with_versions_and_time() -> None:
    e = parse(SW_RESULT)
    assert e.kind is UpgradeEventKind.RESULT and e.outcome is DeviceOutcome.SUCCEEDED
    assert (e.current_version, e.target_version, e.source_version) == ("1.3", "1.5", "1.0")
    assert e.reported_at == pendulum.datetime(2026, 1, 5, 1, 2, 3, tz="UTC")
    assert e.detail is None  # details are kept for failures only


def test_software_failure_detail() -> None:
    e = parse({**SW_RESULT, "swUpgradeResult": "FAIL", "description": "flash write error"})
    assert e.outcome is DeviceOutcome.FAILED and e.detail == "flash write error"
    e = parse({**SW_RESULT, "swUpgradeResult": "fail", "description": "", "resultDesc": "bad"})
    assert e.detail == "bad"


@pytest.mark.parametrize(
    ("step", "desc", "state"),
    [
        ("0", "idle", UpgradeStep.IDLE),
        ("1", "downloading", UpgradeStep.DOWNLOADING),
        (2, "downloaded", UpgradeStep.DOWNLOADED),  # a number where a string is documented
        ("3", None, UpgradeStep.INSTALLING),
        (None, "UPDATING", UpgradeStep.INSTALLING),
        ("9", "Downloaded", UpgradeStep.DOWNLOADED),  # unknown step, description still readable
    ],
)
def test_firmware_steps(step: Any, desc: Any, state: UpgradeStep) -> None:
    body = {**FW_STATE, "step": step, "stepDesc": desc}
    e = parse(body)
    assert e.step is state and e.package_kind is PackageKind.FIRMWARE


def test_firmware_result_duration_is_not_a_time() -> None:
    e = parse(FW_RESULT)
    assert e.outcome is DeviceOutcome.SUCCEEDED and e.current_version == "1.6"
    assert e.reported_at is None
    e = parse({**FW_RESULT, "status": "FAIL", "statusDesc": "FAIL: battery low"})
    assert e.outcome is DeviceOutcome.FAILED and e.detail == "FAIL: battery low"


def test_tolerant_of_case_and_unknown_fields() -> None:
    body = {
        "NOTIFYTYPE": "fwupgraderesultnotify",
        "DeviceId": " dev-9 ",
        "operationid": "op-9",
        "status": "success",
        "somethingNew": {"nested": [1, 2]},
    }
    e = parse(body)
    assert e.source == "fwUpgradeResultNotify"
    assert (e.device_id, e.operation_id, e.outcome) == ("dev-9", "op-9", DeviceOutcome.SUCCEEDED)
    assert e.current_version is None


def test_operation_id_is_optional() -> None:
    body = dict(SW_STATE)
    del body["operationId"]
    assert parse(body).operation_id is None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "JSON object"),
        ("text", "JSON object"),
        ({}, "'notifyType' is missing"),
        ({**SW_STATE, "notifyType": "deviceAdded"}, "not one of"),
        ({**SW_STATE, "deviceId": ""}, "'deviceId' is missing"),
        ({**SW_STATE, "deviceId": {"a": 1}}, "'deviceId' must be a string"),
        ({**SW_STATE, "deviceId": "x" * 200}, "longer than 128"),
        ({**SW_STATE, "deviceId": "a\nb"}, "control characters"),
        ({**SW_STATE, "swUpgradeState": "rebooting"}, "'swUpgradeState' is 'rebooting'"),
        ({**FW_STATE, "step": "7", "stepDesc": "?"}, "step must be 0, 1, 2 or 3"),
        ({**SW_RESULT, "swUpgradeResult": "MAYBE"}, "not SUCCESS or FAIL"),
        ({**FW_RESULT, "status": None}, "'status' is missing"),
    ],
)
def test_bad_bodies_say_what_is_wrong(body: Any, words: str) -> None:
    with pytest.raises(PushParseError, match=words.replace("(", r"\(")):
        parse(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=6),
    max_leaves=8,
)
field_names = st.sampled_from(
    [
        "notifyType",
        "deviceId",
        "operationId",
        "subOperationId",
        "swUpgradeState",
        "step",
        "stepDesc",
        "swUpgradeResult",
        "status",
        "curVersion",
        "upgradeTime",
        "description",
    ]
)
near_valid = st.fixed_dictionaries(
    {"notifyType": st.sampled_from([*NOTIFY_TYPES, "FWUPGRADERESULTNOTIFY", "x"])},
    optional={"deviceId": json_values, "step": json_values, "status": json_values},
)
near_valid = st.tuples(near_valid, st.dictionaries(field_names, json_values, max_size=6)).map(
    lambda pair: {**pair[1], **pair[0]}
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(json_values, near_valid))
def test_any_json_parses_or_raises_notification_error(body: Any) -> None:
    try:
        e = parse(json.loads(json.dumps(body)))
    except PushParseError as exc:
        assert str(exc)
    else:
        assert e.device_id and len(e.device_id) <= 128
        assert (e.step is None) != (e.outcome is None)


def test_parse_push_reads_bytes_and_refuses_what_is_not_json() -> None:
    platform = IoDMPlatform(IoDMSettings(base_url="http://iodm.invalid", app_id="a", secret="s"))
    [e] = platform.parse_push(json.dumps(FW_RESULT).encode())
    assert (e.device_id, e.outcome, e.package_kind) == (
        "dev-1",
        DeviceOutcome.SUCCEEDED,
        PackageKind.FIRMWARE,
    )
    for raw in (b"{not json", b"\xff\xfe", b""):
        with pytest.raises(PushParseError, match="the body is not JSON"):
            parse_push_body(raw)

"""ThingSpace driver pure parts: windows as dates plus hours, vocabulary, wire reading,
error mapping, callbacks, settings and redaction (no network)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pendulum
import pytest

from fleetwave.clock import ManualClock
from fleetwave.errors import UserError
from fleetwave.platforms.base import (
    DeviceOutcome,
    ExecuteType,
    PackageKind,
    PushParseError,
    TaskPolicy,
    TaskState,
    UpgradeEventKind,
)
from fleetwave.platforms.errors import (
    AuthFailed,
    DevicesRefused,
    InvalidPolicy,
    PackageNotFound,
    PlatformError,
    RequestRejected,
    TargetMismatch,
    TaskNotFound,
    Throttled,
    TooManyTargets,
)
from fleetwave.platforms.redact import REDACTED, redact
from fleetwave.platforms.thingspace import ThingSpaceSettings, schedule_for, schedule_note
from fleetwave.platforms.thingspace.auth import Credentials
from fleetwave.platforms.thingspace.errors import (
    error_fields,
    error_for,
    is_session_refusal,
    is_token_refusal,
    refused_devices,
)
from fleetwave.platforms.thingspace.push import parse_push_body
from fleetwave.platforms.thingspace.vocab import device_outcome, task_state
from fleetwave.platforms.thingspace.wire import (
    device_info,
    file_package,
    firmware_package,
    split_file_id,
    split_operation_id,
    v1_task,
    v2_task,
)

NOW = pendulum.datetime(2026, 12, 2, 9, 20, tz="UTC")


def _custom(start: pendulum.DateTime, end: pendulum.DateTime) -> TaskPolicy:
    return TaskPolicy(ExecuteType.CUSTOM, start, end)


# -- windows -------------------------------------------------------------------------------


def test_a_window_within_one_day_is_that_date_and_its_hours() -> None:
    s = schedule_for(
        PackageKind.SOFTWARE,
        _custom(NOW.add(hours=1).replace(minute=0), NOW.replace(hour=14, minute=45)),
        now=NOW,
        campaign_days=7,
    )
    assert (s.start_date, s.end_date) == (date(2026, 12, 2), date(2026, 12, 2))
    assert s.hours == ((10, 14),)  # the end is rounded down to the hour
    assert s.hour_windows() == [{"startTime": 10, "endTime": 14}]
    assert not s.cut_at_midnight
    assert schedule_note(s) == "on 2026-12-02, 10:00-14:00 UTC"


def test_a_window_to_midnight_ends_at_hour_24() -> None:
    s = schedule_for(
        PackageKind.SOFTWARE,
        _custom(NOW.replace(hour=22, minute=0), NOW.add(days=1).replace(hour=0, minute=0)),
        now=NOW,
        campaign_days=7,
    )
    assert s.hours == ((22, 24),) and s.start_date == s.end_date == date(2026, 12, 2)


def test_a_window_across_midnight_is_cut_there_and_says_so() -> None:
    # 22:00 Berlin .. 05:00 Berlin = 21:00 .. 04:00 UTC
    start = pendulum.datetime(2026, 12, 2, 22, tz="Europe/Berlin")
    s = schedule_for(
        PackageKind.SOFTWARE, _custom(start, start.add(hours=7)), now=NOW, campaign_days=7
    )
    assert s.hours == ((21, 24),) and s.cut_at_midnight
    assert s.closes == pendulum.datetime(2026, 12, 3, tz="UTC")
    assert "cut at midnight UTC" in schedule_note(s)


def test_whole_days_are_dates_without_hours_for_both_apis() -> None:
    start = pendulum.datetime(2026, 12, 5, tz="UTC")
    for kind in PackageKind:
        s = schedule_for(kind, _custom(start, start.add(days=2)), now=NOW, campaign_days=7)
        assert (s.start_date, s.end_date, s.hours) == (date(2026, 12, 5), date(2026, 12, 6), ())


def test_firmware_windows_that_are_not_whole_days_are_refused() -> None:
    with pytest.raises(InvalidPolicy, match="FOTA v1 firmware upgrades are scheduled by date"):
        schedule_for(
            PackageKind.FIRMWARE,
            _custom(NOW.replace(hour=22, minute=0), NOW.replace(hour=23, minute=0)),
            now=NOW,
            campaign_days=7,
        )


def test_a_window_without_a_whole_hour_is_refused() -> None:
    with pytest.raises(InvalidPolicy, match="no whole UTC hour"):
        schedule_for(
            PackageKind.SOFTWARE,
            _custom(NOW.replace(hour=10, minute=10), NOW.replace(hour=10, minute=55)),
            now=NOW,
            campaign_days=7,
        )


def _with_install(
    start: pendulum.DateTime,
    end: pendulum.DateTime,
    i_start: pendulum.DateTime,
    i_end: pendulum.DateTime,
) -> TaskPolicy:
    return TaskPolicy(ExecuteType.CUSTOM, start, end, install_start=i_start, install_end=i_end)


def test_install_hours_are_sent_apart_from_the_download_hours() -> None:
    day = NOW.replace(minute=0)
    s = schedule_for(
        PackageKind.SOFTWARE,
        _with_install(
            day.replace(hour=10),
            day.replace(hour=13),
            day.replace(hour=12, minute=30),
            day.replace(hour=16),
        ),
        now=NOW,
        campaign_days=7,
    )
    assert s.hour_windows() == [{"startTime": 10, "endTime": 13}]
    assert s.install_windows() == [{"startTime": 13, "endTime": 16}]  # start rounded up
    assert s.closes == day.replace(hour=16)  # the task may run until installing ends
    assert schedule_note(s) == "on 2026-12-02, download 10:00-13:00 UTC, install 13:00-16:00 UTC"
    # without install hours the window is both (as before)
    plain = schedule_for(
        PackageKind.SOFTWARE,
        _custom(day.replace(hour=10), day.replace(hour=13)),
        now=NOW,
        campaign_days=7,
    )
    assert plain.install_windows() == plain.hour_windows() == [{"startTime": 10, "endTime": 13}]


@pytest.mark.parametrize(
    ("kind", "i_start", "i_end", "message"),
    [
        (PackageKind.FIRMWARE, 0, 24, "FOTA v1 firmware upgrades take no hours"),
        (PackageKind.SOFTWARE, 14.25, 14.75, "holds no whole UTC hour"),
        (PackageKind.SOFTWARE, 22, 26, "crosses midnight UTC"),
        (PackageKind.SOFTWARE, 26, 28, "not on the download window's UTC day"),
    ],
)
def test_install_hours_that_cannot_be_sent_are_refused(
    kind: PackageKind, i_start: float, i_end: float, message: str
) -> None:
    day = pendulum.datetime(2026, 12, 3, tz="UTC")
    start, end = (
        (day, day.add(days=1))
        if kind is PackageKind.FIRMWARE
        else (day.add(hours=10), day.add(hours=13))
    )
    policy = _with_install(start, end, day.add(hours=i_start), day.add(hours=i_end))
    with pytest.raises(InvalidPolicy, match=message):
        schedule_for(kind, policy, now=NOW, campaign_days=7)


def test_now_runs_from_today_for_the_campaign_days() -> None:
    s = schedule_for(PackageKind.FIRMWARE, TaskPolicy(), now=NOW, campaign_days=3)
    assert (s.start_date, s.end_date, s.hours) == (date(2026, 12, 2), date(2026, 12, 5), ())
    with pytest.raises(InvalidPolicy):
        schedule_for(
            PackageKind.FIRMWARE,
            TaskPolicy(ExecuteType.NOW, NOW, NOW.add(hours=2)),
            now=NOW,
            campaign_days=3,
        )


# -- vocabulary and wire -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "final", "outcome"),
    [
        ("RequestPending", False, DeviceOutcome.PENDING),
        ("Accepted", False, DeviceOutcome.PENDING),
        ("InProgress", False, DeviceOutcome.RUNNING),
        ("UpgradeSuccess", False, DeviceOutcome.SUCCEEDED),
        ("UpgradeFailed", False, DeviceOutcome.FAILED),
        ("DeviceRejected", False, DeviceOutcome.FAILED),
        ("Cancelled", False, DeviceOutcome.CANCELLED),
        ("SomethingNew", False, DeviceOutcome.RUNNING),
        ("Queued", True, DeviceOutcome.TIMED_OUT),
        ("UpgradeSuccess", True, DeviceOutcome.SUCCEEDED),
    ],
)
def test_device_statuses(status: str, final: bool, outcome: DeviceOutcome) -> None:
    assert device_outcome(status, task_final=final) is outcome


def test_v1_upgrade_reads_as_a_task() -> None:
    body = {
        "id": "e3a8d88a",
        "status": "InProgress",
        "firmwareTo": "1.5.0",
        "startDate": "2026-12-02",
        "deviceList": [
            {"deviceId": "1", "status": "UpgradeSuccess"},
            {"deviceId": "2", "status": "InProgress"},
            {"deviceId": "3", "status": "Queued"},
        ],
    }
    task = v1_task(body, "GET upgrade")
    assert task.operation_id == "v1:e3a8d88a" and task.kind is PackageKind.FIRMWARE
    assert task.state is TaskState.RUNNING and task.file_version == "1.5.0"
    assert (task.counts.succeeded, task.counts.running, task.counts.pending) == (1, 1, 1)
    ended = v1_task({**body, "status": "Finished"}, "GET upgrade")
    assert ended.state is TaskState.FINISHED and ended.counts.timed_out == 2
    assert split_operation_id(task.operation_id) == (1, "e3a8d88a")
    assert split_operation_id("42") is None


def test_v2_campaign_reads_as_a_task() -> None:
    task = v2_task(
        {"id": "c1", "status": "CampaignScheduled", "fileVersion": "2.1.0"},
        [{"deviceId": "1", "status": "Accepted"}, {"deviceId": "2", "status": "Accepted"}],
        "GET campaign",
    )
    assert task.operation_id == "v2:c1" and task.state is TaskState.PENDING
    assert task.counts.pending == 2 and task.kind is PackageKind.SOFTWARE
    assert task_state("CampaignCancelled", task.counts) is TaskState.FINISHED


def test_file_ids_carry_name_and_version() -> None:
    p = file_package({"fileName": "meter-cfg", "fileVersion": "2.1.0", "make": "A", "model": "M"})
    assert p.file_id == "meter-cfg@2.1.0" and split_file_id(p.file_id) == ("meter-cfg", "2.1.0")
    assert split_file_id("FOTA_Model-A_01To02") is None


# -- errors --------------------------------------------------------------------------------


def test_error_bodies_and_gateway_faults() -> None:
    assert error_fields({"errorCode": "FOTA.REQUEST.InvalidDate", "errorMessage": "bad"}) == (
        "FOTA.REQUEST.InvalidDate",
        "bad",
    )
    code, _ = error_fields({"fault": {"code": "900901", "message": "Invalid Credentials"}})
    assert code == "900901" and is_token_refusal(401, code)
    assert not is_token_refusal(400, "FOTA.REQUEST.InvalidDate")
    assert is_session_refusal(400, "REQUEST_FAILED.SessionToken.Expired", "expired")


@pytest.mark.parametrize(
    ("status", "code", "message", "cls"),
    [
        (400, "FOTA.REQUEST.InvalidDate", "startDate is in the past", InvalidPolicy),
        (400, "FOTA.FIRMWARE.NotFound", "firmware not found", PackageNotFound),
        (400, "FOTA.UPGRADE.NotFound", "upgrade not found", TaskNotFound),
        (400, "FOTA.DEVICE.MakeModelMismatch", "devices differ", TargetMismatch),
        (429, None, None, Throttled),
        (401, "UnauthorizedAccess", None, AuthFailed),
        (400, "FOTA.REQUEST.Whatever", "odd", RequestRejected),
        (400, "SoftwareManagementService.INPUT_INVALID.UpgradeId", "not found", TaskNotFound),
        (400, "SoftwareManagementService.INPUT_INVALID.FirmwareName", "nope", PackageNotFound),
        (400, "SoftwareManagementService.INPUT_INVALID.StartDate", "past", InvalidPolicy),
        (400, "SoftwareManagementService.INPUT_INVALID.TimeWindow", "0-25", InvalidPolicy),
        (400, "SoftwareManagementService.REQUEST_FAILED.DeviceMismatch", "x", TargetMismatch),
        (400, "SoftwareManagementService.INPUT_INVALID.DeviceList", "over 10,000", TooManyTargets),
        (400, "SoftwareManagementService.REQUEST_FAILED.RequestStarted", "x", RequestRejected),
        (400, "UnifiedWebService.SECURITY.UserLocked", "locked", AuthFailed),
    ],
)
def test_error_mapping(status: int, code: str | None, message: str | None, cls: type) -> None:
    err = error_for(status_code=status, code=code, description=message, method="POST", path="/x")
    assert type(err) is cls
    assert "ThingSpace refused the call" in str(err) and "[POST /x]" in str(err)


def _refusal(code: str, message: str) -> PlatformError:
    return error_for(
        status_code=400,
        code=f"SoftwareManagementService.REQUEST_FAILED.{code}",
        description=message,
        method="POST",
        path="/api/fota/v1/upgrades",
    )


def test_a_refusal_naming_one_sent_device_is_narrowed_to_it() -> None:
    sent = ["351234560000010", "351234560000135", "351234560000028"]
    err = refused_devices(
        _refusal("DeviceNotEligible", "device 351234560000135 is not FOTA eligible"), sent
    )
    assert isinstance(err, DevicesRefused) and isinstance(err, TargetMismatch)
    assert err.device_ids == ("351234560000135",)
    assert "351234560000135" in str(err) and "DeviceNotEligible" in str(err)
    # two devices named, a device not sent, or another code: the whole request is at fault
    both = "devices 351234560000135 and 351234560000028 differ"
    assert refused_devices(_refusal("DeviceMismatch", both), sent) is None
    other = "device 351234560009999 has firmware 1.5.0"
    assert refused_devices(_refusal("DeviceMismatch", other), sent) is None
    started = "upgrade of 351234560000135 has started"
    assert refused_devices(_refusal("RequestStarted", started), sent) is None


def test_eligibility_and_from_version_are_read_in_neutral_terms() -> None:
    row = {"deviceId": "351234560000135", "model": "WM-200", "make": "Aquaflow"}
    assert device_info({**row, "fotaEligible": True}).ineligible is None
    assert device_info(row).ineligible is None  # not said: not assumed ineligible
    why = device_info({**row, "fotaEligible": False}).ineligible
    assert why is not None and "not FOTA eligible" in why
    image = {"firmwareName": "FW_A", "fromVersion": "1.4.2", "toVersion": "1.5.0"}
    assert firmware_package(image).from_version == "1.4.2"
    assert firmware_package({**image, "fromVersion": None}).from_version is None


# -- callbacks -----------------------------------------------------------------------------


def test_callbacks_become_results_and_steps() -> None:
    body = json.dumps(
        {
            "upgradeId": "u1",
            "firmwareTo": "1.5.0",
            "deviceList": [
                {"deviceId": "1", "status": "UpgradeSuccess"},
                {"deviceId": "2", "status": "UpgradeFailed", "reason": "battery low"},
                {"deviceId": "3", "status": "Downloading"},
            ],
        }
    ).encode()
    events = parse_push_body(body, received_at=NOW)
    by_device = {e.device_id: e for e in events}
    assert by_device["1"].kind is UpgradeEventKind.RESULT
    assert by_device["1"].outcome is DeviceOutcome.SUCCEEDED
    assert by_device["1"].current_version == "1.5.0" and by_device["1"].operation_id == "v1:u1"
    assert by_device["2"].outcome is DeviceOutcome.FAILED and by_device["2"].detail == "battery low"
    assert by_device["3"].kind is UpgradeEventKind.STEP
    v2 = parse_push_body(
        b'[{"campaignId": "c9", "deviceId": "4", "status": "UpgradeSuccess"}]', received_at=NOW
    )
    assert v2[0].package_kind is PackageKind.SOFTWARE and v2[0].operation_id == "v2:c9"
    for bad in (b"{not json", b'{"status": "UpgradeSuccess"}', b"[1]"):
        with pytest.raises(PushParseError):
            parse_push_body(bad, received_at=NOW)


# -- settings and redaction ----------------------------------------------------------------

_ENV = {
    "THINGSPACE_LAB_BASE_URL": "https://ts.example.com",
    "THINGSPACE_LAB_KEY": "key-AAAA1111",
    "THINGSPACE_LAB_SECRET": "secret-BBBB2222",
    "THINGSPACE_LAB_USERNAME": "m2m-user",
    "THINGSPACE_LAB_PASSWORD": "pass-CCCC3333",
    "THINGSPACE_LAB_ACCOUNT_NAME": "0000123456-00001",
    "THINGSPACE_LAB_RATE_LIMIT": "30",
}


def test_settings_from_a_profile() -> None:
    s = ThingSpaceSettings.from_env("lab", _ENV)
    assert s.base_url == "https://ts.example.com" and s.rate_limit == 30
    text = repr(s)
    for secret in ("key-AAAA1111", "secret-BBBB2222", "pass-CCCC3333"):
        assert secret not in text


def test_settings_errors_name_the_variable() -> None:
    with pytest.raises(UserError, match="THINGSPACE_PROD_BASE_URL is unset"):
        ThingSpaceSettings.from_env("prod", {})
    env = {k: v for k, v in _ENV.items() if not k.endswith("PASSWORD")}
    with pytest.raises(UserError, match="THINGSPACE_LAB_PASSWORD is unset"):
        ThingSpaceSettings.from_env("lab", env)
    for bad in ("http://127.0.0.1:", "https://ts.example.com/api", "ts.example.com"):
        with pytest.raises(UserError, match="THINGSPACE_LAB_BASE_URL"):
            ThingSpaceSettings.from_env("lab", {**_ENV, "THINGSPACE_LAB_BASE_URL": bad})
    ok = {**_ENV, "THINGSPACE_LAB_BASE_URL": "http://[::1]:8744"}
    assert ThingSpaceSettings.from_env("lab", ok).base_url == "http://[::1]:8744"
    with pytest.raises(UserError, match="THINGSPACE_LAB_RATE_LIMIT"):
        ThingSpaceSettings.from_env("lab", {**_ENV, "THINGSPACE_LAB_RATE_LIMIT": "-1"})
    with pytest.raises(UserError) as caught:
        ThingSpaceSettings.from_env(
            "lab", {**_ENV, "THINGSPACE_LAB_BASE_URL": "https://u:hunter2@ts.example.com"}
        )
    assert "hunter2" not in str(caught.value)


def test_password_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("pass-from-file\n")
    env = {k: v for k, v in _ENV.items() if not k.endswith("PASSWORD")}
    env["THINGSPACE_LAB_PASSWORD_FILE"] = str(f)
    assert ThingSpaceSettings.from_env("lab", env).password.get_secret_value() == "pass-from-file"


def test_key_secret_and_password_are_redacted() -> None:
    s = ThingSpaceSettings.from_env("lab", _ENV)

    async def never(*_: object) -> None:
        raise AssertionError("no call")

    Credentials(s, ManualClock(), never)
    line = "sent key-AAAA1111 secret-BBBB2222 pass-CCCC3333"
    assert redact(line) == f"sent {REDACTED} {REDACTED} {REDACTED}"

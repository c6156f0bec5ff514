"""The consent rules as pure functions: answers, appointments, retries, app reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleetwave.consent.rules import (
    Answer,
    AppReport,
    ConsentAction,
    ConsentErrorCode,
    Refusal,
    decide_answer,
    decide_report,
    http_status,
    upgrade_status,
)
from fleetwave.store.models import ConsentState, DeviceRunStatus

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PERIOD = (NOW - timedelta(days=1), NOW + timedelta(days=6))
WINDOWS = [(NOW + timedelta(hours=13), NOW + timedelta(hours=17))]  # 01:00..05:00 tomorrow
H = timedelta(hours=1)

_S = ConsentState
_A = ConsentAction


def answer(action: ConsentAction, current: ConsentState = _S.AWAITING, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "device_id": "dev-1",
        "action": action,
        "current": current,
        "run_status": DeviceRunStatus.PENDING,
        "run_finished_at": None,
        "answered_at": None,
        "now": NOW,
        "period": PERIOD,
        "windows": WINDOWS,
    }
    args.update(kw)
    return decide_answer(**args)


def code(result: Answer | Refusal) -> ConsentErrorCode:
    assert isinstance(result, Refusal), result
    assert "dev-1" in result.message
    return result.code


def test_confirm_appoint_cancel_from_awaiting() -> None:
    assert answer(_A.CONFIRM) == Answer(_S.CONFIRMED, changed=True)
    start = WINDOWS[0][0]
    got = answer(_A.APPOINT, appoint_start=start, appoint_end=start + H)
    assert got == Answer(_S.APPOINTED, changed=True, appoint_start=start, appoint_end=start + H)
    assert answer(_A.CANCEL) == Answer(_S.DECLINED, changed=True)


def test_replays_change_nothing() -> None:
    assert answer(_A.CONFIRM, _S.CONFIRMED) == Answer(_S.CONFIRMED, changed=False)
    assert answer(_A.CONFIRM, _S.AUTO) == Answer(_S.AUTO, changed=False)
    assert answer(_A.CANCEL, _S.DECLINED) == Answer(_S.DECLINED, changed=False)
    start = WINDOWS[0][0]
    same = answer(
        _A.APPOINT,
        _S.APPOINTED,
        appoint_start=start,
        appoint_end=start + H,
        current_appointment=(start, start + H),
    )
    assert same == Answer(_S.APPOINTED, changed=False)
    moved = answer(
        _A.APPOINT,
        _S.APPOINTED,
        appoint_start=start + H,
        appoint_end=start + 2 * H,
        current_appointment=(start, start + H),
    )
    assert isinstance(moved, Answer) and moved.changed


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, ConsentErrorCode.APPOINTMENT_MISSING),
        (NOW - H, NOW + H, ConsentErrorCode.APPOINTMENT_IN_PAST),
        (NOW, NOW + 2 * H, ConsentErrorCode.APPOINTMENT_IN_PAST),
        (
            WINDOWS[0][0],
            WINDOWS[0][0] + timedelta(minutes=59),
            ConsentErrorCode.APPOINTMENT_TOO_SHORT,
        ),
        (PERIOD[1] - H, PERIOD[1] + H, ConsentErrorCode.APPOINTMENT_OUTSIDE_PERIOD),
        (NOW + 2 * H, NOW + 4 * H, ConsentErrorCode.APPOINTMENT_OUTSIDE_WINDOW),
        (WINDOWS[0][1] - H, WINDOWS[0][1] + H, ConsentErrorCode.APPOINTMENT_OUTSIDE_WINDOW),
    ],
)
def test_bad_appointments(
    start: datetime | None, end: datetime | None, expected: ConsentErrorCode
) -> None:
    got = code(answer(_A.APPOINT, appoint_start=start, appoint_end=end))
    assert got is expected
    assert http_status(got) == 422


def test_appointment_without_windows_may_be_anywhere_in_the_period() -> None:
    got = answer(_A.APPOINT, windows=[], appoint_start=NOW + 2 * H, appoint_end=NOW + 3 * H)
    assert isinstance(got, Answer) and got.state is _S.APPOINTED


def test_cancel_after_finish_or_once_sent_is_refused() -> None:
    for status in (DeviceRunStatus.SUCCEEDED, DeviceRunStatus.SKIPPED, DeviceRunStatus.CANCELLED):
        assert code(answer(_A.CANCEL, _S.CONFIRMED, run_status=status)) is (
            ConsentErrorCode.DEVICE_FINISHED
        )
    failed = answer(
        _A.CANCEL, _S.CONFIRMED, run_status=DeviceRunStatus.FAILED, run_finished_at=NOW - H
    )
    assert code(failed) is ConsentErrorCode.DEVICE_FINISHED
    sent = answer(_A.CANCEL, _S.CONFIRMED, run_status=DeviceRunStatus.SUBMITTED)
    assert code(sent) is ConsentErrorCode.DEVICE_UPGRADING
    assert http_status(ConsentErrorCode.DEVICE_UPGRADING) == 409
    assert code(answer(_A.CONFIRM, run_status=DeviceRunStatus.SUCCEEDED)) is (
        ConsentErrorCode.DEVICE_FINISHED
    )


def test_replayed_cancel_after_the_engine_skipped_the_device_is_a_replay() -> None:
    # the engine moves a declined device's run to SKIPPED (or an operator cancels it): the
    # owner's cancel, sent again, is still a replay, not DEVICE_FINISHED
    for status in (DeviceRunStatus.SKIPPED, DeviceRunStatus.CANCELLED):
        got = answer(_A.CANCEL, _S.DECLINED, run_status=status, run_finished_at=NOW - H)
        assert got == Answer(_S.DECLINED, changed=False)
        # confirming a device whose run the engine finished is still refused
        assert code(answer(_A.CONFIRM, _S.DECLINED, run_status=status)) is (
            ConsentErrorCode.DEVICE_FINISHED
        )


def test_confirm_while_sent_is_a_replay_only() -> None:
    sent = DeviceRunStatus.IN_PROGRESS
    assert answer(_A.CONFIRM, _S.CONFIRMED, run_status=sent) == Answer(_S.CONFIRMED, changed=False)
    assert code(answer(_A.CONFIRM, _S.DECLINED, run_status=sent)) is (
        ConsentErrorCode.DEVICE_UPGRADING
    )


def test_retry_after_failure_once_then_replays() -> None:
    failed_at = NOW - H
    first = answer(
        _A.CONFIRM,
        _S.CONFIRMED,
        run_status=DeviceRunStatus.FAILED,
        run_finished_at=failed_at,
        answered_at=NOW - 2 * H,
    )
    assert first == Answer(_S.CONFIRMED, changed=True, retry=True)
    replay = answer(
        _A.CONFIRM,
        _S.CONFIRMED,
        run_status=DeviceRunStatus.FAILED,
        run_finished_at=failed_at,
        answered_at=NOW - timedelta(minutes=5),
    )
    assert replay == Answer(_S.CONFIRMED, changed=False)
    app_failed = answer(_A.CONFIRM, _S.CONFIRMED, run_status=None, app_status="failed")
    assert isinstance(app_failed, Answer) and app_failed.retry


def test_decline_then_confirm_and_expired_and_plan_end() -> None:
    assert answer(_A.CONFIRM, _S.DECLINED) == Answer(_S.CONFIRMED, changed=True)
    assert code(answer(_A.CONFIRM, _S.EXPIRED)) is ConsentErrorCode.CONSENT_EXPIRED
    assert code(answer(_A.CONFIRM, now=PERIOD[1])) is ConsentErrorCode.PLAN_ENDED


def test_app_reports() -> None:
    def report(
        r: AppReport, current: ConsentState, app_status: str | None = None, **kw: Any
    ) -> Any:
        return decide_report(
            device_id="dev-1",
            report=r,
            delivery=kw.get("delivery", "app"),
            current=current,
            app_status=app_status,
        )

    assert code(report(AppReport.CONFIRMED, _S.AWAITING, delivery="platform")) is (
        ConsentErrorCode.NOT_APP_DELIVERED
    )
    assert report(AppReport.CONFIRMED, _S.AWAITING) == Answer(
        _S.CONFIRMED, changed=True, app_status=AppReport.CONFIRMED
    )
    assert code(report(AppReport.DOWNLOADING, _S.AWAITING)) is ConsentErrorCode.NOT_CONSENTED
    assert code(report(AppReport.SUCCEEDED, _S.DECLINED)) is ConsentErrorCode.NOT_CONSENTED
    done = report(AppReport.SUCCEEDED, _S.CONFIRMED, "installing")
    assert done == Answer(_S.CONFIRMED, changed=True, app_status=AppReport.SUCCEEDED)
    replay = report(AppReport.SUCCEEDED, _S.CONFIRMED, "succeeded")
    assert isinstance(replay, Answer) and not replay.changed
    assert code(report(AppReport.FAILED, _S.CONFIRMED, "succeeded")) is (
        ConsentErrorCode.RESULT_ALREADY_FINAL
    )


def test_upgrade_status_words() -> None:
    assert upgrade_status(_S.AWAITING, DeviceRunStatus.PENDING, None) == "awaiting_consent"
    assert upgrade_status(_S.DECLINED, DeviceRunStatus.PENDING, None) == "declined"
    assert upgrade_status(_S.APPOINTED, None, None) == "scheduled"
    assert upgrade_status(_S.CONFIRMED, DeviceRunStatus.SUBMITTED, None) == "upgrading"
    assert upgrade_status(_S.CONFIRMED, DeviceRunStatus.FAILED, None) == "failed"
    assert upgrade_status(_S.AUTO, DeviceRunStatus.SUCCEEDED, None) == "succeeded"
    assert upgrade_status(_S.CONFIRMED, None, "installing") == "upgrading"

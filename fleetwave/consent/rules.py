"""The rules of the end-user consent API as pure functions: may this owner's answer
(confirm, appoint, cancel) or this app report change this device's consent, and to what.

Every refusal carries a stable error code (:class:`ConsentErrorCode`) and a one-line
message naming the device; the API maps codes to HTTP statuses and changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from fleetwave.store.models import ConsentState, DeviceRunStatus

__all__ = [
    "MIN_APPOINTMENT",
    "RELEASED",
    "Answer",
    "AppReport",
    "ConsentAction",
    "ConsentErrorCode",
    "Refusal",
    "decide_answer",
    "decide_report",
    "http_status",
    "upgrade_status",
]

MIN_APPOINTMENT = timedelta(hours=1)
"""The shortest appointed period (the Quectel page: "an interval of at least one hour")."""


class ConsentAction(enum.StrEnum):
    """What an owner answers to a plan."""

    CONFIRM = "confirm"
    APPOINT = "appoint"
    CANCEL = "cancel"


class AppReport(enum.StrEnum):
    """What an app reports for an app-delivered device (``reportUpgradeStatus``)."""

    CONFIRMED = "confirmed"
    """The owner agreed; the app starts downloading."""
    DOWNLOADING = "downloading"
    INSTALLING = "installing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (AppReport.SUCCEEDED, AppReport.FAILED)


class ConsentErrorCode(enum.StrEnum):
    """Stable error codes of the end-user API (each documented in docs/consent-api.md)."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    NOT_OWNER = "NOT_OWNER"
    UNKNOWN_DEVICE = "UNKNOWN_DEVICE"
    NOT_IN_PLAN = "NOT_IN_PLAN"
    INVALID_REQUEST = "INVALID_REQUEST"
    APPOINTMENT_MISSING = "APPOINTMENT_MISSING"
    APPOINTMENT_IN_PAST = "APPOINTMENT_IN_PAST"
    APPOINTMENT_TOO_SHORT = "APPOINTMENT_TOO_SHORT"
    APPOINTMENT_OUTSIDE_PERIOD = "APPOINTMENT_OUTSIDE_PERIOD"
    APPOINTMENT_OUTSIDE_WINDOW = "APPOINTMENT_OUTSIDE_WINDOW"
    PLAN_ENDED = "PLAN_ENDED"
    CONSENT_EXPIRED = "CONSENT_EXPIRED"
    DEVICE_FINISHED = "DEVICE_FINISHED"
    DEVICE_UPGRADING = "DEVICE_UPGRADING"
    NOT_APP_DELIVERED = "NOT_APP_DELIVERED"
    NOT_CONSENTED = "NOT_CONSENTED"
    NOT_RELEASED = "NOT_RELEASED"
    RESULT_ALREADY_FINAL = "RESULT_ALREADY_FINAL"


_HTTP = {
    ConsentErrorCode.UNAUTHENTICATED: 401,
    ConsentErrorCode.NOT_OWNER: 403,
    ConsentErrorCode.UNKNOWN_DEVICE: 404,
    ConsentErrorCode.NOT_IN_PLAN: 404,
    ConsentErrorCode.INVALID_REQUEST: 422,
    ConsentErrorCode.APPOINTMENT_MISSING: 422,
    ConsentErrorCode.APPOINTMENT_IN_PAST: 422,
    ConsentErrorCode.APPOINTMENT_TOO_SHORT: 422,
    ConsentErrorCode.APPOINTMENT_OUTSIDE_PERIOD: 422,
    ConsentErrorCode.APPOINTMENT_OUTSIDE_WINDOW: 422,
}


def http_status(code: ConsentErrorCode) -> int:
    """The HTTP status of an error code (state conflicts are 409)."""
    return _HTTP.get(code, 409)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an answer or a report is refused."""

    code: ConsentErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class Answer:
    """The consent an accepted answer leads to; ``changed`` False means a replay (no write)."""

    state: ConsentState
    changed: bool
    retry: bool = False
    appoint_start: datetime | None = None
    appoint_end: datetime | None = None
    app_status: AppReport | None = None


_SENT = frozenset({DeviceRunStatus.QUEUED, DeviceRunStatus.SUBMITTED, DeviceRunStatus.IN_PROGRESS})
_FAILED = frozenset({DeviceRunStatus.FAILED, DeviceRunStatus.TIMED_OUT})
_DONE = frozenset(
    {
        DeviceRunStatus.SUCCEEDED,
        DeviceRunStatus.SKIPPED,
        DeviceRunStatus.CANCELLED,
        DeviceRunStatus.ROLLING_BACK,
        DeviceRunStatus.ROLLED_BACK,
        DeviceRunStatus.ROLLBACK_FAILED,
    }
)


def _check_appointment(
    device_id: str,
    start: datetime | None,
    end: datetime | None,
    *,
    now: datetime,
    period: tuple[datetime, datetime],
    windows: Sequence[tuple[datetime, datetime]],
) -> Refusal | None:
    if start is None or end is None:
        return Refusal(
            ConsentErrorCode.APPOINTMENT_MISSING,
            f"device {device_id}: an appointment needs appointStart and appointEnd",
        )
    if start <= now:
        return Refusal(
            ConsentErrorCode.APPOINTMENT_IN_PAST,
            f"device {device_id}: the appointment starts at {start.isoformat()}, "
            f"not after now ({now.isoformat()}); choose a later start",
        )
    if end - start < MIN_APPOINTMENT:
        return Refusal(
            ConsentErrorCode.APPOINTMENT_TOO_SHORT,
            f"device {device_id}: the appointment lasts {end - start}, "
            f"shorter than {MIN_APPOINTMENT}; appoint at least one hour",
        )
    if start < period[0] or end > period[1]:
        return Refusal(
            ConsentErrorCode.APPOINTMENT_OUTSIDE_PERIOD,
            f"device {device_id}: the appointment must lie inside the plan period "
            f"{period[0].isoformat()}..{period[1].isoformat()}",
        )
    if windows and not any(ws <= start and end <= we for ws, we in windows):
        return Refusal(
            ConsentErrorCode.APPOINTMENT_OUTSIDE_WINDOW,
            f"device {device_id}: the appointment fits in none of the campaign's windows; "
            "getDeviceUpgradePlan lists them",
        )
    return None


def decide_answer(
    *,
    device_id: str,
    action: ConsentAction,
    current: ConsentState,
    run_status: DeviceRunStatus | None,
    run_finished_at: datetime | None,
    answered_at: datetime | None,
    now: datetime,
    period: tuple[datetime, datetime],
    windows: Sequence[tuple[datetime, datetime]] = (),
    appoint_start: datetime | None = None,
    appoint_end: datetime | None = None,
    app_status: str | None = None,
    current_appointment: tuple[datetime | None, datetime | None] = (None, None),
) -> Answer | Refusal:
    """What an owner's answer does to one device's consent.

    A device not yet sent may be confirmed, appointed or cancelled (a cancel is a decline,
    never a failure); replaying the same answer changes nothing (a replayed cancel too,
    after the engine skipped the declined device). Once sent and unfinished
    it may only be confirmed again (a replay); once its upgrade failed (or its app reported
    a failure), confirming or appointing again is a retry; once finished otherwise nothing
    changes it.
    """
    if current is ConsentState.EXPIRED:
        return Refusal(
            ConsentErrorCode.CONSENT_EXPIRED,
            f"device {device_id}: the campaign stopped waiting for an answer; "
            "it will be offered again in a later campaign",
        )
    if action is ConsentAction.CANCEL and current is ConsentState.DECLINED:
        # a replayed cancel: the decline stands whatever the engine did since (it skips a
        # declined device, which finishes its run); answered as a replay, never refused
        return Answer(current, changed=False)
    failed = run_status in _FAILED or app_status == AppReport.FAILED
    retry_pending = failed and (
        answered_at is not None and run_finished_at is not None and answered_at > run_finished_at
    )
    if run_status in _DONE or app_status == AppReport.SUCCEEDED:
        return Refusal(
            ConsentErrorCode.DEVICE_FINISHED,
            f"device {device_id}: its upgrade already finished "
            f"({run_status.value if run_status else app_status}); nothing to {action.value}",
        )
    if action is ConsentAction.CANCEL:
        if run_status in _SENT:
            return Refusal(
                ConsentErrorCode.DEVICE_UPGRADING,
                f"device {device_id}: the upgrade was already sent; it can no longer be cancelled",
            )
        if failed and not retry_pending:
            return Refusal(
                ConsentErrorCode.DEVICE_FINISHED,
                f"device {device_id}: its upgrade already finished (failed); nothing to cancel",
            )
        return Answer(ConsentState.DECLINED, changed=current is not ConsentState.DECLINED)
    if now >= period[1]:
        return Refusal(
            ConsentErrorCode.PLAN_ENDED,
            f"device {device_id}: the plan period ended at {period[1].isoformat()}",
        )
    target = ConsentState.CONFIRMED if action is ConsentAction.CONFIRM else ConsentState.APPOINTED
    if action is ConsentAction.APPOINT:
        refused = _check_appointment(
            device_id, appoint_start, appoint_end, now=now, period=period, windows=windows
        )
        if refused is not None:
            return refused
    if run_status in _SENT:
        if current.is_consent and action is ConsentAction.CONFIRM:
            return Answer(current, changed=False)
        return Refusal(
            ConsentErrorCode.DEVICE_UPGRADING,
            f"device {device_id}: the upgrade was already sent; wait for its result",
        )
    same = current is target and (
        target is ConsentState.CONFIRMED or current_appointment == (appoint_start, appoint_end)
    )
    if failed and not retry_pending:
        return Answer(
            target, changed=True, retry=True, appoint_start=appoint_start, appoint_end=appoint_end
        )
    if action is ConsentAction.CONFIRM and current in (ConsentState.CONFIRMED, ConsentState.AUTO):
        return Answer(current, changed=False)
    if same:
        return Answer(current, changed=False)
    return Answer(target, changed=True, appoint_start=appoint_start, appoint_end=appoint_end)


def decide_report(
    *,
    device_id: str,
    report: AppReport,
    delivery: str,
    current: ConsentState,
    app_status: str | None,
    released: bool = True,
) -> Answer | Refusal:
    """What an app's status report does for an app-delivered device.

    ``confirmed`` is the owner's consent (as the Quectel page has it); progress reports
    need a consent; a final result is accepted once (the same result again is a replay,
    a different one a conflict) until the owner asks for a retry.
    """
    if delivery != "app":
        return Refusal(
            ConsentErrorCode.NOT_APP_DELIVERED,
            f"device {device_id}: this plan is delivered by the platform, not the app; "
            "use userBatchConfirmUpgrade",
        )
    if current is ConsentState.EXPIRED:
        return Refusal(
            ConsentErrorCode.CONSENT_EXPIRED,
            f"device {device_id}: the campaign stopped waiting for an answer",
        )
    if app_status in (AppReport.SUCCEEDED.value, AppReport.FAILED.value):
        if app_status == report.value:
            return Answer(current, changed=False, app_status=report)
        return Refusal(
            ConsentErrorCode.RESULT_ALREADY_FINAL,
            f"device {device_id}: its result was already reported ({app_status}); "
            "confirm again to retry a failed upgrade",
        )
    if report is AppReport.CONFIRMED:
        state = current if current.is_consent else ConsentState.CONFIRMED
        return Answer(
            state,
            changed=app_status != report.value or state is not current,
            app_status=report,
        )
    if not current.is_consent:
        return Refusal(
            ConsentErrorCode.NOT_CONSENTED,
            f"device {device_id}: no consent yet ({current.value}); report 'confirmed' first",
        )
    if not released:
        return Refusal(
            ConsentErrorCode.NOT_RELEASED,
            f"device {device_id}: the campaign has not released the package to this device "
            "yet (its wave or appointment has not come); poll getFetchPlan",
        )
    return Answer(current, changed=app_status != report.value, app_status=report)


RELEASED = frozenset(
    {
        DeviceRunStatus.SUBMITTED,
        DeviceRunStatus.IN_PROGRESS,
        DeviceRunStatus.TIMED_OUT,
        DeviceRunStatus.SUCCEEDED,
        DeviceRunStatus.FAILED,
    }
)
"""Run statuses of an app-delivered device whose package the engine released to the app."""


def upgrade_status(
    state: ConsentState, run_status: DeviceRunStatus | None, app_status: str | None
) -> str:
    """One word for the app: where the device's upgrade stands, consent included.

    ``awaiting_consent``, ``declined``, ``expired``, ``scheduled`` (consented, not sent yet),
    ``upgrading``, ``succeeded``, ``failed`` or ``not_upgraded`` (skipped or cancelled by
    the operator).
    """
    if app_status in (AppReport.SUCCEEDED.value, AppReport.FAILED.value):
        return app_status
    if app_status in (AppReport.DOWNLOADING.value, AppReport.INSTALLING.value):
        return "upgrading"
    if run_status in (DeviceRunStatus.SUCCEEDED, DeviceRunStatus.ROLLING_BACK):
        return "succeeded"
    if run_status in _FAILED or run_status is DeviceRunStatus.ROLLBACK_FAILED:
        return "failed"
    if run_status is DeviceRunStatus.ROLLED_BACK:
        return "failed"
    if run_status in _SENT:
        return "upgrading"
    if run_status in (DeviceRunStatus.SKIPPED, DeviceRunStatus.CANCELLED):
        return "not_upgraded"
    if state is ConsentState.AWAITING:
        return "awaiting_consent"
    if state is ConsentState.DECLINED:
        return "declined"
    if state is ConsentState.EXPIRED:
        return "expired"
    return "scheduled"

"""Consent in the engine: offering a consent campaign's plan to owners when it is planned,
and, each round, sorting a wave's pending devices by their owners' answers (send now, send
in the appointment's window, wait, or leave out) and picking up owners' retries.

The sorting rule is :func:`fleetwave.engine.decide.consent_bucket`; the store applies it
in SQL (bounded reads, bulk updates), so a round's memory does not grow with the wave.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pendulum
from sqlmodel import Session

from fleetwave import store
from fleetwave.clock import utc_instant
from fleetwave.engine.context import RunContext
from fleetwave.engine.decide import Appointment, ConsentBucket, app_result, consent_states
from fleetwave.engine.targeting import SHOWN
from fleetwave.plan.windows import WindowTooShort, to_policy_window
from fleetwave.platforms.base import ExecuteType, PolicyChecker, TaskPolicy
from fleetwave.spec.model import ConsentTimeoutAction
from fleetwave.store import ConsentState, DeviceRunStatus

__all__ = [
    "ConsentRound",
    "appointment_policy",
    "collect_app_reports",
    "consent_round",
    "hand_to_app",
    "miss_retry_appointments",
    "open_plan",
]

log = logging.getLogger(__name__)

DECLINED_KIND = "consent_declined"
EXPIRED_KIND = "consent_expired"
MISSED_KIND = "consent_appointment_missed"
MISSED_RETRY_KIND = "consent_retry_appointment_missed"


def _event(ctx: RunContext, s: Session, kind: str, now: datetime, data: dict[str, Any]) -> None:
    """An engine event of the campaign, inside the caller's transaction."""
    store.append_event(
        s,
        campaign_id=ctx.campaign_id,
        kind=kind,
        now=now,
        actor="engine",
        flow_run_id=ctx.flow_run_id,
        data=data,
    )


def open_plan(ctx: RunContext, session: Session, device_ids: Iterable[str], now: datetime) -> int:
    """Offer the campaign's upgrade to the owners of ``device_ids`` (inside the planning
    transaction): the plan period from now, the allowed windows inside it."""
    c = ctx.spec.consent
    assert c is not None
    start = utc_instant(now)
    end = start + c.period
    windows: list[tuple[datetime, datetime]] = []
    if ctx.spec.windows is not None:
        for s, e in ctx.spec.schedule().spans(start):
            if s >= end:
                break
            windows.append((max(s, start), min(e, end)))
    return store.open_consent_plan(
        session,
        campaign_id=ctx.campaign_id,
        device_ids=device_ids,
        period_start=start,
        period_end=end,
        windows=windows,
        delivery=c.delivery.value,
        target_version=ctx.package.version,
        package_url=c.package_url,
        package_sha256=c.package_sha256,
        description=ctx.spec.description,
        now=now,
    )


@dataclass
class ConsentRound:
    """What one round may send, read bounded from the store: consented devices by
    attempt, appointment groups, and how many devices the round left out."""

    send: dict[int, list[str]] = field(default_factory=dict)
    """attempt -> devices to send now (owners' retries included)."""
    appointed: dict[Appointment, dict[int, list[str]]] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)
    """``declined`` / ``expired`` -> devices moved out of PENDING this round."""
    retried: int = 0


def consent_round(
    ctx: RunContext,
    wave_index: int,
    now: pendulum.DateTime,
    *,
    limit: int,
    superseded: bool = False,
) -> ConsentRound:
    """Sort the wave's pending devices by consent, in the store (:func:`consent_bucket`
    says which states go where): expire unanswered ones past the timeout; leave declined
    ones out (SKIPPED, never failed) and expired ones too (SKIPPED, or FAILED under
    ``on_timeout: fail``, never sent either way), each in one UPDATE; read at most
    ``limit`` consented devices, ``limit`` appointed ones (earliest appointment first) and
    ``limit`` devices whose owners asked for a retry after a failure. Unanswered devices
    are never read, so memory stays flat however large the wave."""
    c = ctx.spec.consent
    assert c is not None
    out = ConsentRound()
    with ctx.tx() as s:
        plan = store.get_consent_plan(s, campaign_id=ctx.campaign_id)
        timed_out = now >= utc_instant(plan.created_at) + c.answer_timeout

        def states(bucket: ConsentBucket) -> frozenset[ConsentState]:
            return consent_states(bucket, timed_out=timed_out, on_timeout=c.timeout_action)

        if timed_out:
            expired = store.expire_awaiting_consents(s, campaign_id=ctx.campaign_id, now=now)
            if expired:
                _event(
                    ctx,
                    s,
                    "consent_expired",
                    now,
                    {"devices": expired, "on_timeout": c.timeout_action.value},
                )
        expired_status = (
            DeviceRunStatus.FAILED
            if c.timeout_action is ConsentTimeoutAction.FAIL
            else DeviceRunStatus.SKIPPED
        )
        for bucket, status, kind, detail in (
            (
                ConsentBucket.DECLINED,
                DeviceRunStatus.SKIPPED,
                DECLINED_KIND,
                "the owner declined the upgrade",
            ),
            (
                ConsentBucket.EXPIRED,
                expired_status,
                EXPIRED_KIND,
                "no answer from the owner before the timeout",
            ),
        ):
            # only PENDING rows move (a retried or sent device is never re-judged)
            moved = store.leave_out_pending(
                s,
                campaign_id=ctx.campaign_id,
                wave_index=wave_index,
                consent_states=states(bucket),
                status=status,
                failure_kind=kind,
                failure_detail=detail,
                now=now,
            )
            if moved:
                out.left_out[bucket.value] = moved
        missed = store.miss_appointments(
            s,
            campaign_id=ctx.campaign_id,
            wave_index=wave_index,
            failure_kind=MISSED_KIND,
            failure_detail=(
                "the owner's appointment ended before the device could be sent (never sent "
                "outside it); the owner is asked again in a later campaign"
            ),
            now=now,
        )
        if missed:
            out.left_out[MISSED_KIND] = missed
            _event(ctx, s, MISSED_KIND, now, {"count": missed, "wave": wave_index + 1})
            log.warning(
                "%s: wave %d: %d appointed device(s) not sent: their appointment ended first "
                "(skipped, not failed; raise policy.max_inflight_tasks if appointments queue)",
                ctx.spec.name,
                wave_index + 1,
                missed,
            )
        miss_retry_appointments(ctx, s, wave_index, now)
        for device_id, attempt in store.pending_by_consent(
            s,
            campaign_id=ctx.campaign_id,
            wave_index=wave_index,
            consent_states=states(ConsentBucket.SEND),
            limit=limit,
        ):
            out.send.setdefault(attempt, []).append(device_id)
        for a in store.appointed_pending(
            s, campaign_id=ctx.campaign_id, wave_index=wave_index, limit=limit
        ):
            key = (utc_instant(a.start), utc_instant(a.end))
            out.appointed.setdefault(key, {}).setdefault(a.attempt, []).append(a.device_id)
        retried = store.owner_retries(
            s,
            campaign_id=ctx.campaign_id,
            wave_index=wave_index,
            limit=limit,
            superseded=superseded,
        )
    for r in retried:
        if r.appoint_start is not None and r.appoint_end is not None:
            key = (utc_instant(r.appoint_start), utc_instant(r.appoint_end))
            out.appointed.setdefault(key, {}).setdefault(r.attempt, []).append(r.device_id)
        else:
            out.send.setdefault(r.attempt, []).append(r.device_id)
    out.retried = len(retried)
    if retried:
        ctx.event(
            "consent_retries",
            subject=f"wave {wave_index}",
            data={"count": len(retried), "devices": [r.device_id for r in retried[:SHOWN]]},
        )
    if out.left_out:
        log.info("%s: wave %d: consent left out %s", ctx.spec.name, wave_index, out.left_out)
    return out


def miss_retry_appointments(
    ctx: RunContext, s: Session, wave_index: int | None, now: datetime
) -> int:
    """Expire the consent of owners' retries (of one wave, or all with None) whose new
    appointment ended before they could be sent: never sent outside it, the device keeps
    its failed run. One event and one WARNING line when there are any."""
    missed = store.miss_retry_appointments(
        s, campaign_id=ctx.campaign_id, wave_index=wave_index, now=now
    )
    if missed:
        _event(
            ctx,
            s,
            MISSED_RETRY_KIND,
            now,
            {"count": missed, "wave": None if wave_index is None else wave_index + 1},
        )
        log.warning(
            "%s: %d owner retr%s not sent: the new appointment ended first (the device "
            "keeps its failed result; its owner is asked again in a later campaign)",
            ctx.spec.name,
            missed,
            "y" if missed == 1 else "ies",
        )
    return missed


def appointment_policy(
    ctx: RunContext, appointment: Appointment, now: pendulum.DateTime
) -> TaskPolicy | None:
    """A task policy whose platform window is the appointment (None: not sendable yet).

    On a platform without custom windows, or one that cannot keep this window (e.g. a
    platform that schedules by whole days), the devices wait until the appointment opens
    and go at once inside it. An appointment that is over is never sent (None):
    :func:`consent_round` skips its device or expires the owner's retry.
    """
    start, end = appointment
    caps = ctx.platform.capabilities
    retries = ctx.spec.policy.platform_retries
    at_once = TaskPolicy(ExecuteType.NOW, retry_times=retries)
    if end <= now:
        return None
    if ExecuteType.CUSTOM not in caps.execute_types:
        return None if now < start else at_once
    try:
        s, e = to_policy_window(
            start,
            end,
            now=now,
            min_window=caps.min_window,
            granularity=caps.window_granularity,
        )
    except WindowTooShort:  # the platform's rounding leaves too little of it
        return None if now < start else at_once
    booked = TaskPolicy(ExecuteType.CUSTOM, s, e, retries)
    if isinstance(ctx.platform, PolicyChecker) and ctx.platform.policy_problem(
        ctx.package.kind, booked
    ):
        return None if now < start else at_once
    return booked


def hand_to_app(ctx: RunContext, answers: ConsentRound, now: pendulum.DateTime) -> int:
    """App delivery: the consented devices (appointed ones once their appointment opens)
    are released to their apps instead of a platform task (SUBMITTED, one more attempt);
    ``getFetchPlan`` then gives the package. Returns how many were released."""
    ids = [d for group in answers.send.values() for d in group]
    for (start, _end), by_attempt in answers.appointed.items():
        if start <= now:
            ids += [d for group in by_attempt.values() for d in group]
    if not ids:
        return 0
    with ctx.tx() as s:
        released = store.release_to_app(s, campaign_id=ctx.campaign_id, device_ids=ids, now=now)
        _event(ctx, s, "released_to_app", now, {"devices": released})
    return released


def collect_app_reports(ctx: RunContext, now: pendulum.DateTime) -> dict[str, int]:
    """App delivery: move released devices by their apps' reports (started, succeeded,
    failed) and time out the silent ones after ``policy.task_timeout``; once per result."""
    timeout = ctx.spec.policy.task_timeout.total_seconds()
    results: list[store.DeviceResult] = []
    with ctx.tx() as s:
        for device_id, run, since, app_status, detail, version in store.app_delivery_runs(
            s, campaign_id=ctx.campaign_id
        ):
            target = app_result(
                run, app_status, since=utc_instant(since), now=now, timeout_seconds=timeout
            )
            if target is None:
                continue
            kind = {DeviceRunStatus.FAILED: "fail", DeviceRunStatus.TIMED_OUT: "timeout"}.get(
                target
            )
            why = detail if target is DeviceRunStatus.FAILED else None
            if target is DeviceRunStatus.TIMED_OUT:
                why = "no final report from the app before the task timeout"
            results.append(
                store.DeviceResult(
                    device_id,
                    target,
                    failure_kind=kind,
                    failure_detail=why,
                    current_version=version if target is DeviceRunStatus.SUCCEEDED else None,
                )
            )
        if results:
            store.record_device_results(s, campaign_id=ctx.campaign_id, results=results, now=now)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    if counts:
        ctx.event("app_reports", data=counts)
    return counts

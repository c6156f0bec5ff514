"""Consent data functions: owners and their hashed tokens, device ownership, consent plans,
per-device consent states, the auto-confirm switch, and the app's status reports.

Keyword-only functions taking a session and ``now``, like :mod:`fleetwave.store.api`; the
caller owns the transaction. Tokens are stored only as their SHA-256 (they are 256-bit
random strings, so a fast hash is enough); no function here logs or returns a stored token.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, select

from fleetwave.store.api import _insert, insert_claims
from fleetwave.store.errors import NotFoundError
from fleetwave.store.models import (
    Campaign,
    CampaignStatus,
    ConsentOwner,
    ConsentPlan,
    ConsentState,
    DeviceAutoUpgrade,
    DeviceClaim,
    DeviceConsent,
    DeviceOwner,
    DeviceRun,
    DeviceRunStatus,
    check_transition,
    to_utc,
)

__all__ = [
    "TOKEN_PREFIX",
    "ActiveConsent",
    "Appointed",
    "OwnerRetry",
    "active_consents",
    "app_delivery_runs",
    "appointed_pending",
    "auto_upgrade_states",
    "claim_owner_retries",
    "consent_rows",
    "consent_state_counts",
    "count_owner_retries",
    "decline_figures",
    "device_owners",
    "ended_consent_plans",
    "expire_awaiting_consents",
    "get_consent_plan",
    "hash_token",
    "import_device_owners",
    "issue_owner_token",
    "leave_out_pending",
    "miss_appointments",
    "miss_retry_appointments",
    "open_consent_plan",
    "owner_for_token",
    "owner_retries",
    "pending_by_consent",
    "record_app_report",
    "release_to_app",
    "set_auto_upgrade",
    "set_consent",
]

TOKEN_PREFIX = "fwc_"
_BATCH = 500
_HOLDING = [s.value for s in CampaignStatus if s.holds_devices]


def _batches(items: Iterable[Any], size: int = _BATCH) -> Iterable[list[Any]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def hash_token(token: str) -> str:
    """The SHA-256 (hex) under which a token is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


# ---- owners and ownership ------------------------------------------------------------


def issue_owner_token(session: Session, *, owner_id: str, now: datetime) -> str:
    """A new access token for ``owner_id`` (created if new); the previous token stops working.

    The token is returned once and only its hash is stored.
    """
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    owner = session.get(ConsentOwner, owner_id)
    if owner is None:
        owner = ConsentOwner(owner_id=owner_id, created_at=now)
    owner.token_sha256 = hash_token(token)
    owner.token_issued_at = now
    session.add(owner)
    session.flush()
    return token


def owner_for_token(session: Session, *, token: str) -> str | None:
    """The owner whose token this is, or None (unknown, revoked, or not one of ours)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    stmt = select(ConsentOwner.owner_id).where(ConsentOwner.token_sha256 == hash_token(token))
    return session.exec(stmt).first()


def import_device_owners(
    session: Session, *, rows: Iterable[tuple[str, str]], now: datetime
) -> int:
    """Record ``(device_id, owner_id)`` pairs (a device's owner is replaced); creates owners
    without a token. Returns the number of pairs written. Batched."""
    owner_table = ConsentOwner.__table__  # type: ignore[attr-defined]
    device_table = DeviceOwner.__table__  # type: ignore[attr-defined]
    written = 0
    for batch in _batches(rows):
        owners = sorted({owner for _, owner in batch})
        session.execute(
            _insert(session, owner_table)
            .values([{"owner_id": o, "created_at": now} for o in owners])
            .on_conflict_do_nothing(index_elements=["owner_id"])
        )
        last: dict[str, str] = {}
        for device_id, owner_id in batch:
            last[device_id] = owner_id
        stmt = _insert(session, device_table).values(
            [{"device_id": d, "owner_id": o, "imported_at": now} for d, o in last.items()]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["device_id"],
            set_={"owner_id": stmt.excluded.owner_id, "imported_at": stmt.excluded.imported_at},
        )
        session.execute(stmt)
        written += len(last)
    return written


def device_owners(session: Session, *, device_ids: Sequence[str]) -> dict[str, str]:
    """``device_id -> owner_id`` for those of ``device_ids`` that have an owner."""
    found: dict[str, str] = {}
    for batch in _batches(device_ids):
        stmt = select(DeviceOwner.device_id, DeviceOwner.owner_id).where(
            col(DeviceOwner.device_id).in_(batch)
        )
        found.update({d: o for d, o in session.exec(stmt).all()})
    return found


# ---- plans and consent states ----------------------------------------------------------


def open_consent_plan(
    session: Session,
    *,
    campaign_id: int,
    device_ids: Iterable[str],
    period_start: datetime,
    period_end: datetime,
    windows: Sequence[tuple[datetime, datetime]],
    delivery: str,
    target_version: str,
    now: datetime,
    package_url: str | None = None,
    package_sha256: str | None = None,
    package_size: int | None = None,
    description: str | None = None,
) -> int:
    """Offer the campaign's upgrade to its devices' owners: the plan (once) and one AWAITING
    row per device, or AUTO where the device's auto-confirm switch is on. Re-offering a
    device keeps its row. Returns the number of new rows."""
    if session.get(ConsentPlan, campaign_id) is None:
        session.add(
            ConsentPlan(
                campaign_id=campaign_id,
                period_start=period_start,
                period_end=period_end,
                windows=[[s.isoformat(), e.isoformat()] for s, e in windows],
                delivery=delivery,
                target_version=target_version,
                package_url=package_url,
                package_sha256=package_sha256,
                package_size=package_size,
                description=description,
                created_at=now,
            )
        )
        session.flush()
    table = DeviceConsent.__table__  # type: ignore[attr-defined]
    added = 0
    for batch in _batches(device_ids):
        auto = auto_upgrade_states(session, device_ids=batch)
        values = [
            {
                "campaign_id": campaign_id,
                "device_id": d,
                "state": (ConsentState.AUTO if auto.get(d) else ConsentState.AWAITING).value,
                "answered_by": "auto-confirm" if auto.get(d) else None,
                "answered_at": now if auto.get(d) else None,
                "retries": 0,
                "created_at": now,
                "updated_at": now,
            }
            for d in batch
        ]
        result = session.execute(
            _insert(session, table)
            .values(values)
            .on_conflict_do_nothing(index_elements=["campaign_id", "device_id"])
        )
        added += max(result.rowcount or 0, 0)  # type: ignore[attr-defined]
    return added


def get_consent_plan(session: Session, *, campaign_id: int) -> ConsentPlan:
    plan = session.get(ConsentPlan, campaign_id)
    if plan is None:
        raise NotFoundError(f"campaign {campaign_id} has no consent plan")
    return plan


@dataclass(frozen=True, slots=True)
class ActiveConsent:
    """A device's consent row in the campaign currently holding it, with that campaign's plan
    and the device's run (None before the engine planned it)."""

    consent: DeviceConsent
    plan: ConsentPlan
    campaign_name: str
    run_status: DeviceRunStatus | None
    run_finished_at: datetime | None


def active_consents(
    session: Session,
    *,
    device_ids: Sequence[str],
    for_update: bool = False,
    now: datetime | None = None,
) -> dict[str, ActiveConsent]:
    """Each device's consent in a campaign that still holds its devices (pending, running,
    paused, rolling back) or, given ``now``, in a completed campaign whose plan period has
    not ended (an owner may still retry a failed device there). A holding campaign comes
    first, then the newest. ``for_update`` locks the consent rows (PostgreSQL; SQLite's
    write transactions are serialised anyway)."""
    found: dict[str, ActiveConsent] = {}
    open_plan: sa.ColumnElement[bool] = col(Campaign.status).in_(_HOLDING)
    if now is not None:
        open_plan = sa.or_(
            open_plan,
            sa.and_(
                col(Campaign.status) == CampaignStatus.COMPLETED.value,
                col(ConsentPlan.period_end) > to_utc(now),
            ),
        )
    for batch in _batches(sorted(set(device_ids))):
        stmt = (
            sa.select(
                DeviceConsent,
                ConsentPlan,
                col(Campaign.name),
                col(DeviceRun.status),
                col(DeviceRun.finished_at),
                col(Campaign.status),
            )
            .join(ConsentPlan, col(ConsentPlan.campaign_id) == col(DeviceConsent.campaign_id))
            .join(Campaign, col(Campaign.id) == col(DeviceConsent.campaign_id))
            .outerjoin(
                DeviceRun,
                sa.and_(
                    col(DeviceRun.campaign_id) == col(DeviceConsent.campaign_id),
                    col(DeviceRun.device_id) == col(DeviceConsent.device_id),
                ),
            )
            .where(col(DeviceConsent.device_id).in_(batch))
            .where(open_plan)
            .order_by(col(DeviceConsent.campaign_id), col(DeviceConsent.device_id))
        )
        if for_update:
            stmt = stmt.with_for_update(of=DeviceConsent.__table__)  # type: ignore[attr-defined]
        rows = session.execute(stmt.execution_options(populate_existing=True)).all()
        holding: set[str] = set()
        for consent, plan, name, run_status, finished_at, status in rows:  # oldest first
            if consent.device_id in holding:
                continue  # a campaign holding the device wins over a completed one
            if CampaignStatus(status).holds_devices:
                holding.add(consent.device_id)
            found[consent.device_id] = ActiveConsent(
                consent=consent,
                plan=plan,
                campaign_name=name,
                run_status=DeviceRunStatus(run_status) if run_status is not None else None,
                run_finished_at=finished_at,
            )
    return found


def ended_consent_plans(
    session: Session, *, device_ids: Sequence[str], now: datetime
) -> dict[str, tuple[str, datetime]]:
    """``device_id -> (campaign name, plan end)`` for those of ``device_ids`` whose newest
    consent is in a completed campaign whose plan period ended by ``now``."""
    found: dict[str, tuple[str, datetime]] = {}
    for batch in _batches(sorted(set(device_ids))):
        stmt = (
            sa.select(
                col(DeviceConsent.device_id),
                col(Campaign.name),
                col(ConsentPlan.period_end),
                col(Campaign.status),
            )
            .join(ConsentPlan, col(ConsentPlan.campaign_id) == col(DeviceConsent.campaign_id))
            .join(Campaign, col(Campaign.id) == col(DeviceConsent.campaign_id))
            .where(col(DeviceConsent.device_id).in_(batch))
            .order_by(col(DeviceConsent.campaign_id))
        )
        newest: dict[str, tuple[str, datetime, Any]] = {}
        for device_id, name, end, status in session.execute(stmt).all():
            newest[device_id] = (name, end, status)
        for device_id, (name, end, status) in newest.items():
            if CampaignStatus(status) is CampaignStatus.COMPLETED and to_utc(end) <= to_utc(now):
                found[device_id] = (name, to_utc(end))
    return found


def set_consent(
    session: Session,
    *,
    consent: DeviceConsent,
    state: ConsentState,
    actor: str,
    now: datetime,
    appoint_start: datetime | None = None,
    appoint_end: datetime | None = None,
    retry: bool = False,
) -> DeviceConsent:
    """Move one device's consent to ``state`` (checked against the transition table), with
    its appointment (APPOINTED only) and, for a retry, one more retry and the app's last
    report cleared."""
    check_transition(consent.state, state, subject=f"device {consent.device_id!r}")
    consent.state = state
    consent.appoint_start = appoint_start if state is ConsentState.APPOINTED else None
    consent.appoint_end = appoint_end if state is ConsentState.APPOINTED else None
    if retry:
        consent.retries += 1
        consent.app_status = None
        consent.app_detail = None
    consent.answered_by = actor
    consent.answered_at = now
    consent.updated_at = now
    session.add(consent)
    session.flush()
    return consent


def record_app_report(
    session: Session,
    *,
    consent: DeviceConsent,
    status: str,
    now: datetime,
    version: str | None = None,
    detail: str | None = None,
) -> DeviceConsent:
    """Store the app's latest status report for an app-delivered device."""
    consent.app_status = status
    consent.app_version = version
    consent.app_detail = detail
    consent.app_reported_at = now
    consent.updated_at = now
    session.add(consent)
    session.flush()
    return consent


def consent_rows(
    session: Session, *, campaign_id: int, device_ids: Sequence[str]
) -> dict[str, DeviceConsent]:
    """The consent rows of these devices in one campaign (batched reads)."""
    found: dict[str, DeviceConsent] = {}
    for batch in _batches(device_ids):
        stmt = (
            select(DeviceConsent)
            .where(DeviceConsent.campaign_id == campaign_id)
            .where(col(DeviceConsent.device_id).in_(batch))
        )
        found.update(
            {c.device_id: c for c in session.exec(stmt.execution_options(populate_existing=True))}
        )
    return found


class OwnerRetry(NamedTuple):
    """A failed device whose owner asked for a retry: its run's attempt and wave, and the
    appointment when the retry was an appointment."""

    device_id: str
    attempt: int
    wave_index: int
    appoint_start: datetime | None
    appoint_end: datetime | None


def _owner_retry_filter(
    stmt: Any, *, campaign_id: int, wave_index: int | None, superseded: bool
) -> Any:
    dr = DeviceRun.__table__  # type: ignore[attr-defined]
    dc = DeviceConsent.__table__  # type: ignore[attr-defined]
    claim = DeviceClaim.__table__  # type: ignore[attr-defined]
    stmt = (
        stmt.select_from(
            dr.join(
                dc, sa.and_(dc.c.campaign_id == dr.c.campaign_id, dc.c.device_id == dr.c.device_id)
            )
        )
        .where(dr.c.campaign_id == campaign_id)
        .where(dr.c.status.in_([DeviceRunStatus.FAILED.value, DeviceRunStatus.TIMED_OUT.value]))
        .where(dc.c.retries > 0)
        .where(dc.c.answered_at > dr.c.finished_at)
        .where(dc.c.state.in_([ConsentState.CONFIRMED.value, ConsentState.APPOINTED.value]))
        # a device another campaign holds now is not this campaign's to send
        .where(
            ~sa.exists().where(
                claim.c.device_id == dr.c.device_id, claim.c.campaign_id != campaign_id
            )
        )
    )
    if wave_index is not None:
        stmt = stmt.where(dr.c.wave_index == wave_index)
    if superseded:
        # after the campaign ended: a later campaign that took the device in supersedes it
        later = dr.alias("later")
        stmt = stmt.where(
            ~sa.exists().where(
                later.c.device_id == dr.c.device_id, later.c.campaign_id > campaign_id
            )
        )
    return stmt


def owner_retries(
    session: Session,
    *,
    campaign_id: int,
    wave_index: int | None = None,
    limit: int | None = None,
    superseded: bool = False,
) -> list[OwnerRetry]:
    """The campaign's (or one wave's) failed or timed-out devices whose owner asked for a
    retry after the failure (consented again after the run finished), by device ID, at
    most ``limit``. Devices another campaign holds are left out, and with ``superseded``
    (a campaign past its waves) also devices a later campaign took in."""
    dr = DeviceRun.__table__  # type: ignore[attr-defined]
    dc = DeviceConsent.__table__  # type: ignore[attr-defined]
    stmt = _owner_retry_filter(
        sa.select(
            dr.c.device_id, dr.c.attempt, dr.c.wave_index, dc.c.appoint_start, dc.c.appoint_end
        ),
        campaign_id=campaign_id,
        wave_index=wave_index,
        superseded=superseded,
    ).order_by(dr.c.device_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        OwnerRetry(d, int(a), int(w), start, end)
        for d, a, w, start, end in session.execute(stmt).all()
    ]


def count_owner_retries(session: Session, *, campaign_id: int, superseded: bool = False) -> int:
    """How many devices :func:`owner_retries` would give for the whole campaign."""
    stmt = _owner_retry_filter(
        sa.select(sa.func.count()),
        campaign_id=campaign_id,
        wave_index=None,
        superseded=superseded,
    )
    return int(session.execute(stmt).scalar_one())


def claim_owner_retries(session: Session, *, campaign_id: int, now: datetime) -> int:
    """Claim for the campaign the devices of its owners' retries that no campaign holds
    (a campaign past its waves holds none): one INSERT ... SELECT; returns new claims."""
    dr = DeviceRun.__table__  # type: ignore[attr-defined]
    claim = DeviceClaim.__table__  # type: ignore[attr-defined]
    src = _owner_retry_filter(
        sa.select(
            dr.c.device_id, dr.c.campaign_id, sa.literal(to_utc(now), claim.c.claimed_at.type)
        ),
        campaign_id=campaign_id,
        wave_index=None,
        superseded=True,
    ).order_by(dr.c.device_id)
    return insert_claims(session, campaign_id=campaign_id, source=src)


# ---- the engine's round: sorting pending devices by consent, in SQL ----------------------


def _consent_in(campaign_id: int, device_col: Any, states: Collection[ConsentState]) -> Any:
    """``device_col`` has a consent row in one of ``states`` (no row counts as awaiting)."""
    dc = DeviceConsent.__table__  # type: ignore[attr-defined]
    cond = device_col.in_(
        sa.select(dc.c.device_id).where(
            dc.c.campaign_id == campaign_id, dc.c.state.in_([st.value for st in states])
        )
    )
    if ConsentState.AWAITING in states:
        cond = sa.or_(
            cond,
            ~sa.exists().where(dc.c.campaign_id == campaign_id, dc.c.device_id == device_col),
        )
    return cond


def leave_out_pending(
    session: Session,
    *,
    campaign_id: int,
    wave_index: int,
    consent_states: Collection[ConsentState],
    status: DeviceRunStatus,
    failure_kind: str,
    failure_detail: str,
    now: datetime,
) -> int:
    """Move the wave's PENDING devices whose consent is in ``consent_states`` to ``status``
    (SKIPPED or FAILED: never sent) in one UPDATE; no device ID is read. Returns how many."""
    if not consent_states:
        return 0
    check_transition(DeviceRunStatus.PENDING, status, subject="pending devices")
    dr = DeviceRun.__table__  # type: ignore[attr-defined]
    stamp = to_utc(now)
    result = session.execute(
        sa.update(dr)
        .where(dr.c.campaign_id == campaign_id)
        .where(dr.c.wave_index == wave_index)
        .where(dr.c.status == DeviceRunStatus.PENDING.value)
        .where(_consent_in(campaign_id, dr.c.device_id, consent_states))
        .values(
            status=status.value,
            failure_kind=failure_kind,
            failure_detail=failure_detail,
            updated_at=stamp,
            finished_at=stamp if status.is_final else None,
        )
    )
    return max(int(result.rowcount or 0), 0)  # type: ignore[attr-defined]


def miss_appointments(
    session: Session,
    *,
    campaign_id: int,
    wave_index: int,
    failure_kind: str,
    failure_detail: str,
    now: datetime,
) -> int:
    """The wave's PENDING devices whose owner's appointment ended before they were sent:
    SKIPPED (never sent outside the appointment, never a failure) and their consent
    EXPIRED (the owner is asked again in a later campaign). Two UPDATEs, no ID read;
    returns how many devices."""
    check_transition(DeviceRunStatus.PENDING, DeviceRunStatus.SKIPPED, subject="pending devices")
    check_transition(ConsentState.APPOINTED, ConsentState.EXPIRED, subject="missed appointments")
    dr = DeviceRun.__table__  # type: ignore[attr-defined]
    dc = DeviceConsent.__table__  # type: ignore[attr-defined]
    stamp = to_utc(now)
    missed = sa.select(dc.c.device_id).where(
        dc.c.campaign_id == campaign_id,
        dc.c.state == ConsentState.APPOINTED.value,
        dc.c.appoint_end <= stamp,
    )
    result = session.execute(
        sa.update(dr)
        .where(dr.c.campaign_id == campaign_id)
        .where(dr.c.wave_index == wave_index)
        .where(dr.c.status == DeviceRunStatus.PENDING.value)
        .where(dr.c.device_id.in_(missed))
        .values(
            status=DeviceRunStatus.SKIPPED.value,
            failure_kind=failure_kind,
            failure_detail=failure_detail,
            updated_at=stamp,
            finished_at=stamp,
        )
    )
    moved = max(int(result.rowcount or 0), 0)  # type: ignore[attr-defined]
    if moved:
        skipped_here = sa.select(dr.c.device_id).where(
            dr.c.campaign_id == campaign_id,
            dr.c.wave_index == wave_index,
            dr.c.status == DeviceRunStatus.SKIPPED.value,
            dr.c.failure_kind == failure_kind,
        )
        session.execute(
            sa.update(dc)
            .where(dc.c.campaign_id == campaign_id)
            .where(dc.c.state == ConsentState.APPOINTED.value)
            .where(dc.c.appoint_end <= stamp)
            .where(dc.c.device_id.in_(skipped_here))
            .values(state=ConsentState.EXPIRED.value, updated_at=stamp)
        )
    return moved


def miss_retry_appointments(
    session: Session, *, campaign_id: int, wave_index: int | None, now: datetime
) -> int:
    """Owners' retries (of the wave, or of the whole campaign with ``wave_index`` None)
    whose new appointment ended before the retry could be sent: their consent EXPIRED, so
    the retry is never sent outside it; the device keeps its failed run. One UPDATE, no ID
    read; returns how many devices."""
    check_transition(ConsentState.APPOINTED, ConsentState.EXPIRED, subject="missed appointments")
    dr = DeviceRun.__table__  # type: ignore[attr-defined]
    dc = DeviceConsent.__table__  # type: ignore[attr-defined]
    stamp = to_utc(now)
    # a retry another campaign holds now is left as it is: it is not sent while held, and
    # the first round after the hold ends finds its appointment over
    retried = _owner_retry_filter(
        sa.select(dr.c.device_id), campaign_id=campaign_id, wave_index=wave_index, superseded=False
    ).where(dc.c.state == ConsentState.APPOINTED.value, dc.c.appoint_end <= stamp)
    result = session.execute(
        sa.update(dc)
        .where(dc.c.campaign_id == campaign_id)
        .where(dc.c.state == ConsentState.APPOINTED.value)
        .where(dc.c.appoint_end <= stamp)
        .where(dc.c.device_id.in_(retried))
        .values(state=ConsentState.EXPIRED.value, updated_at=stamp)
    )
    return max(int(result.rowcount or 0), 0)  # type: ignore[attr-defined]


def pending_by_consent(
    session: Session,
    *,
    campaign_id: int,
    wave_index: int,
    consent_states: Collection[ConsentState],
    limit: int,
) -> list[tuple[str, int]]:
    """``(device_id, attempt)`` of at most ``limit`` PENDING devices of the wave whose
    consent is in ``consent_states`` (no consent row counts as awaiting), by device ID.
    The filter runs in the database: other devices are never read."""
    if not consent_states or limit <= 0:
        return []
    dr = DeviceRun.__table__  # type: ignore[attr-defined]
    stmt = (
        sa.select(dr.c.device_id, dr.c.attempt)
        .where(dr.c.campaign_id == campaign_id)
        .where(dr.c.wave_index == wave_index)
        .where(dr.c.status == DeviceRunStatus.PENDING.value)
        .where(_consent_in(campaign_id, dr.c.device_id, consent_states))
        .order_by(dr.c.device_id)
        .limit(limit)
    )
    return [(d, int(a)) for d, a in session.execute(stmt).all()]


class Appointed(NamedTuple):
    """A pending device whose owner appointed a period."""

    device_id: str
    attempt: int
    start: datetime
    end: datetime


def appointed_pending(
    session: Session, *, campaign_id: int, wave_index: int, limit: int
) -> list[Appointed]:
    """At most ``limit`` PENDING devices of the wave with an appointment, the earliest
    appointments first (then by device ID), so each appointment's devices come together."""
    if limit <= 0:
        return []
    dr = DeviceRun.__table__  # type: ignore[attr-defined]
    dc = DeviceConsent.__table__  # type: ignore[attr-defined]
    stmt = (
        sa.select(dr.c.device_id, dr.c.attempt, dc.c.appoint_start, dc.c.appoint_end)
        .select_from(
            dr.join(
                dc, sa.and_(dc.c.campaign_id == dr.c.campaign_id, dc.c.device_id == dr.c.device_id)
            )
        )
        .where(dr.c.campaign_id == campaign_id)
        .where(dr.c.wave_index == wave_index)
        .where(dr.c.status == DeviceRunStatus.PENDING.value)
        .where(dc.c.state == ConsentState.APPOINTED.value)
        .where(dc.c.appoint_start.is_not(None), dc.c.appoint_end.is_not(None))
        .order_by(dc.c.appoint_start, dc.c.appoint_end, dr.c.device_id)
        .limit(limit)
    )
    return [Appointed(d, int(a), st, en) for d, a, st, en in session.execute(stmt).all()]


def app_delivery_runs(
    session: Session, *, campaign_id: int
) -> list[tuple[str, DeviceRunStatus, datetime, str | None, str | None, str | None]]:
    """Devices handed to their apps and not settled: ``(device_id, run status, updated_at,
    app_status, app_detail, app_version)`` for runs SUBMITTED, IN_PROGRESS or TIMED_OUT."""
    stmt = (
        sa.select(
            col(DeviceRun.device_id),
            col(DeviceRun.status),
            col(DeviceRun.updated_at),
            col(DeviceConsent.app_status),
            col(DeviceConsent.app_detail),
            col(DeviceConsent.app_version),
        )
        .join(
            DeviceConsent,
            sa.and_(
                col(DeviceConsent.campaign_id) == col(DeviceRun.campaign_id),
                col(DeviceConsent.device_id) == col(DeviceRun.device_id),
            ),
        )
        .where(col(DeviceRun.campaign_id) == campaign_id)
        .where(
            col(DeviceRun.status).in_(
                [
                    DeviceRunStatus.SUBMITTED.value,
                    DeviceRunStatus.IN_PROGRESS.value,
                    DeviceRunStatus.TIMED_OUT.value,
                ]
            )
        )
        .order_by(col(DeviceRun.device_id))
    )
    return [
        (d, DeviceRunStatus(st), up, a, det, ver)
        for d, st, up, a, det, ver in session.execute(stmt).all()
    ]


def release_to_app(
    session: Session, *, campaign_id: int, device_ids: Sequence[str], now: datetime
) -> int:
    """App delivery: hand devices (pending, or failed ones an owner retries) to their apps:
    QUEUED then SUBMITTED with one more attempt, as a platform task would. Returns how many."""
    from fleetwave.store.api import set_device_status

    table = DeviceRun.__table__  # type: ignore[attr-defined]
    set_device_status(
        session,
        campaign_id=campaign_id,
        status=DeviceRunStatus.QUEUED,
        device_ids=device_ids,
        now=now,
    )
    released = 0
    for batch in _batches(device_ids):
        result = session.execute(
            sa.update(table)
            .where(table.c.campaign_id == campaign_id)
            .where(table.c.device_id.in_(batch))
            .where(table.c.status == DeviceRunStatus.QUEUED.value)
            .values(
                status=DeviceRunStatus.SUBMITTED.value,
                attempt=table.c.attempt + 1,
                failure_kind=None,
                failure_detail=None,
                updated_at=now,
            )
        )
        released += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return released


def expire_awaiting_consents(session: Session, *, campaign_id: int, now: datetime) -> int:
    """AWAITING -> EXPIRED for every unanswered device of the campaign (the answer timeout)."""
    table = DeviceConsent.__table__  # type: ignore[attr-defined]
    result = session.execute(
        sa.update(table)
        .where(table.c.campaign_id == campaign_id)
        .where(table.c.state == ConsentState.AWAITING.value)
        .values(state=ConsentState.EXPIRED.value, updated_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def decline_figures(
    session: Session, *, campaign_id: int, wave_index: int | None = None
) -> tuple[int, int]:
    """(declined, answered) devices of the campaign (or of one wave): answered counts
    confirmed, appointed, declined and auto; unanswered and expired ones are left out."""
    answered_states = [
        s.value
        for s in (
            ConsentState.CONFIRMED,
            ConsentState.APPOINTED,
            ConsentState.DECLINED,
            ConsentState.AUTO,
        )
    ]
    stmt = (
        select(DeviceConsent.state, sa.func.count())
        .where(DeviceConsent.campaign_id == campaign_id)
        .where(col(DeviceConsent.state).in_(answered_states))
        .group_by(DeviceConsent.state)
    )
    if wave_index is not None:
        stmt = stmt.join(
            DeviceRun,
            sa.and_(
                col(DeviceRun.campaign_id) == col(DeviceConsent.campaign_id),
                col(DeviceRun.device_id) == col(DeviceConsent.device_id),
            ),
        ).where(DeviceRun.wave_index == wave_index)
    counts = {ConsentState(k): int(n) for k, n in session.exec(stmt).all()}
    return counts.get(ConsentState.DECLINED, 0), sum(counts.values())


def consent_state_counts(session: Session, *, campaign_id: int) -> dict[str, int]:
    """Devices per consent state (every state present, zero where none)."""
    stmt = (
        select(DeviceConsent.state, sa.func.count())
        .where(DeviceConsent.campaign_id == campaign_id)
        .group_by(DeviceConsent.state)
    )
    counts = {s.value: 0 for s in ConsentState}
    for state, n in session.exec(stmt).all():
        counts[ConsentState(state).value] = int(n)
    return counts


# ---- the auto-confirm switch -------------------------------------------------------------


def set_auto_upgrade(
    session: Session, *, device_id: str, enabled: bool, actor: str, now: datetime
) -> bool:
    """Set a device's auto-confirm switch; returns whether it changed."""
    row = session.get(DeviceAutoUpgrade, device_id, populate_existing=True)
    if row is not None and row.enabled == enabled:
        return False
    if row is None:
        if not enabled:
            return False
        row = DeviceAutoUpgrade(device_id=device_id, enabled=enabled, set_by=actor, set_at=now)
    else:
        row.enabled, row.set_by, row.set_at = enabled, actor, now
    session.add(row)
    session.flush()
    return True


def auto_upgrade_states(session: Session, *, device_ids: Sequence[str]) -> Mapping[str, bool]:
    """``device_id -> enabled`` for the devices whose switch was ever set."""
    found: dict[str, bool] = {}
    for batch in _batches(device_ids):
        stmt = select(DeviceAutoUpgrade.device_id, DeviceAutoUpgrade.enabled).where(
            col(DeviceAutoUpgrade.device_id).in_(batch)
        )
        found.update({d: bool(e) for d, e in session.exec(stmt).all()})
    return found

"""Keyword-only data functions of the campaign state store; each takes a session.

The caller owns the transaction (``with session_scope(engine) as s: ...``): these functions
flush but never commit, so an intent and its device rows land together or not at all.
Every function that stamps time takes ``now`` (an aware datetime; stored as UTC) so the
engine's manual clock works. Bulk paths (device rows, results, status changes) run in
batches of ``batch_size`` rows with executemany and never load device rows to count them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from itertools import islice
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from fleetwave.store.errors import (
    ConflictError,
    DeviceClaimedError,
    IllegalTransitionError,
    LeaseLostError,
    NotFoundError,
    OperationIdCollisionError,
    SpecChangedError,
)
from fleetwave.store.models import (
    TRANSITIONS,
    UNSENT,
    ApprovalDecision,
    Campaign,
    CampaignStatus,
    Chunk,
    ChunkKind,
    ChunkStatus,
    DeviceClaim,
    DeviceRun,
    DeviceRunStatus,
    Event,
    UTCDateTime,
    Wave,
    WaveStatus,
    allowed_sources,
    check_transition,
    result_sources,
    to_utc,
)

__all__ = [
    "DEFAULT_BATCH",
    "RESOLVE_SKIPPED_WAVE",
    "ChunkPollFigures",
    "ChunkRef",
    "DeviceListing",
    "DeviceResult",
    "FinishedDevice",
    "NewDeviceRun",
    "TaskDevices",
    "TaskListing",
    "WavePlan",
    "abandon_chunk",
    "acquire_lease",
    "active_chunk_figures",
    "active_chunk_refs_by_device",
    "add_device_runs",
    "add_skipped_device_runs",
    "append_event",
    "assign_unkeyed_chunks",
    "campaign_devices_among",
    "campaign_spec_hash",
    "cancel_unsent_devices",
    "chunk_counts_by_wave",
    "chunk_members",
    "chunk_refs_by_operation_id",
    "claim_devices",
    "count_unfinished_devices",
    "create_chunk_intent",
    "create_or_get_campaign",
    "create_waves",
    "device_status_counts",
    "device_status_counts_by_wave",
    "discard_unsent_plan",
    "failure_kind_counts",
    "find_campaign",
    "finish_chunk",
    "forget_unplanned_campaign",
    "get_campaign",
    "get_campaign_by_id",
    "get_chunk",
    "get_chunk_by_operation_id",
    "get_device_run",
    "get_wave",
    "get_waves",
    "has_chunks_on_connection",
    "insert_claims",
    "iter_device_ids",
    "iter_device_listing",
    "iter_device_runs",
    "iter_finished_devices",
    "iter_task_devices",
    "iter_task_listing",
    "list_active_chunks",
    "list_campaigns",
    "list_chunks",
    "list_intents",
    "mark_operation_id_collision",
    "recent_events",
    "record_approval",
    "record_chunk_poll",
    "record_device_results",
    "record_operation_id",
    "release_claims",
    "release_lease",
    "renew_lease",
    "set_campaign_status",
    "set_device_status",
    "set_flow_run",
    "set_wave_status",
    "skip_pending_devices",
    "skip_reason_counts",
    "take_over_lease",
    "unknown_device_ids",
]

DEFAULT_BATCH = 5000
"""Rows per executemany batch (well under SQLite's 32766 bound parameters per statement)."""

_IN_CLAUSE = 500
"""IDs per ``IN (...)`` list of a lookup, far below every backend's parameter limit."""

_T = TypeVar("_T")
_P = ParamSpec("_P")
_R = TypeVar("_R")

_dr = DeviceRun.__table__  # type: ignore[attr-defined]
_claim = DeviceClaim.__table__  # type: ignore[attr-defined]
_camp = Campaign.__table__  # type: ignore[attr-defined]
_chunk = Chunk.__table__  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------
# value types
# --------------------------------------------------------------------------------------


class NewDeviceRun(NamedTuple):
    """One device to add to a campaign (a plain tuple in this order works too)."""

    device_id: str
    wave_index: int
    source_version: str | None = None
    target_version: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceResult:
    """One device's outcome as the platform reported it (one subtask)."""

    device_id: str
    status: DeviceRunStatus
    failure_kind: str | None = None
    failure_detail: str | None = None
    current_version: str | None = None


@dataclass(frozen=True, slots=True)
class WavePlan:
    """A wave to create: its position (0 = canary), name and planned device count."""

    index: int
    name: str
    planned_size: int


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """The columns of a chunk that place a pushed event on it (its device list is not loaded)."""

    id: int
    campaign_id: int
    kind: ChunkKind
    status: ChunkStatus
    package_kind: str


class FinishedDevice(NamedTuple):
    """A device with a final platform outcome: its wave, status and when it finished."""

    wave_index: int
    status: DeviceRunStatus
    finished_at: datetime


class ChunkPollFigures(NamedTuple):
    """An active chunk's last polled per-outcome device counts, beside its devices that the
    store already holds as final (same keys: succeeded, failed, cancelled, timed_out)."""

    chunk_id: int
    wave_index: int
    round: int
    polled: dict[str, int]
    recorded: dict[str, int]


RESOLVE_SKIPPED_WAVE = -1
"""``wave_index`` of the devices skipped when the targets were resolved (in no real wave)."""


class TaskDevices(NamedTuple):
    """A chunk that became a platform task: its wave, devices and last timestamps."""

    wave_index: int
    device_ids: list[str]
    finished_at: datetime | None
    updated_at: datetime


class DeviceListing(NamedTuple):
    """One device of a campaign as ``fleetwave devices`` lists it (its task's operationId
    joined in; the device-list JSON of the task is not loaded)."""

    device_id: str
    wave_index: int
    status: DeviceRunStatus
    attempt: int
    failure_kind: str | None
    failure_detail: str | None
    current_version: str | None
    operation_id: str | None
    finished_at: datetime | None


class TaskListing(NamedTuple):
    """One chunk (a platform task, or the intent of one) as ``fleetwave tasks`` lists it."""

    chunk_id: int
    wave_index: int
    kind: ChunkKind
    round: int
    seq: int
    device_count: int
    status: ChunkStatus
    operation_id: str | None
    platform_status: str | None
    submitted_at: datetime | None
    finished_at: datetime | None


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _batches(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _atomic(
    fn: Callable[Concatenate[Session, _P], _R],
) -> Callable[Concatenate[Session, _P], _R]:
    """Run ``fn`` in a SAVEPOINT: if it raises, none of its writes stay, even when the caller
    catches the error and commits the rest of its transaction."""

    @wraps(fn)
    def run(session: Session, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with session.begin_nested():
            return fn(session, *args, **kwargs)

    return run


def _read(session: Session, stmt: Any) -> Any:
    # Bulk paths write with Core UPDATEs the identity map does not see: reads always refresh.
    return session.exec(stmt.execution_options(populate_existing=True))


def _placeholder(conn: sa.Connection) -> str:
    """The driver's positional placeholder (sqlite3: ``?``, psycopg: ``%s``)."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _bind_ts(conn: sa.Connection, now: datetime) -> Any:
    """``now`` as the driver-level value the UTCDateTime column binds (computed once per call)."""
    impl = UTCDateTime().dialect_impl(conn.dialect)
    proc = impl.bind_processor(conn.dialect)
    return proc(now) if proc is not None else to_utc(now)


def _insert(session: Session, table: sa.Table) -> Any:
    """A dialect INSERT that supports ``on_conflict_do_nothing``."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _status_in(column: Any, statuses: Iterable[Any]) -> Any:
    # Literal values (from our enums, never user input) so the statement works with executemany.
    return column.in_([sa.literal_column(f"'{s.value}'") for s in sorted(statuses, key=str)])


def campaign_spec_hash(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the spec's canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --------------------------------------------------------------------------------------
# campaigns
# --------------------------------------------------------------------------------------


def create_or_get_campaign(
    session: Session,
    *,
    name: str,
    spec: Mapping[str, Any],
    now: datetime,
    allow_spec_change: bool = False,
    fingerprint: str | None = None,
    compare: Callable[[Mapping[str, Any], Mapping[str, Any]], Sequence[Mapping[str, Any]]]
    | None = None,
    actor: str | None = None,
) -> Campaign:
    """The campaign called ``name``, created PENDING with ``spec`` if it does not exist.

    ``fingerprint`` (default: the hash of the whole spec) covers what a started campaign
    may not change; it is stored as ``spec_hash``. ``compare(old, new)`` lists the changed
    fields as records with ``field`` and ``mutable`` (plus old/new values); without it,
    any other fingerprint is one immutable change. An existing campaign whose stored spec
    differs: a change of mutable fields only (or any change while still PENDING) replaces
    the stored spec with a ``spec_changed`` event holding the changes; a change of
    immutable fields of a started campaign raises :class:`SpecChangedError` naming them,
    unless ``allow_spec_change``, which replaces it with a ``spec_change_accepted`` event
    (``actor`` says who, the event's time when).
    """
    spec_json = json.loads(json.dumps(spec, default=str))
    new_hash = fingerprint or campaign_spec_hash(spec_json)
    existing = find_campaign(session, name=name)
    if existing is None:
        campaign = Campaign(
            name=name,
            spec=spec_json,
            spec_hash=new_hash,
            status=CampaignStatus.PENDING,
            created_at=now,
            updated_at=now,
        )
        session.add(campaign)
        session.flush()
        append_event(
            session,
            campaign_id=campaign.id,
            kind="campaign_created",
            subject=f"campaign {name}",
            now=now,
            data={"spec_hash": new_hash},
        )
        return campaign
    if existing.spec_hash == new_hash and existing.spec == spec_json:
        return existing
    if compare is not None:
        changes = [dict(c) for c in compare(existing.spec or {}, spec_json)]
    elif existing.spec_hash != new_hash:
        changes = [
            {"field": "(spec)", "mutable": False, "old": existing.spec_hash, "new": new_hash}
        ]
    else:
        changes = []
    fixed = [str(c["field"]) for c in changes if not c.get("mutable")]
    started = existing.status is not CampaignStatus.PENDING
    if fixed and started and not allow_spec_change:
        raise SpecChangedError(
            name=name,
            status=existing.status.value,
            stored_hash=existing.spec_hash,
            new_hash=new_hash,
            fields=fixed if compare is not None else None,
        )
    if changes:
        accepted = bool(fixed and started)
        append_event(
            session,
            campaign_id=existing.id,
            kind="spec_change_accepted" if accepted else "spec_changed",
            subject=f"campaign {name}",
            now=now,
            actor=actor,
            data={
                "changes": changes,
                "accepted": fixed if accepted else [],
                "by": actor,
                "old_hash": existing.spec_hash,
                "new_hash": new_hash,
                "status": existing.status.value,
            },
        )
    existing.spec, existing.spec_hash, existing.updated_at = spec_json, new_hash, now
    session.add(existing)
    session.flush()
    return existing


def find_campaign(session: Session, *, name: str) -> Campaign | None:
    """The campaign called ``name``, or None."""
    return _read(session, select(Campaign).where(Campaign.name == name)).first()


def get_campaign(session: Session, *, name: str) -> Campaign:
    """The campaign called ``name``; :class:`NotFoundError` if there is none."""
    campaign = find_campaign(session, name=name)
    if campaign is None:
        raise NotFoundError(
            f"no campaign named {name!r} in the database",
            hint="`fleetwave status` lists the campaigns",
        )
    return campaign


def get_campaign_by_id(session: Session, *, campaign_id: int, for_update: bool = False) -> Campaign:
    """The campaign with this id; :class:`NotFoundError` if there is none."""
    campaign = session.get(
        Campaign, campaign_id, with_for_update=for_update or None, populate_existing=True
    )
    if campaign is None:
        raise NotFoundError(f"no campaign with id {campaign_id}")
    return campaign


def list_campaigns(
    session: Session, *, statuses: Iterable[CampaignStatus] | None = None
) -> list[Campaign]:
    """Campaigns, oldest first, optionally only those in ``statuses``."""
    stmt = select(Campaign).order_by(col(Campaign.id))
    if statuses is not None:
        stmt = stmt.where(col(Campaign.status).in_(list(statuses)))
    return list(_read(session, stmt).all())


@_atomic
def set_campaign_status(
    session: Session,
    *,
    campaign_id: int,
    status: CampaignStatus,
    now: datetime,
    reason: str | None = None,
    actor: str | None = None,
    flow_run_id: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> Campaign:
    """Move a campaign to ``status`` (checked against the transitions) and log the event.

    Claims follow the status: leaving the statuses that hold devices releases the
    campaign's claims; entering one again (e.g. HALTED -> RUNNING) re-claims them and
    raises :class:`DeviceClaimedError` if another campaign took a device meanwhile.
    Setting the current status again is a no-op.
    """
    campaign = get_campaign_by_id(session, campaign_id=campaign_id, for_update=True)
    old = campaign.status
    if old is status:
        return campaign
    check_transition(old, status, subject=f"campaign {campaign.name!r}")
    campaign.status, campaign.updated_at = status, now
    campaign.status_reason = reason
    if status is CampaignStatus.RUNNING and campaign.started_at is None:
        campaign.started_at = now
    if status.is_terminal:
        campaign.finished_at = now
    session.add(campaign)
    session.flush()
    if old.holds_devices and not status.holds_devices:
        release_claims(session, campaign_id=campaign_id)
    elif status.holds_devices and not old.holds_devices:
        claim_devices(session, campaign_id=campaign_id, now=now)
    append_event(
        session,
        campaign_id=campaign_id,
        kind="campaign_status",
        subject=f"campaign {campaign.name}",
        now=now,
        actor=actor,
        flow_run_id=flow_run_id,
        data={"from": old.value, "to": status.value, "reason": reason, **(data or {})},
    )
    return campaign


def set_flow_run(
    session: Session, *, campaign_id: int, flow_run_id: str | None, now: datetime
) -> None:
    """Record the Prefect flow-run id currently advancing the campaign."""
    session.execute(
        sa.update(_camp)
        .where(_camp.c.id == campaign_id)
        .values(flow_run_id=flow_run_id, updated_at=to_utc(now))
    )


# --------------------------------------------------------------------------------------
# lease: one flow run advances a campaign at a time
# --------------------------------------------------------------------------------------


def acquire_lease(
    session: Session, *, campaign_id: int, holder: str, ttl: timedelta, now: datetime
) -> bool:
    """Take the campaign's lease for ``ttl`` if it is free, expired, or already ``holder``'s.

    One conditional UPDATE, so two processes racing for it cannot both win. Commit soon
    after: the lease protects nothing until other sessions can see it.
    """
    expires = to_utc(now + ttl)
    result = session.execute(
        sa.update(_camp)
        .where(
            _camp.c.id == campaign_id,
            sa.or_(
                _camp.c.lease_holder.is_(None),
                _camp.c.lease_holder == holder,
                _camp.c.lease_expires_at <= to_utc(now),
            ),
        )
        .values(lease_holder=holder, lease_expires_at=expires)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def renew_lease(
    session: Session, *, campaign_id: int, holder: str, ttl: timedelta, now: datetime
) -> None:
    """Extend ``holder``'s lease to ``now + ttl``; :class:`LeaseLostError` if it is not theirs.

    A lease that expired but that nobody else took is still renewed (nothing ran meanwhile).
    """
    result = session.execute(
        sa.update(_camp)
        .where(_camp.c.id == campaign_id, _camp.c.lease_holder == holder)
        .values(lease_expires_at=to_utc(now + ttl))
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        current = session.execute(
            sa.select(_camp.c.name, _camp.c.lease_holder).where(_camp.c.id == campaign_id)
        ).first()
        if current is None:
            raise NotFoundError(f"no campaign with id {campaign_id}")
        raise LeaseLostError(
            f"campaign {current.name!r}: lease of {holder!r} was taken by {current.lease_holder!r}",
            hint="another flow run advances this campaign; stop this one",
        )


def take_over_lease(
    session: Session,
    *,
    campaign_id: int,
    holder: str,
    previous: str,
    ttl: timedelta,
    now: datetime,
) -> bool:
    """Take the lease from ``previous`` (a holder known to be dead), whatever its expiry.

    Conditional on ``previous`` still holding it, so when two runs see the same dead
    holder only one wins. The caller decides that ``previous`` is dead.
    """
    result = session.execute(
        sa.update(_camp)
        .where(_camp.c.id == campaign_id, _camp.c.lease_holder == previous)
        .values(lease_holder=holder, lease_expires_at=to_utc(now + ttl))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def forget_unplanned_campaign(session: Session, *, campaign_id: int, holder: str) -> bool:
    """Delete a campaign that never got planned (PENDING, no waves), with its events, if
    ``holder`` holds its lease; True if it was deleted.

    A run that fails before planning (bad secret, package not found, no eligible device,
    platform unreachable) calls this so it leaves no row behind: nothing was sent, and the
    name stays free for the corrected file."""
    campaign = get_campaign_by_id(session, campaign_id=campaign_id, for_update=True)
    if campaign.status is not CampaignStatus.PENDING or campaign.lease_holder != holder:
        return False
    has_waves = _read(session, select(Wave.id).where(Wave.campaign_id == campaign_id)).first()
    if has_waves is not None:
        return False
    events = Event.__table__  # type: ignore[attr-defined]
    session.execute(sa.delete(events).where(events.c.campaign_id == campaign_id))
    session.execute(sa.delete(_claim).where(_claim.c.campaign_id == campaign_id))
    session.execute(sa.delete(_camp).where(_camp.c.id == campaign_id))
    session.expunge(campaign)
    return True


def release_lease(session: Session, *, campaign_id: int, holder: str) -> bool:
    """Give the lease up if ``holder`` has it; returns whether it did."""
    result = session.execute(
        sa.update(_camp)
        .where(_camp.c.id == campaign_id, _camp.c.lease_holder == holder)
        .values(lease_holder=None, lease_expires_at=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------
# waves
# --------------------------------------------------------------------------------------


def create_waves(
    session: Session, *, campaign_id: int, waves: Sequence[WavePlan], now: datetime
) -> list[Wave]:
    """Create the campaign's waves (PENDING); idempotent for the same plan.

    If waves exist already and their indexes/names differ from ``waves``,
    :class:`ConflictError`: a started campaign's plan does not change under it.
    """
    existing = get_waves(session, campaign_id=campaign_id)
    if existing:
        if [(w.index, w.name) for w in existing] != [(p.index, p.name) for p in waves]:
            raise ConflictError(
                f"campaign id {campaign_id} already has waves "
                f"{[w.name for w in existing]}, not {[p.name for p in waves]}",
                hint="the wave plan of a started campaign cannot change",
            )
        return existing
    rows = [
        Wave(
            campaign_id=campaign_id,
            index=p.index,
            name=p.name,
            planned_size=p.planned_size,
            status=WaveStatus.PENDING,
            created_at=now,
            updated_at=now,
        )
        for p in waves
    ]
    session.add_all(rows)
    session.flush()
    return rows


def get_waves(session: Session, *, campaign_id: int) -> list[Wave]:
    """The campaign's waves in order."""
    stmt = select(Wave).where(Wave.campaign_id == campaign_id).order_by(col(Wave.index))
    return list(_read(session, stmt).all())


def get_wave(session: Session, *, campaign_id: int, index: int) -> Wave:
    """One wave by index; :class:`NotFoundError` if there is none."""
    wave = _read(
        session, select(Wave).where(Wave.campaign_id == campaign_id, Wave.index == index)
    ).first()
    if wave is None:
        raise NotFoundError(f"campaign id {campaign_id} has no wave {index}")
    return wave


def set_wave_status(
    session: Session,
    *,
    campaign_id: int,
    index: int,
    status: WaveStatus,
    now: datetime,
    reason: str | None = None,
    soak_until: datetime | None = None,
    data: Mapping[str, Any] | None = None,
    flow_run_id: str | None = None,
) -> Wave:
    """Move a wave to ``status`` (checked), stamping started/finished/soak; logs the event.

    ``data`` goes into the event: put the inputs of the decision there (counts, rates,
    thresholds). Setting the current status again is a no-op.
    """
    wave = get_wave(session, campaign_id=campaign_id, index=index)
    old = wave.status
    if old is status:
        return wave
    check_transition(old, status, subject=f"wave {index} ({wave.name})")
    wave.status, wave.updated_at, wave.status_reason = status, now, reason
    if status is WaveStatus.RUNNING and wave.started_at is None:
        wave.started_at = now
    if soak_until is not None:
        wave.soak_until = soak_until
    if status.is_terminal:
        wave.finished_at = now
    session.add(wave)
    session.flush()
    append_event(
        session,
        campaign_id=campaign_id,
        kind="wave_status",
        subject=f"wave {index} {wave.name}",
        now=now,
        flow_run_id=flow_run_id,
        data={"from": old.value, "to": status.value, "reason": reason, **(data or {})},
    )
    return wave


def record_approval(
    session: Session,
    *,
    campaign_id: int,
    index: int,
    decision: ApprovalDecision,
    by: str,
    now: datetime,
    comment: str | None = None,
    appointment_at: datetime | None = None,
) -> Wave:
    """Store an operator's approval decision for a wave (the engine moves its status)."""
    wave = get_wave(session, campaign_id=campaign_id, index=index)
    wave.approval_decision, wave.approval_by, wave.approval_comment = decision, by, comment
    wave.approval_at, wave.appointment_at, wave.updated_at = now, appointment_at, now
    session.add(wave)
    session.flush()
    append_event(
        session,
        campaign_id=campaign_id,
        kind="wave_approval",
        subject=f"wave {index} {wave.name}",
        actor=by,
        now=now,
        data={
            "decision": decision.value,
            "comment": comment,
            "appointment_at": appointment_at.isoformat() if appointment_at else None,
        },
    )
    return wave


# --------------------------------------------------------------------------------------
# device runs
# --------------------------------------------------------------------------------------


@_atomic
def add_device_runs(
    session: Session,
    *,
    campaign_id: int,
    devices: Iterable[NewDeviceRun | tuple[Any, ...]],
    now: datetime,
    claim: bool = True,
    batch_size: int = DEFAULT_BATCH,
) -> int:
    """Insert one PENDING row per device, streamed in batches; returns rows inserted.

    Devices already in the campaign are left as they are (so a resumed plan is harmless).
    With ``claim`` the campaign then claims all its devices (:func:`claim_devices`),
    raising :class:`DeviceClaimedError` if another campaign holds any; then none of the
    rows stay (the call runs in a SAVEPOINT). PostgreSQL streams the rows with COPY.
    """
    conn = session.connection()
    ph, stamp = _placeholder(conn), _bind_ts(conn, now)
    pending = DeviceRunStatus.PENDING.value
    sql = (
        "INSERT INTO device_run (campaign_id, device_id, wave_index, source_version,"
        " target_version, status, attempt, created_at, updated_at)"
        f" VALUES ({', '.join([ph] * 9)}) ON CONFLICT (campaign_id, device_id) DO NOTHING"
    )
    if conn.dialect.name == "postgresql":
        inserted = _pg_copy_device_runs(conn, campaign_id, devices, stamp)
        if claim:
            claim_devices(session, campaign_id=campaign_id, now=now)
        return inserted
    count = sa.select(sa.func.count()).select_from(_dr).where(_dr.c.campaign_id == campaign_id)
    # Drivers disagree on executemany rowcounts (psycopg reports -1 here): count instead.
    before = conn.execute(count).scalar_one()
    for batch in _batches(devices, batch_size):
        rows = [
            (
                campaign_id,
                d[0],
                d[1],
                d[2] if len(d) > 2 else None,
                d[3] if len(d) > 3 else None,
                pending,
                0,
                stamp,
                stamp,
            )
            for d in batch
        ]
        conn.exec_driver_sql(sql, rows)  # type: ignore[arg-type]
    inserted = int(conn.execute(count).scalar_one()) - before
    if claim:
        claim_devices(session, campaign_id=campaign_id, now=now)
    return inserted


def insert_claims(session: Session, *, campaign_id: int, source: Any) -> int:
    """Claim for ``campaign_id`` the devices ``source`` selects (device_id, campaign_id,
    claimed_at; ordered by device ID), skipping devices already claimed: one INSERT ...
    SELECT; returns how many claims the campaign gained, counted, since PostgreSQL gives
    no row count for this statement."""
    stmt = (
        _insert(session, _claim)
        .from_select(["device_id", "campaign_id", "claimed_at"], source)
        .on_conflict_do_nothing(index_elements=[_claim.c.device_id])
    )
    held = sa.select(sa.func.count()).where(_claim.c.campaign_id == campaign_id)
    before = int(session.execute(held).scalar_one())
    session.execute(stmt)
    return int(session.execute(held).scalar_one()) - before


@_atomic
def claim_devices(session: Session, *, campaign_id: int, now: datetime) -> int:
    """Claim every device of the campaign in one INSERT ... SELECT; returns new claims.

    The claim table's primary key is the device ID, so the database itself refuses a
    second campaign. Raises :class:`DeviceClaimedError` naming the other campaign(s) and
    a few devices; none of this call's claims stay (SAVEPOINT).
    """
    src = sa.select(
        _dr.c.device_id, _dr.c.campaign_id, sa.literal(to_utc(now), _claim.c.claimed_at.type)
    ).where(
        _dr.c.campaign_id == campaign_id,
        ~_status_in(_dr.c.status, {DeviceRunStatus.SKIPPED, DeviceRunStatus.CANCELLED}),
    )
    # One lock order for every campaign: two concurrent claimers wait, never deadlock.
    src = src.order_by(_dr.c.device_id)
    claimed = insert_claims(session, campaign_id=campaign_id, source=src)
    other = sa.and_(_claim.c.device_id == _dr.c.device_id, _claim.c.campaign_id != campaign_id)
    total = session.execute(
        sa.select(sa.func.count())
        .select_from(_dr.join(_claim, other))
        .where(_dr.c.campaign_id == campaign_id)
    ).scalar_one()
    if total:
        rows = session.execute(
            sa.select(_camp.c.name, _claim.c.device_id)
            .select_from(_dr.join(_claim, other).join(_camp, _camp.c.id == _claim.c.campaign_id))
            .where(_dr.c.campaign_id == campaign_id)
            .order_by(_camp.c.name, _claim.c.device_id)
            .limit(10)
        ).all()
        conflicts: dict[str, list[str]] = {}
        for name, device_id in rows:
            conflicts.setdefault(name, []).append(device_id)
        me = session.execute(sa.select(_camp.c.name).where(_camp.c.id == campaign_id)).scalar_one()
        raise DeviceClaimedError(campaign=me, conflicts=conflicts, total=total)
    return claimed


@_atomic
def add_skipped_device_runs(
    session: Session,
    *,
    campaign_id: int,
    devices: Iterable[tuple[str, str]],
    now: datetime,
    target_version: str | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> int:
    """Insert one SKIPPED row per ``(device_id, reason)`` (wave :data:`RESOLVE_SKIPPED_WAVE`,
    the reason in ``failure_detail``), streamed in batches; returns rows inserted.

    Devices already in the campaign are left as they are. SKIPPED rows are never claimed.
    """
    count = sa.select(sa.func.count()).select_from(_dr).where(_dr.c.campaign_id == campaign_id)
    before = session.execute(count).scalar_one()
    stamp = to_utc(now)
    stmt = _insert(session, _dr).on_conflict_do_nothing(
        index_elements=[_dr.c.campaign_id, _dr.c.device_id]
    )
    for batch in _batches(devices, batch_size):
        session.execute(
            stmt,
            [
                {
                    "campaign_id": campaign_id,
                    "device_id": device_id,
                    "wave_index": RESOLVE_SKIPPED_WAVE,
                    "target_version": target_version,
                    "status": DeviceRunStatus.SKIPPED.value,
                    "attempt": 0,
                    "failure_detail": reason,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "finished_at": stamp,
                }
                for device_id, reason in batch
            ],
        )
    return int(session.execute(count).scalar_one()) - before


def skip_reason_counts(
    session: Session, *, campaign_id: int, wave_index: int | None = None
) -> dict[str, int]:
    """SKIPPED devices per reason (their ``failure_detail``; "unknown" if unset), one GROUP BY."""
    return _counts_by(
        session, _dr.c.failure_detail, campaign_id, wave_index, {DeviceRunStatus.SKIPPED}
    )


def _counts_by(
    session: Session,
    column: Any,
    campaign_id: int,
    wave_index: int | None,
    statuses: set[DeviceRunStatus],
) -> dict[str, int]:
    """Devices in ``statuses`` per value of ``column`` ("unknown" if unset), one GROUP BY."""
    stmt = _device_filter(
        sa.select(column, sa.func.count()),
        campaign_id=campaign_id,
        wave_index=wave_index,
        statuses=statuses,
    ).group_by(column)
    out: dict[str, int] = {}
    for value, n in session.execute(stmt).all():
        out[value or "unknown"] = out.get(value or "unknown", 0) + n
    return out


def cancel_unsent_devices(
    session: Session, *, campaign_id: int, now: datetime, wave_index: int | None = None
) -> int:
    """CANCEL the devices never sent a task: PENDING ones, and QUEUED ones whose chunk is not
    live (neither an intent that may have reached the platform nor a submitted task).

    Final statuses (a failure, a timeout) stay as they are; returns how many changed.
    """
    live = sa.select(_chunk.c.id).where(
        _chunk.c.campaign_id == campaign_id,
        _status_in(_chunk.c.status, {ChunkStatus.INTENT, ChunkStatus.SUBMITTED}),
    )
    stmt = sa.update(_dr).where(
        _dr.c.campaign_id == campaign_id,
        sa.or_(
            _dr.c.status == DeviceRunStatus.PENDING.value,
            sa.and_(
                _dr.c.status == DeviceRunStatus.QUEUED.value,
                sa.or_(_dr.c.chunk_id.is_(None), _dr.c.chunk_id.not_in(live)),
            ),
        ),
    )
    if wave_index is not None:
        stmt = stmt.where(_dr.c.wave_index == wave_index)
    stamp = to_utc(now)
    result = session.execute(
        stmt.values(status=DeviceRunStatus.CANCELLED.value, updated_at=stamp, finished_at=stamp)
    )
    return max(result.rowcount, 0)  # type: ignore[attr-defined]


def release_claims(session: Session, *, campaign_id: int) -> int:
    """Release every device the campaign holds; returns how many."""
    result = session.execute(sa.delete(_claim).where(_claim.c.campaign_id == campaign_id))
    return max(result.rowcount, 0)  # type: ignore[attr-defined]


def skip_pending_devices(
    session: Session,
    *,
    campaign_id: int,
    device_ids: Iterable[str],
    reason: str,
    now: datetime,
    batch_size: int = DEFAULT_BATCH,
) -> list[str]:
    """SKIP the listed devices that are still PENDING (``reason`` in ``failure_detail``)
    and release their claims, so another campaign may take them; returns those changed."""
    stamp = to_utc(now)
    changed: list[str] = []
    for batch in _batches(device_ids, batch_size):
        pending = (
            session.execute(
                sa.select(_dr.c.device_id).where(
                    _dr.c.campaign_id == campaign_id,
                    _dr.c.status == DeviceRunStatus.PENDING.value,
                    _dr.c.device_id.in_(batch),
                )
            )
            .scalars()
            .all()
        )
        if not pending:
            continue
        session.execute(
            sa.update(_dr)
            .where(
                _dr.c.campaign_id == campaign_id,
                _dr.c.status == DeviceRunStatus.PENDING.value,
                _dr.c.device_id.in_(pending),
            )
            .values(
                status=DeviceRunStatus.SKIPPED.value,
                failure_detail=reason,
                updated_at=stamp,
                finished_at=stamp,
            )
        )
        session.execute(
            sa.delete(_claim).where(
                _claim.c.campaign_id == campaign_id, _claim.c.device_id.in_(pending)
            )
        )
        changed.extend(pending)
    return changed


def unknown_device_ids(
    session: Session,
    *,
    campaign_id: int,
    device_ids: Iterable[str],
    batch_size: int = DEFAULT_BATCH,
) -> Iterator[str]:
    """The given device IDs the campaign has no row for (never planned nor skipped), in
    their order; streamed in batches."""
    for batch in _batches(device_ids, batch_size):
        known = set(
            session.execute(
                sa.select(_dr.c.device_id).where(
                    _dr.c.campaign_id == campaign_id, _dr.c.device_id.in_(batch)
                )
            )
            .scalars()
            .all()
        )
        yield from (d for d in batch if d not in known)


def set_device_status(
    session: Session,
    *,
    campaign_id: int,
    status: DeviceRunStatus,
    now: datetime,
    device_ids: Iterable[str] | None = None,
    wave_index: int | None = None,
    failure_kind: str | None = None,
    failure_detail: str | None = None,
    batch_size: int = DEFAULT_BATCH,
    only_from: Collection[DeviceRunStatus] | None = None,
) -> int:
    """Move devices to ``status``: the listed ones, or all of the campaign (or wave).

    Only rows whose current status allows the move change (e.g. cancelling touches the
    PENDING/QUEUED/failed ones and leaves SUCCEEDED alone), and with ``only_from`` only
    rows in one of those statuses; returns how many changed.
    """
    values: dict[str, Any] = {"status": status.value, "updated_at": to_utc(now)}
    if failure_kind is not None or failure_detail is not None:
        values.update(failure_kind=failure_kind, failure_detail=failure_detail)
    if status.is_final:
        values["finished_at"] = to_utc(now)
    sources = allowed_sources(status)
    if only_from is not None:
        sources = sources & frozenset(only_from)
    base = sa.update(_dr).where(_dr.c.campaign_id == campaign_id, _status_in(_dr.c.status, sources))
    if wave_index is not None:
        base = base.where(_dr.c.wave_index == wave_index)
    if device_ids is None:
        return max(session.execute(base.values(**values)).rowcount, 0)  # type: ignore[attr-defined]
    changed = 0
    for batch in _batches(device_ids, batch_size):
        result = session.execute(base.where(_dr.c.device_id.in_(batch)).values(**values))
        changed += max(result.rowcount, 0)  # type: ignore[attr-defined]
    return changed


def record_device_results(
    session: Session,
    *,
    campaign_id: int,
    results: Iterable[DeviceResult],
    now: datetime,
    batch_size: int = DEFAULT_BATCH,
    strict: bool = False,
    chunk_id: int | None = None,
) -> int:
    """Store per-device outcomes in bulk (executemany per target status); returns rows changed.

    A result whose transition is not allowed from the row's current status (see
    :func:`~fleetwave.store.models.result_sources`: never from an unsent, PENDING, device),
    or for a device not in the campaign, is skipped; with ``strict`` that raises
    :class:`IllegalTransitionError` instead. Re-applying the same final result is a no-op
    that still counts as changed. With ``chunk_id`` only devices whose row still points at
    that chunk change: a late read of an old task never overwrites a device that has moved
    on to a retry or a rollback task.
    """
    conn = session.connection()
    ph, stamp = _placeholder(conn), _bind_ts(conn, now)
    if conn.dialect.name == "postgresql":
        return _pg_copy_results(conn, campaign_id, results, stamp, strict=strict, chunk_id=chunk_id)
    changed = 0
    for batch in _batches(results, batch_size):
        by_status: dict[DeviceRunStatus, list[tuple[Any, ...]]] = {}
        for r in batch:
            row: tuple[Any, ...] = (
                r.failure_kind,
                r.failure_detail,
                r.current_version,
                campaign_id,
                r.device_id,
            )
            by_status.setdefault(r.status, []).append(row if chunk_id is None else (*row, chunk_id))
        for status, tail in by_status.items():
            head = (stamp, stamp) if status.is_final else (stamp,)
            rows = [head + t for t in tail]
            sources = ", ".join(f"'{s.value}'" for s in sorted(result_sources(status)))
            finished = f", finished_at = {ph}" if status.is_final else ""
            # the status literal comes from our enum, never from input
            sql = (
                f"UPDATE device_run SET status = '{status.value}', updated_at = {ph}"
                f"{finished}, failure_kind = {ph}, failure_detail = {ph},"
                f" current_version = COALESCE({ph}, current_version)"
                f" WHERE campaign_id = {ph} AND device_id = {ph} AND status IN ({sources})"
                + ("" if chunk_id is None else f" AND chunk_id = {ph}")
            )
            n = max(conn.exec_driver_sql(sql, rows).rowcount, 0)  # type: ignore[arg-type]
            if strict and n != len(rows):
                raise IllegalTransitionError(
                    entity="DeviceRunStatus",
                    subject=f"campaign id {campaign_id}",
                    current=f"(not one of {sources})",
                    target=status.value,
                    count=len(rows) - n,
                )
            changed += n
    return changed


def _pg_temp(cur: Any, name: str, columns: str) -> None:
    # Dropped at commit or rollback; emptied here in case of an earlier call in this transaction.
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({columns}) ON COMMIT DROP")
    cur.execute(f"TRUNCATE {name}")


def _pg_copy_device_runs(
    conn: sa.Connection,
    campaign_id: int,
    devices: Iterable[NewDeviceRun | tuple[Any, ...]],
    stamp: Any,
) -> int:
    """PostgreSQL: stream the rows with COPY into a temp table, then one INSERT ... SELECT."""
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        _pg_temp(
            cur,
            "fw_new_device",
            "device_id varchar(128), wave_index integer,"
            " source_version varchar(100), target_version varchar(100)",
        )
        with cur.copy(
            "COPY fw_new_device (device_id, wave_index, source_version, target_version) FROM STDIN"
        ) as copy:
            for d in devices:
                copy.write_row(
                    (d[0], d[1], d[2] if len(d) > 2 else None, d[3] if len(d) > 3 else None)
                )
        cur.execute(
            "INSERT INTO device_run (campaign_id, device_id, wave_index, source_version,"
            " target_version, status, attempt, created_at, updated_at)"
            " SELECT %s, device_id, wave_index, source_version, target_version, %s, 0, %s, %s"
            " FROM fw_new_device ORDER BY device_id"
            " ON CONFLICT (campaign_id, device_id) DO NOTHING",
            (campaign_id, DeviceRunStatus.PENDING.value, stamp, stamp),
        )
        return max(cur.rowcount, 0)


_PG_MOVES = ", ".join(
    f"('{src.value}', '{dst.value}')"
    for src, targets in sorted(TRANSITIONS[DeviceRunStatus].items())
    if src not in UNSENT  # a reported result never moves a device that was never sent
    for dst in sorted(targets)
)
_PG_FINAL = ", ".join(f"'{s.value}'" for s in sorted(DeviceRunStatus) if s.is_final)


def _pg_copy_results(
    conn: sa.Connection,
    campaign_id: int,
    results: Iterable[DeviceResult],
    stamp: Any,
    *,
    strict: bool,
    chunk_id: int | None = None,
) -> int:
    """PostgreSQL: COPY the results into a temp table, then one UPDATE ... FROM it.

    The allowed moves are a VALUES list built from ``TRANSITIONS``, so the check is the
    same as the executemany path's ``status IN (...)``.
    """
    raw = conn.connection.driver_connection
    assert raw is not None
    sent = 0
    with raw.cursor() as cur:
        _pg_temp(
            cur,
            "fw_result",
            "device_id varchar(128), status varchar(24), failure_kind varchar(64),"
            " failure_detail text, current_version varchar(100)",
        )
        with cur.copy(
            "COPY fw_result (device_id, status, failure_kind, failure_detail, current_version)"
            " FROM STDIN"
        ) as copy:
            for r in results:
                copy.write_row(
                    (
                        r.device_id,
                        r.status.value,
                        r.failure_kind,
                        r.failure_detail,
                        r.current_version,
                    )
                )
                sent += 1
        cur.execute("ANALYZE fw_result")  # so the planner hash-joins a million rows
        cur.execute(
            "UPDATE device_run AS d SET status = r.status, updated_at = %s,"
            f" finished_at = CASE WHEN r.status IN ({_PG_FINAL}) THEN %s ELSE d.finished_at END,"
            " failure_kind = r.failure_kind, failure_detail = r.failure_detail,"
            " current_version = COALESCE(r.current_version, d.current_version)"
            " FROM fw_result AS r"
            " WHERE d.campaign_id = %s AND d.device_id = r.device_id"
            f" AND (d.status, r.status) IN (VALUES {_PG_MOVES})"
            + ("" if chunk_id is None else " AND d.chunk_id = %s"),
            (stamp, stamp, campaign_id) + (() if chunk_id is None else (chunk_id,)),
        )
        changed = max(cur.rowcount, 0)
    if strict and changed != sent:
        raise IllegalTransitionError(
            entity="DeviceRunStatus",
            subject=f"campaign id {campaign_id}",
            current="(a status that does not allow the result)",
            target="(the reported results)",
            count=sent - changed,
        )
    return changed


def get_device_run(session: Session, *, campaign_id: int, device_id: str) -> DeviceRun | None:
    """One device's row in the campaign, or None."""
    return session.get(DeviceRun, (campaign_id, device_id), populate_existing=True)


def _device_filter(
    stmt: Any,
    *,
    campaign_id: int,
    wave_index: int | None,
    statuses: Iterable[DeviceRunStatus] | None,
    chunk_id: int | None = None,
) -> Any:
    stmt = stmt.where(_dr.c.campaign_id == campaign_id)
    if wave_index is not None:
        stmt = stmt.where(_dr.c.wave_index == wave_index)
    if statuses is not None:
        stmt = stmt.where(_status_in(_dr.c.status, set(statuses)))
    if chunk_id is not None:
        stmt = stmt.where(_dr.c.chunk_id == chunk_id)
    return stmt


def iter_device_ids(
    session: Session,
    *,
    campaign_id: int,
    wave_index: int | None = None,
    statuses: Iterable[DeviceRunStatus] | None = None,
    batch_size: int = 1000,
) -> Iterator[str]:
    """Device IDs of the campaign (optionally one wave / some statuses), sorted, streamed.

    Keyset pagination by device ID: memory stays at one batch, and the order is stable.
    Rows whose status changes while iterating may be seen or not, never twice.
    """
    status_set = set(statuses) if statuses is not None else None
    last: str | None = None
    while True:
        stmt = _device_filter(
            sa.select(_dr.c.device_id),
            campaign_id=campaign_id,
            wave_index=wave_index,
            statuses=status_set,
        )
        if last is not None:
            stmt = stmt.where(_dr.c.device_id > last)
        ids = session.execute(stmt.order_by(_dr.c.device_id).limit(batch_size)).scalars().all()
        yield from ids
        if len(ids) < batch_size:
            return
        last = ids[-1]


def iter_device_runs(
    session: Session,
    *,
    campaign_id: int,
    wave_index: int | None = None,
    statuses: Iterable[DeviceRunStatus] | None = None,
    batch_size: int = 1000,
) -> Iterator[DeviceRun]:
    """Like :func:`iter_device_ids` but whole rows (detached snapshots, one batch in memory)."""
    status_set = set(statuses) if statuses is not None else None
    last: str | None = None
    while True:
        stmt = _device_filter(
            select(DeviceRun), campaign_id=campaign_id, wave_index=wave_index, statuses=status_set
        )
        if last is not None:
            stmt = stmt.where(col(DeviceRun.device_id) > last)
        rows = list(_read(session, stmt.order_by(col(DeviceRun.device_id)).limit(batch_size)).all())
        for row in rows:
            session.expunge(row)
        yield from rows
        if len(rows) < batch_size:
            return
        last = rows[-1].device_id


def iter_device_listing(
    session: Session,
    *,
    campaign_id: int,
    wave_index: int | None = None,
    statuses: Iterable[DeviceRunStatus] | None = None,
    batch_size: int = 1000,
) -> Iterator[DeviceListing]:
    """The campaign's devices with their task's operationId, sorted by device ID, streamed.

    Keyset pagination like :func:`iter_device_ids`: one batch of plain tuples in memory, so
    listing a million devices costs what listing a thousand does.
    """
    status_set = set(statuses) if statuses is not None else None
    columns = (
        _dr.c.device_id,
        _dr.c.wave_index,
        _dr.c.status,
        _dr.c.attempt,
        _dr.c.failure_kind,
        _dr.c.failure_detail,
        _dr.c.current_version,
        _chunk.c.operation_id,
        _dr.c.finished_at,
    )
    last: str | None = None
    while True:
        stmt = _device_filter(
            sa.select(*columns).select_from(_dr.outerjoin(_chunk, _chunk.c.id == _dr.c.chunk_id)),
            campaign_id=campaign_id,
            wave_index=wave_index,
            statuses=status_set,
        )
        if last is not None:
            stmt = stmt.where(_dr.c.device_id > last)
        rows = session.execute(stmt.order_by(_dr.c.device_id).limit(batch_size)).all()
        for row in rows:
            yield DeviceListing(
                device_id=row[0],
                wave_index=row[1],
                status=DeviceRunStatus(row[2]),
                attempt=row[3],
                failure_kind=row[4],
                failure_detail=row[5],
                current_version=row[6],
                operation_id=row[7],
                finished_at=row[8],
            )
        if len(rows) < batch_size:
            return
        last = rows[-1][0]


def iter_task_listing(
    session: Session, *, campaign_id: int, batch_size: int = 500
) -> Iterator[TaskListing]:
    """The campaign's chunks in creation order (oldest first), streamed by keyset on the id;
    each chunk's device list is not read."""
    columns = (
        _chunk.c.id,
        _chunk.c.wave_index,
        _chunk.c.kind,
        _chunk.c.round,
        _chunk.c.seq,
        _chunk.c.device_count,
        _chunk.c.status,
        _chunk.c.operation_id,
        _chunk.c.platform_status,
        _chunk.c.submitted_at,
        _chunk.c.finished_at,
    )
    last = 0
    while True:
        stmt = (
            sa.select(*columns)
            .where(_chunk.c.campaign_id == campaign_id, _chunk.c.id > last)
            .order_by(_chunk.c.id)
            .limit(batch_size)
        )
        rows = session.execute(stmt).all()
        for r in rows:
            yield TaskListing(
                r[0], r[1], ChunkKind(r[2]), r[3], r[4], r[5], ChunkStatus(r[6]), *r[7:]
            )
        if len(rows) < batch_size:
            return
        last = rows[-1][0]


def device_status_counts(
    session: Session, *, campaign_id: int, wave_index: int | None = None
) -> dict[DeviceRunStatus, int]:
    """Devices per status (SQL GROUP BY); statuses with no device are absent."""
    stmt = _device_filter(
        sa.select(_dr.c.status, sa.func.count()),
        campaign_id=campaign_id,
        wave_index=wave_index,
        statuses=None,
    ).group_by(_dr.c.status)
    return {DeviceRunStatus(s): n for s, n in session.execute(stmt).all()}


def device_status_counts_by_wave(
    session: Session, *, campaign_id: int
) -> dict[int, dict[DeviceRunStatus, int]]:
    """``{wave_index: {status: count}}`` from one GROUP BY."""
    stmt = (
        sa.select(_dr.c.wave_index, _dr.c.status, sa.func.count())
        .where(_dr.c.campaign_id == campaign_id)
        .group_by(_dr.c.wave_index, _dr.c.status)
    )
    out: dict[int, dict[DeviceRunStatus, int]] = {}
    for wave_index, s, n in session.execute(stmt).all():
        out.setdefault(wave_index, {})[DeviceRunStatus(s)] = n
    return out


_OUTCOME_STATUSES = (
    DeviceRunStatus.SUCCEEDED,
    DeviceRunStatus.FAILED,
    DeviceRunStatus.TIMED_OUT,
    DeviceRunStatus.ROLLED_BACK,
    DeviceRunStatus.ROLLBACK_FAILED,
)


def iter_finished_devices(
    session: Session, *, campaign_id: int, yield_per: int = DEFAULT_BATCH
) -> Iterator[FinishedDevice]:
    """Every device of the campaign with a platform outcome and a ``finished_at``, streamed.

    Outcomes: SUCCEEDED, FAILED, TIMED_OUT, ROLLED_BACK, ROLLBACK_FAILED, and CANCELLED
    after a failure. One statement read ``yield_per`` rows at a time (memory stays at one
    batch), in no particular order.
    """
    stmt = sa.select(_dr.c.wave_index, _dr.c.status, _dr.c.finished_at).where(
        _dr.c.campaign_id == campaign_id,
        _dr.c.finished_at.is_not(None),
        sa.or_(
            _dr.c.status.in_(_OUTCOME_STATUSES),
            sa.and_(_dr.c.status == DeviceRunStatus.CANCELLED, _dr.c.failure_kind.is_not(None)),
        ),
    )
    for wave_index, status, finished_at in session.execute(
        stmt.execution_options(yield_per=yield_per)
    ):
        yield FinishedDevice(wave_index, DeviceRunStatus(status), finished_at)


def failure_kind_counts(
    session: Session, *, campaign_id: int, wave_index: int | None = None
) -> dict[str, int]:
    """FAILED and TIMED_OUT devices per ``failure_kind`` ("unknown" if unset), one GROUP BY.

    ROLLBACK_FAILED devices are not counted: their upgrade succeeded (their failure is the
    rollback's), so the thresholds count them as successes.
    """
    return _counts_by(
        session,
        _dr.c.failure_kind,
        campaign_id,
        wave_index,
        {DeviceRunStatus.FAILED, DeviceRunStatus.TIMED_OUT},
    )


# --------------------------------------------------------------------------------------
# chunks (= platform tasks): intent before the call, operationId after
# --------------------------------------------------------------------------------------


@_atomic
def create_chunk_intent(
    session: Session,
    *,
    campaign_id: int,
    wave_index: int,
    round: int,
    seq: int,
    kind: ChunkKind,
    package_kind: str,
    file_id: str,
    policy: Mapping[str, Any],
    device_ids: Sequence[str],
    now: datetime,
    connection_key: str = "",
) -> Chunk:
    """Write the intent to create one platform task, and queue its devices on it.

    ``connection_key`` names the platform connection the task will live on (operationIds
    are unique per connection). Commit this BEFORE calling the platform. The slot
    ``(campaign, kind, wave_index, round, seq)`` is unique: writing the same intent again
    returns the stored chunk (same devices) or raises :class:`ConflictError` (different
    devices). Each device must be in a status that may be queued (PENDING, FAILED,
    TIMED_OUT for an upgrade; SUCCEEDED, ROLLBACK_FAILED for a rollback) or the whole call
    raises :class:`IllegalTransitionError`; its ``attempt`` goes up by one.
    """
    existing = _read(
        session,
        select(Chunk).where(
            Chunk.campaign_id == campaign_id,
            Chunk.kind == kind,
            Chunk.wave_index == wave_index,
            Chunk.round == round,
            Chunk.seq == seq,
        ),
    ).first()
    if existing is not None:
        if sorted(existing.device_ids) != sorted(device_ids):
            raise ConflictError(
                f"chunk {existing.id} (wave {wave_index}, round {round}, seq {seq}) was written "
                f"for {existing.device_count} other device(s)",
                hint="the plan must be deterministic for the same inputs",
            )
        return existing
    ids = list(device_ids)
    if len(set(ids)) != len(ids):
        raise ConflictError(f"chunk wave {wave_index} round {round} seq {seq} lists a device twice")
    chunk = Chunk(
        campaign_id=campaign_id,
        wave_index=wave_index,
        round=round,
        seq=seq,
        kind=kind,
        package_kind=package_kind,
        file_id=file_id,
        policy=json.loads(json.dumps(policy, default=str)),
        device_ids=ids,
        device_count=len(ids),
        status=ChunkStatus.INTENT,
        connection_key=connection_key,
        created_at=now,
        updated_at=now,
    )
    session.add(chunk)
    session.flush()
    target = DeviceRunStatus.QUEUED if kind is ChunkKind.UPGRADE else DeviceRunStatus.ROLLING_BACK
    # Only rows not already in a chunk: a device is never queued on two tasks at once.
    sources = allowed_sources(target) - {DeviceRunStatus.QUEUED, DeviceRunStatus.ROLLING_BACK}
    moved = 0
    for batch in _batches(ids, DEFAULT_BATCH):
        result = session.execute(
            sa.update(_dr)
            .where(
                _dr.c.campaign_id == campaign_id,
                _dr.c.device_id.in_(batch),
                _status_in(_dr.c.status, sources),
            )
            .values(
                chunk_id=chunk.id,
                status=target.value,
                attempt=_dr.c.attempt + 1,
                updated_at=to_utc(now),
                finished_at=None,
            )
        )
        moved += max(result.rowcount, 0)  # type: ignore[attr-defined]
    if moved != len(ids):
        raise IllegalTransitionError(
            entity="DeviceRunStatus",
            subject=f"chunk wave {wave_index} round {round} seq {seq}",
            current="(not one of " + ", ".join(sorted(s.value for s in sources)) + ")",
            target=target.value,
            count=len(ids) - moved,
        )
    return chunk


@_atomic
def record_operation_id(
    session: Session,
    *,
    chunk_id: int,
    operation_id: str,
    now: datetime,
    reconciled: bool = False,
) -> Chunk:
    """The platform created the chunk's task: store its operationId; devices -> SUBMITTED.

    ``reconciled`` marks an id found by searching the platform after a crash. Recording
    the same id twice is a no-op; a different one raises :class:`ConflictError`. An id
    another chunk of the same platform connection holds raises
    :class:`OperationIdCollisionError` (nothing is written; the intent stays an intent).
    """
    chunk = get_chunk(session, chunk_id=chunk_id)
    if chunk.operation_id is not None:
        if chunk.operation_id == operation_id:
            return chunk
        raise ConflictError(
            f"chunk {chunk_id} already has operationId {chunk.operation_id}, not {operation_id}"
        )
    check_transition(chunk.status, ChunkStatus.SUBMITTED, subject=f"chunk {chunk_id}")
    holder = get_chunk_by_operation_id(
        session, operation_id=operation_id, connection_key=chunk.connection_key
    )
    if holder is not None:
        raise _collision(session, chunk, holder, operation_id)
    try:
        with session.begin_nested():
            chunk.operation_id, chunk.status = operation_id, ChunkStatus.SUBMITTED
            chunk.reconciled, chunk.submitted_at, chunk.updated_at = reconciled, now, now
            session.add(chunk)
            session.flush()
    except sa.exc.IntegrityError as exc:  # another process recorded the same id meanwhile
        chunk = get_chunk(session, chunk_id=chunk_id)
        holder = get_chunk_by_operation_id(
            session, operation_id=operation_id, connection_key=chunk.connection_key
        )
        if holder is None or holder.id == chunk_id:
            raise
        raise _collision(session, chunk, holder, operation_id) from exc
    if chunk.kind is ChunkKind.UPGRADE:
        session.execute(
            sa.update(_dr)
            .where(
                _dr.c.chunk_id == chunk_id,
                _dr.c.status == DeviceRunStatus.QUEUED.value,
            )
            .values(status=DeviceRunStatus.SUBMITTED.value, updated_at=to_utc(now))
        )
    return chunk


@_atomic
def abandon_chunk(session: Session, *, chunk_id: int, reason: str, now: datetime) -> Chunk:
    """An intent the platform never turned into a task: mark it ABANDONED, free its devices.

    Devices go back to PENDING (upgrade) or SUCCEEDED (rollback) with the attempt undone,
    so the next round queues them again.
    """
    chunk = get_chunk(session, chunk_id=chunk_id)
    check_transition(chunk.status, ChunkStatus.ABANDONED, subject=f"chunk {chunk_id}")
    chunk.status, chunk.note, chunk.updated_at, chunk.finished_at = (
        ChunkStatus.ABANDONED,
        reason,
        now,
        now,
    )
    session.add(chunk)
    session.flush()
    if chunk.kind is ChunkKind.UPGRADE:
        was, back = DeviceRunStatus.QUEUED, DeviceRunStatus.PENDING
    else:
        was, back = DeviceRunStatus.ROLLING_BACK, DeviceRunStatus.SUCCEEDED
    session.execute(
        sa.update(_dr)
        .where(_dr.c.chunk_id == chunk_id, _dr.c.status == was.value)
        .values(status=back.value, chunk_id=None, attempt=_dr.c.attempt - 1, updated_at=to_utc(now))
    )
    append_event(
        session,
        campaign_id=chunk.campaign_id,
        kind="chunk_abandoned",
        subject=f"chunk {chunk_id}",
        now=now,
        data={"reason": reason, "devices": chunk.device_count},
    )
    return chunk


_PLATFORM_STATUS_WIDTH = 24  # chunk.platform_status is VARCHAR(24)


def record_chunk_poll(
    session: Session,
    *,
    chunk_id: int,
    platform_status: str | None,
    now: datetime,
    stats: Mapping[str, int] | None = None,
) -> None:
    """Store what the last poll of the chunk's task said: the platform adapter's memo
    (handed back to it next round; one longer than the column is dropped) and the
    per-outcome device counts."""
    if platform_status is not None and len(platform_status) > _PLATFORM_STATUS_WIDTH:
        platform_status = None
    values: dict[str, Any] = {
        "platform_status": platform_status,
        "last_polled_at": to_utc(now),
        "updated_at": to_utc(now),
    }
    if stats is not None:
        values["stats"] = dict(stats)
    result = session.execute(sa.update(_chunk).where(_chunk.c.id == chunk_id).values(**values))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFoundError(f"no chunk with id {chunk_id}")


def finish_chunk(
    session: Session, *, chunk_id: int, now: datetime, platform_status: str | None = None
) -> Chunk:
    """The task is final and its per-device results are stored: SUBMITTED -> FINISHED."""
    chunk = get_chunk(session, chunk_id=chunk_id)
    if chunk.status is ChunkStatus.FINISHED:
        return chunk
    check_transition(chunk.status, ChunkStatus.FINISHED, subject=f"chunk {chunk_id}")
    chunk.status, chunk.finished_at, chunk.updated_at = ChunkStatus.FINISHED, now, now
    if platform_status is not None:
        chunk.platform_status = platform_status
    session.add(chunk)
    session.flush()
    return chunk


def get_chunk(session: Session, *, chunk_id: int) -> Chunk:
    """One chunk by id; :class:`NotFoundError` if there is none."""
    chunk = session.get(Chunk, chunk_id, populate_existing=True)
    if chunk is None:
        raise NotFoundError(f"no chunk with id {chunk_id}")
    return chunk


def get_chunk_by_operation_id(
    session: Session, *, operation_id: str, connection_key: str | None = None
) -> Chunk | None:
    """The chunk whose platform task has this operationId on ``connection_key``, or None.

    OperationIds are unique per platform connection only: without ``connection_key`` the
    first of possibly several chunks (one per connection) is returned.
    """
    stmt = select(Chunk).where(Chunk.operation_id == operation_id)
    if connection_key is not None:
        stmt = stmt.where(Chunk.connection_key == connection_key)
    return _read(session, stmt.order_by(col(Chunk.id))).first()


def _collision(
    session: Session, chunk: Chunk, holder: Chunk, operation_id: str
) -> OperationIdCollisionError:
    assert chunk.id is not None and holder.id is not None
    names = dict(
        session.execute(
            sa.select(_camp.c.id, _camp.c.name).where(
                _camp.c.id.in_({chunk.campaign_id, holder.campaign_id})
            )
        ).all()
    )
    return OperationIdCollisionError(
        operation_id=operation_id,
        connection_key=chunk.connection_key,
        chunk_id=chunk.id,
        campaign=names.get(chunk.campaign_id, str(chunk.campaign_id)),
        devices=chunk.device_count,
        other_chunk_id=holder.id,
        other_campaign=names.get(holder.campaign_id, str(holder.campaign_id)),
    )


@_atomic
def mark_operation_id_collision(
    session: Session, *, chunk_id: int, operation_id: str, other_chunk_id: int, now: datetime
) -> Chunk:
    """Keep an intent whose new task got an operationId another chunk holds, and say so.

    The chunk stays an INTENT with its devices QUEUED on it (so no round resubmits them);
    ``collided_operation_id`` makes every later reconciliation stop on it instead of
    abandoning it. Appends an ``operation_id_collision`` event.
    """
    chunk = get_chunk(session, chunk_id=chunk_id)
    chunk.collided_operation_id, chunk.updated_at = operation_id, now
    chunk.note = f"operationId {operation_id} is held by chunk {other_chunk_id}"
    session.add(chunk)
    session.flush()
    append_event(
        session,
        campaign_id=chunk.campaign_id,
        kind="operation_id_collision",
        subject=f"chunk {chunk_id}",
        now=now,
        actor="engine",
        data={
            "operation_id": operation_id,
            "connection_key": chunk.connection_key,
            "other_chunk": other_chunk_id,
            "devices": chunk.device_count,
        },
    )
    return chunk


def has_chunks_on_connection(session: Session, *, campaign_id: int, connection_key: str) -> bool:
    """Whether the campaign wrote any chunk (intent or task) for this platform connection."""
    stmt = (
        sa.select(_chunk.c.id)
        .where(_chunk.c.campaign_id == campaign_id, _chunk.c.connection_key == connection_key)
        .limit(1)
    )
    return session.execute(stmt).first() is not None


def assign_unkeyed_chunks(
    session: Session, *, campaign_id: int, connection_key: str, now: datetime
) -> int:
    """Give the campaign's chunks written before connection keys existed (empty key) this one.

    Skips a chunk whose operationId the connection already holds (it would collide). Returns
    how many chunks got the key.
    """
    held = (
        sa.select(_chunk.c.operation_id)
        .where(_chunk.c.connection_key == connection_key, _chunk.c.operation_id.is_not(None))
        .scalar_subquery()
    )
    result = session.execute(
        sa.update(_chunk)
        .where(
            _chunk.c.campaign_id == campaign_id,
            _chunk.c.connection_key == "",
            sa.or_(_chunk.c.operation_id.is_(None), _chunk.c.operation_id.not_in(held)),
        )
        .values(connection_key=connection_key, updated_at=to_utc(now))
    )
    return max(result.rowcount, 0)  # type: ignore[attr-defined]


def discard_unsent_plan(session: Session, *, campaign_id: int) -> int:
    """Forget the plan (waves, device rows, claims) of a campaign that never wrote a chunk.

    The next run resolves and plans afresh (skipping devices already on the target
    version then). Raises :class:`ConflictError` once any chunk exists. Returns the
    number of device rows removed.
    """
    if session.execute(
        sa.select(_chunk.c.id).where(_chunk.c.campaign_id == campaign_id).limit(1)
    ).first():
        raise ConflictError(f"campaign {campaign_id} has sent tasks: its plan is kept")
    _wave = Wave.__table__  # type: ignore[attr-defined]
    removed = session.execute(sa.delete(_dr).where(_dr.c.campaign_id == campaign_id))
    session.execute(sa.delete(_claim).where(_claim.c.campaign_id == campaign_id))
    session.execute(sa.delete(_wave).where(_wave.c.campaign_id == campaign_id))
    return max(removed.rowcount, 0)  # type: ignore[attr-defined]


def campaign_devices_among(
    session: Session,
    *,
    campaign_id: int,
    device_ids: Iterable[str],
    statuses: Iterable[DeviceRunStatus] | None = None,
) -> set[str]:
    """Which of ``device_ids`` the campaign holds (in ``statuses``, if given).

    Looks up only the given IDs, 500 per query, so the answer is bounded by the input and
    the campaign's device rows are never loaded.
    """
    found: set[str] = set()
    for part in _batches(dict.fromkeys(device_ids), _IN_CLAUSE):
        stmt = sa.select(_dr.c.device_id).where(
            _dr.c.campaign_id == campaign_id, _dr.c.device_id.in_(part)
        )
        if statuses is not None:
            stmt = stmt.where(_status_in(_dr.c.status, statuses))
        found.update(str(d) for (d,) in session.execute(stmt))
    return found


def list_chunks(
    session: Session,
    *,
    campaign_id: int,
    wave_index: int | None = None,
    statuses: Iterable[ChunkStatus] | None = None,
    kind: ChunkKind | None = None,
) -> list[Chunk]:
    """The campaign's chunks in creation order, optionally filtered."""
    stmt = select(Chunk).where(Chunk.campaign_id == campaign_id)
    if wave_index is not None:
        stmt = stmt.where(Chunk.wave_index == wave_index)
    if statuses is not None:
        stmt = stmt.where(col(Chunk.status).in_(list(statuses)))
    if kind is not None:
        stmt = stmt.where(Chunk.kind == kind)
    return list(_read(session, stmt.order_by(col(Chunk.id))).all())


def list_intents(session: Session, *, campaign_id: int) -> list[Chunk]:
    """Intents without an operationId (status INTENT): reconcile these before resubmitting."""
    return list_chunks(session, campaign_id=campaign_id, statuses=[ChunkStatus.INTENT])


def list_active_chunks(session: Session, *, campaign_id: int | None = None) -> list[Chunk]:
    """SUBMITTED chunks (tasks that may still run), oldest first; all campaigns if None."""
    stmt = select(Chunk).where(Chunk.status == ChunkStatus.SUBMITTED)
    if campaign_id is not None:
        stmt = stmt.where(Chunk.campaign_id == campaign_id)
    return list(_read(session, stmt.order_by(col(Chunk.id))).all())


def chunk_counts_by_wave(session: Session, *, campaign_id: int) -> dict[tuple[int, ChunkKind], int]:
    """Chunks that became platform tasks (have an operationId), per (wave, kind); one GROUP BY."""
    stmt = (
        sa.select(_chunk.c.wave_index, _chunk.c.kind, sa.func.count())
        .where(_chunk.c.campaign_id == campaign_id, _chunk.c.operation_id.is_not(None))
        .group_by(_chunk.c.wave_index, _chunk.c.kind)
    )
    return {(wave_index, ChunkKind(kind)): n for wave_index, kind, n in session.execute(stmt)}


def iter_task_devices(
    session: Session, *, campaign_id: int, kind: ChunkKind, yield_per: int = 50
) -> Iterator[TaskDevices]:
    """The campaign's chunks of ``kind`` that became platform tasks, newest first, streamed.

    Newest first, so the first task listing a device is the latest one it was sent. At
    most ``yield_per`` chunks (each up to the platform's task limit of IDs) are in memory.
    """
    stmt = (
        sa.select(
            _chunk.c.wave_index, _chunk.c.device_ids, _chunk.c.finished_at, _chunk.c.updated_at
        )
        .where(
            _chunk.c.campaign_id == campaign_id,
            _chunk.c.kind == kind,
            _chunk.c.operation_id.is_not(None),
        )
        .order_by(_chunk.c.id.desc())
    )
    for wave_index, device_ids, finished_at, updated_at in session.execute(
        stmt.execution_options(yield_per=yield_per)
    ):
        yield TaskDevices(wave_index, list(device_ids), finished_at, updated_at)


_REF_COLUMNS = (
    _chunk.c.id,
    _chunk.c.campaign_id,
    _chunk.c.kind,
    _chunk.c.status,
    _chunk.c.package_kind,
)


def _chunk_ref(cid: int, campaign_id: int, kind: Any, status: Any, package_kind: str) -> ChunkRef:
    return ChunkRef(cid, campaign_id, ChunkKind(kind), ChunkStatus(status), package_kind)


def chunk_refs_by_operation_id(
    session: Session,
    *,
    operation_ids: Iterable[str],
    connection_keys: Collection[str] | None = None,
) -> dict[str, ChunkRef]:
    """``{operationId: ChunkRef}`` for the ids some chunk carries (others are absent).

    OperationIds are unique per platform connection: ``connection_keys`` limits the lookup
    to chunks of those connections (and to chunks written before keys existed, whose key is
    empty), and an id that several chunks carry (one per connection) is absent, as it
    cannot be placed. Batches the lookup (one query per 500 ids) and never
    loads the chunks' device lists; for one id with the whole row, see
    :func:`get_chunk_by_operation_id`.
    """
    found: dict[str, ChunkRef] = {}
    ambiguous: set[str] = set()
    keys = sorted({"", *connection_keys}) if connection_keys is not None else None
    for part in _batches(operation_ids, _IN_CLAUSE):
        stmt = sa.select(_chunk.c.operation_id, *_REF_COLUMNS).where(
            _chunk.c.operation_id.in_(part)
        )
        if keys is not None:
            stmt = stmt.where(_chunk.c.connection_key.in_(keys))
        for op, *ref in session.execute(stmt):
            if op in found:
                ambiguous.add(op)
            found[op] = _chunk_ref(*ref)
    for op in ambiguous:
        del found[op]
    return found


def active_chunk_refs_by_device(
    session: Session, *, device_ids: Iterable[str]
) -> dict[str, list[ChunkRef]]:
    """``{device_id: [ChunkRef, ...]}``: the SUBMITTED chunks each device's runs point at.

    Across campaigns (a device may sit in one active chunk per campaign); devices in none
    are absent.
    """
    found: dict[str, list[ChunkRef]] = {}
    for part in _batches(device_ids, _IN_CLAUSE):
        rows = session.execute(
            sa.select(_dr.c.device_id, *_REF_COLUMNS)
            .join(_chunk, _chunk.c.id == _dr.c.chunk_id)
            .where(
                _dr.c.device_id.in_(part),
                _chunk.c.status == ChunkStatus.SUBMITTED.value,
            )
        )
        for device_id, *ref in rows:
            found.setdefault(device_id, []).append(_chunk_ref(*ref))
    return found


def chunk_members(
    session: Session, *, chunk_ids: Iterable[int], device_ids: Iterable[str]
) -> set[tuple[int, str]]:
    """(chunk id, device id) pairs of device runs that currently point at one of the chunks.

    Only ``device_ids`` are looked up (in batches), so the answer is at most that many pairs.
    """
    chunks = sorted(set(chunk_ids))
    pairs: set[tuple[int, str]] = set()
    if not chunks:
        return pairs
    for part in _batches(device_ids, _IN_CLAUSE):
        rows = session.execute(
            sa.select(_dr.c.chunk_id, _dr.c.device_id).where(
                _dr.c.chunk_id.in_(chunks), _dr.c.device_id.in_(part)
            )
        )
        pairs.update((int(c), str(d)) for c, d in rows)
    return pairs


# A chunk's ``stats`` hold the last progress read's device counts keyed by the platform's
# neutral outcome words (``OutcomeCounts.as_dict``); keys an older engine wrote (a
# platform's own status words) are not among these and read as absent.
_POLL_KEYS = ("succeeded", "failed", "cancelled", "timed_out")
# the spec's failure kind of a FAILED device run -> its key above
_KEY_OF_FAILURE_KIND = {"fail": "failed", "stop": "cancelled", "timeout": "timed_out"}


def active_chunk_figures(
    session: Session,
    *,
    campaign_id: int,
    wave_index: int | None = None,
    kind: ChunkKind = ChunkKind.UPGRADE,
) -> list[ChunkPollFigures]:
    """Per active (SUBMITTED) chunk of ``kind`` that was polled: the last poll's final-outcome
    counts (``succeeded``, ``failed``, ``cancelled``, ``timed_out``) and how many of its
    devices the store already holds as final, by the same keys.

    Two statements whatever the chunk count: the chunks' stats, and one GROUP BY over their
    device runs (only rows that point at the chunk, i.e. results of that task).
    """
    where = [
        _chunk.c.campaign_id == campaign_id,
        _chunk.c.status == ChunkStatus.SUBMITTED.value,
        _chunk.c.kind == kind.value,
    ]
    if wave_index is not None:
        where.append(_chunk.c.wave_index == wave_index)
    rows = session.execute(
        sa.select(_chunk.c.id, _chunk.c.wave_index, _chunk.c.round, _chunk.c.stats).where(*where)
    ).all()
    polled = {
        int(cid): (int(w), int(r), {k: int((st or {}).get(k) or 0) for k in _POLL_KEYS})
        for cid, w, r, st in rows
        if st
    }
    if not polled:
        return []
    recorded: dict[int, dict[str, int]] = {cid: {} for cid in polled}
    finals = {
        DeviceRunStatus.SUCCEEDED.value,
        DeviceRunStatus.FAILED.value,
        DeviceRunStatus.TIMED_OUT.value,
    }
    grouped = session.execute(
        sa.select(_dr.c.chunk_id, _dr.c.status, _dr.c.failure_kind, sa.func.count())
        .select_from(_dr.join(_chunk, _chunk.c.id == _dr.c.chunk_id))
        .where(*where, _dr.c.campaign_id == campaign_id, _dr.c.status.in_(finals))
        .group_by(_dr.c.chunk_id, _dr.c.status, _dr.c.failure_kind)
    ).all()
    for cid, status, failure_kind, n in grouped:
        if int(cid) not in recorded:
            continue
        if status == DeviceRunStatus.SUCCEEDED.value:
            key = "succeeded"
        elif status == DeviceRunStatus.TIMED_OUT.value:
            key = "timed_out"
        else:
            key = _KEY_OF_FAILURE_KIND.get(failure_kind or "", "failed")
        per = recorded[int(cid)]
        per[key] = per.get(key, 0) + int(n)
    return [
        ChunkPollFigures(cid, w, r, stats, recorded[cid])
        for cid, (w, r, stats) in sorted(polled.items())
    ]


def count_unfinished_devices(session: Session, *, chunk_id: int) -> int:
    """Device runs pointing at the chunk that have no final status yet (one COUNT).

    0 means every device of the chunk has its result (e.g. push delivered them all).
    """
    stmt = (
        sa.select(sa.func.count())
        .select_from(_dr)
        .where(
            _dr.c.chunk_id == chunk_id,
            _dr.c.status.not_in([s.value for s in DeviceRunStatus if s.is_final]),
        )
    )
    return int(session.execute(stmt).scalar_one())


# --------------------------------------------------------------------------------------
# event log
# --------------------------------------------------------------------------------------


def append_event(
    session: Session,
    *,
    campaign_id: int | None,
    kind: str,
    now: datetime,
    subject: str | None = None,
    data: Mapping[str, Any] | None = None,
    actor: str | None = None,
    flow_run_id: str | None = None,
) -> Event:
    """Append one event (never updated or deleted). ``data`` must be JSON-serialisable;
    for a decision, put every input of it there (counts, rates, thresholds)."""
    event = Event(
        campaign_id=campaign_id,
        kind=kind,
        subject=subject,
        data=json.loads(json.dumps(dict(data or {}), default=str)),
        actor=actor,
        flow_run_id=flow_run_id,
        at=now,
    )
    session.add(event)
    session.flush()
    return event


def recent_events(
    session: Session,
    *,
    campaign_id: int | None = None,
    limit: int = 20,
    kinds: Iterable[str] | None = None,
) -> list[Event]:
    """The newest events, newest first (all campaigns if ``campaign_id`` is None)."""
    stmt = select(Event)
    if campaign_id is not None:
        stmt = stmt.where(Event.campaign_id == campaign_id)
    if kinds is not None:
        stmt = stmt.where(col(Event.kind).in_(list(kinds)))
    return list(_read(session, stmt.order_by(col(Event.id).desc()).limit(limit)).all())

"""The campaign state store's tables and status enums, with every allowed transition in one place.

A campaign is a durable state machine: these SQLModel tables are its memory. Status columns
are stored as short strings (no native enums, so migrations stay simple) and come back as
enum members; timestamps are stored in UTC and come back as aware UTC datetimes.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from fleetwave.store.errors import IllegalTransitionError

__all__ = [
    "ApprovalDecision",
    "Campaign",
    "CampaignStatus",
    "Chunk",
    "ChunkKind",
    "ChunkStatus",
    "ConsentOwner",
    "ConsentPlan",
    "ConsentState",
    "DeviceAutoUpgrade",
    "DeviceClaim",
    "DeviceConsent",
    "DeviceOwner",
    "DeviceRun",
    "DeviceRunStatus",
    "Event",
    "UTCDateTime",
    "Wave",
    "WaveStatus",
    "check_transition",
]


# --------------------------------------------------------------------------------------
# column types
# --------------------------------------------------------------------------------------


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite keeps no zone: naive values mean UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"the store takes aware UTC datetimes, not a naive one ({value!r})")
        return to_utc(value)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return to_utc(value)


def to_utc(value: datetime) -> datetime:
    """A plain ``datetime`` in UTC (pendulum instances are converted, so drivers see stdlib)."""
    v = value.astimezone(UTC)
    return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def _enum_column(enum_cls: type[enum.Enum], *, index: bool = False) -> Any:
    """A VARCHAR column holding an enum's values (not names), loaded back as members."""
    return sa.Column(
        sa.Enum(
            enum_cls,
            native_enum=False,
            create_constraint=False,
            length=24,
            values_callable=lambda e: [m.value for m in e],
            validate_strings=True,
        ),
        nullable=False,
        index=index,
    )


def _ts(nullable: bool = True) -> Any:
    return sa.Column(UTCDateTime(), nullable=nullable)


# --------------------------------------------------------------------------------------
# status enums and their transitions
# --------------------------------------------------------------------------------------


class CampaignStatus(enum.StrEnum):
    """Where a campaign stands.

    PENDING: created (spec stored, targets maybe planned), nothing sent yet.
    RUNNING: a flow run may submit tasks and monitor them.
    PAUSED: waiting, with devices claimed (approval, a window, a soak period).
    HALTED: a threshold tripped or an operator stopped it; nothing new is submitted. Its
        device claims are released; resuming re-claims them (and fails if another campaign
        took one meanwhile).
    ROLLING_BACK: sending the rollback package to the devices that took the new version.
    COMPLETED: every wave finished; terminal.
    ROLLED_BACK: the rollback finished; terminal.
    FAILED: ended by an error it cannot continue from; terminal.
    CANCELLED: stopped for good by an operator; terminal.
    """

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"
    ROLLING_BACK = "rolling_back"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _CAMPAIGN_TERMINAL

    @property
    def holds_devices(self) -> bool:
        """Whether a campaign in this status keeps its devices claimed against other campaigns."""
        return self in _CAMPAIGN_HOLDING


_CAMPAIGN_TERMINAL = frozenset(
    {
        CampaignStatus.COMPLETED,
        CampaignStatus.ROLLED_BACK,
        CampaignStatus.FAILED,
        CampaignStatus.CANCELLED,
    }
)
_CAMPAIGN_HOLDING = frozenset(
    {
        CampaignStatus.PENDING,
        CampaignStatus.RUNNING,
        CampaignStatus.PAUSED,
        CampaignStatus.ROLLING_BACK,
    }
)


class WaveStatus(enum.StrEnum):
    """Where a wave stands.

    PENDING: planned, not started.
    WAITING_APPROVAL: the previous wave passed; an operator must approve this one.
    RUNNING: its chunks are being submitted and monitored.
    SOAKING: every device finished; waiting ``soak_until`` before the next wave may start.
    SUCCEEDED: reached its success threshold; terminal.
    FAILED: missed its success threshold or tripped the failure threshold; terminal.
    HALTED: stopped with the campaign; may resume.
    REJECTED: an operator declined the approval; terminal.
    SKIPPED: nothing to do (e.g. every device already on the target); terminal.
    CANCELLED: the campaign was cancelled before this wave finished; terminal.
    """

    PENDING = "pending"
    WAITING_APPROVAL = "waiting_approval"
    RUNNING = "running"
    SOAKING = "soaking"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    HALTED = "halted"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return not _WAVE_TRANSITIONS[self] - {self}


class ApprovalDecision(enum.StrEnum):
    """An operator's answer to a wave's approval gate."""

    APPROVED = "approved"
    REJECTED = "rejected"


class ChunkKind(enum.StrEnum):
    """Why a chunk (one platform task) exists: the upgrade, or the rollback to the old package."""

    UPGRADE = "upgrade"
    ROLLBACK = "rollback"


class ChunkStatus(enum.StrEnum):
    """Where a chunk (= one platform upgrade task) stands.

    INTENT: written and committed before the platform call; no operationId known yet. After
        a crash the engine reconciles it against the platform's task list.
    SUBMITTED: the platform created the task; ``operation_id`` is set.
    FINISHED: the task reached a final platform status and its per-device results are stored.
    ABANDONED: reconciliation showed the platform never created the task; its devices went
        back to the pool. Terminal.
    """

    INTENT = "intent"
    SUBMITTED = "submitted"
    FINISHED = "finished"
    ABANDONED = "abandoned"


class DeviceRunStatus(enum.StrEnum):
    """Where one device stands within one campaign.

    PENDING: planned into a wave, not yet in a chunk.
    QUEUED: in a chunk whose intent is written; the task may or may not exist yet.
    SUBMITTED: the chunk's task exists on the platform.
    IN_PROGRESS: the platform reports the device's subtask as processing.
    SUCCEEDED: the device took the target version.
    FAILED: the platform reported a failure (``failure_kind``/``failure_detail`` say which);
        a retryable failure may be QUEUED again in a later round.
    TIMED_OUT: no final result before the task's timeout; may be retried, or a late result
        may still arrive.
    SKIPPED: never sent (already on the target version, incompatible, excluded).
    CANCELLED: never sent because the campaign stopped first.
    ROLLING_BACK: in a rollback chunk (queued or submitted).
    ROLLED_BACK: back on the rollback package's version.
    ROLLBACK_FAILED: the rollback task failed for this device; may be retried.
    """

    PENDING = "pending"
    QUEUED = "queued"
    SUBMITTED = "submitted"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"

    @property
    def is_final(self) -> bool:
        """No platform task is outstanding for the device (it may still be retried)."""
        return self in _DEVICE_FINAL


_DEVICE_FINAL = frozenset(
    {
        DeviceRunStatus.SUCCEEDED,
        DeviceRunStatus.FAILED,
        DeviceRunStatus.TIMED_OUT,
        DeviceRunStatus.SKIPPED,
        DeviceRunStatus.CANCELLED,
        DeviceRunStatus.ROLLED_BACK,
        DeviceRunStatus.ROLLBACK_FAILED,
    }
)


class ConsentState(enum.StrEnum):
    """Where one device's owner stands on one consent campaign's upgrade.

    AWAITING: the plan is offered; the owner has not answered.
    CONFIRMED: the owner agreed to upgrade as soon as the campaign sends it (also the
        state a retry after a failure or a decline returns to).
    APPOINTED: the owner agreed to upgrade inside the period ``appoint_start..appoint_end``.
    DECLINED: the owner cancelled the upgrade; the device is not sent (not a failure).
    EXPIRED: no answer before the campaign's answer timeout; terminal.
    AUTO: consented by the device's auto-confirm switch, without asking.
    """

    AWAITING = "awaiting"
    CONFIRMED = "confirmed"
    APPOINTED = "appointed"
    DECLINED = "declined"
    EXPIRED = "expired"
    AUTO = "auto"

    @property
    def is_consent(self) -> bool:
        """The device may be sent (now, or inside its appointment)."""
        return self in (ConsentState.CONFIRMED, ConsentState.APPOINTED, ConsentState.AUTO)


_C = CampaignStatus
_CAMPAIGN_TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    _C.PENDING: frozenset({_C.RUNNING, _C.PAUSED, _C.HALTED, _C.CANCELLED, _C.FAILED}),
    _C.RUNNING: frozenset(
        {_C.PAUSED, _C.HALTED, _C.ROLLING_BACK, _C.COMPLETED, _C.FAILED, _C.CANCELLED}
    ),
    _C.PAUSED: frozenset({_C.RUNNING, _C.HALTED, _C.ROLLING_BACK, _C.FAILED, _C.CANCELLED}),
    _C.HALTED: frozenset({_C.RUNNING, _C.ROLLING_BACK, _C.FAILED, _C.CANCELLED}),
    _C.ROLLING_BACK: frozenset({_C.ROLLED_BACK, _C.HALTED, _C.FAILED, _C.CANCELLED}),
    _C.COMPLETED: frozenset({_C.ROLLING_BACK}),  # an operator may still roll a finished one back
    _C.ROLLED_BACK: frozenset(),
    _C.FAILED: frozenset(),
    _C.CANCELLED: frozenset(),
}

_W = WaveStatus
_WAVE_TRANSITIONS: dict[WaveStatus, frozenset[WaveStatus]] = {
    _W.PENDING: frozenset({_W.WAITING_APPROVAL, _W.RUNNING, _W.SKIPPED, _W.HALTED, _W.CANCELLED}),
    _W.WAITING_APPROVAL: frozenset({_W.RUNNING, _W.REJECTED, _W.HALTED, _W.CANCELLED}),
    _W.RUNNING: frozenset({_W.SOAKING, _W.SUCCEEDED, _W.FAILED, _W.HALTED, _W.CANCELLED}),
    _W.SOAKING: frozenset({_W.SUCCEEDED, _W.FAILED, _W.HALTED, _W.CANCELLED}),
    _W.HALTED: frozenset({_W.RUNNING, _W.WAITING_APPROVAL, _W.FAILED, _W.CANCELLED}),
    _W.SUCCEEDED: frozenset(),
    _W.FAILED: frozenset(),
    _W.REJECTED: frozenset(),
    _W.SKIPPED: frozenset(),
    _W.CANCELLED: frozenset(),
}

_K = ChunkStatus
_CHUNK_TRANSITIONS: dict[ChunkStatus, frozenset[ChunkStatus]] = {
    _K.INTENT: frozenset({_K.SUBMITTED, _K.ABANDONED}),
    _K.SUBMITTED: frozenset({_K.FINISHED}),
    _K.FINISHED: frozenset(),
    _K.ABANDONED: frozenset(),
}

_D = DeviceRunStatus
# Results arrive more than once (a resumed run re-reads a task's subtasks), so a final status
# may be re-applied to itself; the bulk updates treat that as a harmless no-op.
# PENDING -> FAILED is the engine's own decision about a device it never sent (a consent
# campaign's ``on_timeout: fail``); a reported result (platform poll, push, app) never takes
# that move: see ``result_sources``.
_DEVICE_TRANSITIONS: dict[DeviceRunStatus, frozenset[DeviceRunStatus]] = {
    _D.PENDING: frozenset({_D.QUEUED, _D.SKIPPED, _D.CANCELLED, _D.FAILED}),
    _D.QUEUED: frozenset({_D.SUBMITTED, _D.PENDING, _D.CANCELLED}),
    _D.SUBMITTED: frozenset({_D.IN_PROGRESS, _D.SUCCEEDED, _D.FAILED, _D.TIMED_OUT}),
    _D.IN_PROGRESS: frozenset({_D.IN_PROGRESS, _D.SUCCEEDED, _D.FAILED, _D.TIMED_OUT}),
    _D.SUCCEEDED: frozenset({_D.SUCCEEDED, _D.ROLLING_BACK}),
    _D.FAILED: frozenset({_D.FAILED, _D.QUEUED, _D.CANCELLED}),
    _D.TIMED_OUT: frozenset({_D.TIMED_OUT, _D.QUEUED, _D.SUCCEEDED, _D.FAILED, _D.CANCELLED}),
    _D.SKIPPED: frozenset({_D.SKIPPED}),
    _D.CANCELLED: frozenset({_D.CANCELLED}),
    _D.ROLLING_BACK: frozenset({_D.ROLLED_BACK, _D.ROLLBACK_FAILED, _D.SUCCEEDED}),
    _D.ROLLED_BACK: frozenset({_D.ROLLED_BACK}),
    _D.ROLLBACK_FAILED: frozenset({_D.ROLLBACK_FAILED, _D.ROLLING_BACK}),
}

_S = ConsentState
# An owner may change their mind until the device is sent (the API checks that against the
# device's run); confirming again after a decline is the retry the Quectel flow allows.
# Replaying the same answer is allowed (idempotent; the API reports it as unchanged).
_CONSENT_TRANSITIONS: dict[ConsentState, frozenset[ConsentState]] = {
    _S.AWAITING: frozenset({_S.CONFIRMED, _S.APPOINTED, _S.DECLINED, _S.EXPIRED, _S.AUTO}),
    _S.CONFIRMED: frozenset({_S.CONFIRMED, _S.APPOINTED, _S.DECLINED}),
    # EXPIRED: the appointment ended before the device could be sent (never sent outside it)
    _S.APPOINTED: frozenset({_S.APPOINTED, _S.CONFIRMED, _S.DECLINED, _S.EXPIRED}),
    _S.AUTO: frozenset({_S.AUTO, _S.CONFIRMED, _S.APPOINTED, _S.DECLINED}),
    _S.DECLINED: frozenset({_S.DECLINED, _S.CONFIRMED, _S.APPOINTED}),
    _S.EXPIRED: frozenset({_S.EXPIRED}),
}

TRANSITIONS: dict[type[enum.Enum], dict[Any, frozenset[Any]]] = {
    CampaignStatus: _CAMPAIGN_TRANSITIONS,
    WaveStatus: _WAVE_TRANSITIONS,
    ChunkStatus: _CHUNK_TRANSITIONS,
    DeviceRunStatus: _DEVICE_TRANSITIONS,
    ConsentState: _CONSENT_TRANSITIONS,
}
"""Every allowed transition of every status enum: ``TRANSITIONS[Enum][from] -> {to, ...}``."""


def allowed_sources(target: enum.Enum) -> frozenset[Any]:
    """The statuses from which ``target`` may be entered (for conditional bulk UPDATEs)."""
    table = TRANSITIONS[type(target)]
    return frozenset(src for src, targets in table.items() if target in targets)


UNSENT: frozenset[DeviceRunStatus] = frozenset({DeviceRunStatus.PENDING})
"""Device statuses with no chunk and no task: no result reported by a platform or an app can
belong to them."""


def result_sources(target: DeviceRunStatus) -> frozenset[DeviceRunStatus]:
    """The statuses from which a *reported* result may move a device to ``target``:
    :func:`allowed_sources` without the unsent ones (a late push or a stray app report
    never fails a device that was never sent)."""
    return allowed_sources(target) - UNSENT


def check_transition(current: enum.Enum, target: enum.Enum, *, subject: str) -> None:
    """Raise :class:`IllegalTransitionError` unless ``current -> target`` is allowed.

    ``subject`` names what is moving (``campaign 'fw-2026-01'``, ``wave 2``, ``chunk 17``).
    """
    if target not in TRANSITIONS[type(current)][current]:
        raise IllegalTransitionError(
            entity=type(current).__name__,
            subject=subject,
            current=current.value,
            target=target.value,
        )


# --------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------


class Campaign(SQLModel, table=True):
    """One campaign: its name, the spec it runs (snapshot and hash), status, lease, timestamps."""

    __tablename__: ClassVar[str] = "campaign"  # type: ignore[misc]

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False, unique=True))
    spec: dict[str, Any] = Field(sa_column=sa.Column(JSONType, nullable=False))
    spec_hash: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    status: CampaignStatus = Field(sa_column=_enum_column(CampaignStatus, index=True))
    status_reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    flow_run_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    lease_holder: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    lease_expires_at: datetime | None = Field(default=None, sa_column=_ts())
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    updated_at: datetime = Field(sa_column=_ts(nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=_ts())
    finished_at: datetime | None = Field(default=None, sa_column=_ts())


class Wave(SQLModel, table=True):
    """One wave of a campaign (canary first), its approval gate and soak period."""

    __tablename__: ClassVar[str] = "wave"  # type: ignore[misc]
    __table_args__ = (sa.UniqueConstraint("campaign_id", "index", name="uq_wave_campaign_index"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(
        sa_column=sa.Column(sa.ForeignKey("campaign.id", ondelete="CASCADE"), nullable=False)
    )
    index: int = Field(sa_column=sa.Column("index", sa.Integer, nullable=False))
    name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    planned_size: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    status: WaveStatus = Field(sa_column=_enum_column(WaveStatus))
    status_reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    approval_decision: ApprovalDecision | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Enum(
                ApprovalDecision,
                native_enum=False,
                create_constraint=False,
                length=24,
                values_callable=lambda e: [m.value for m in e],
            ),
            nullable=True,
        ),
    )
    approval_by: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    approval_comment: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    approval_at: datetime | None = Field(default=None, sa_column=_ts())
    appointment_at: datetime | None = Field(default=None, sa_column=_ts())
    soak_until: datetime | None = Field(default=None, sa_column=_ts())
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    updated_at: datetime = Field(sa_column=_ts(nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=_ts())
    finished_at: datetime | None = Field(default=None, sa_column=_ts())


class Chunk(SQLModel, table=True):
    """One platform upgrade task: the intent (written before the call), then its operationId.

    ``(campaign_id, kind, wave_index, round, seq)`` is unique, so writing the same intent
    twice returns the first one. ``device_ids`` is the exact list the task was (or is about
    to be) created for; the device-run rows point back through ``chunk_id``.

    ``connection_key`` names the platform connection the task lives on (``Platform.
    connection_key``; empty for chunks written before it existed): operationIds are unique
    per connection, so ``(connection_key, operation_id)`` is unique, not the id alone.
    ``collided_operation_id`` is set on an intent whose new task got an operationId another
    chunk of the same connection already holds: the intent is kept (its devices are never
    resubmitted) and every run stops on it until an operator acts.
    """

    __tablename__: ClassVar[str] = "chunk"  # type: ignore[misc]
    __table_args__ = (
        sa.UniqueConstraint(
            "campaign_id", "kind", "wave_index", "round", "seq", name="uq_chunk_slot"
        ),
        sa.UniqueConstraint("connection_key", "operation_id", name="uq_chunk_connection_operation"),
        sa.Index("ix_chunk_campaign_status", "campaign_id", "status"),
        sa.Index("ix_chunk_operation_id", "operation_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(
        sa_column=sa.Column(sa.ForeignKey("campaign.id", ondelete="CASCADE"), nullable=False)
    )
    wave_index: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    round: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    seq: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    kind: ChunkKind = Field(sa_column=_enum_column(ChunkKind))
    package_kind: str = Field(sa_column=sa.Column(sa.String(24), nullable=False))
    file_id: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    policy: dict[str, Any] = Field(sa_column=sa.Column(JSONType, nullable=False))
    device_ids: list[str] = Field(sa_column=sa.Column(JSONType, nullable=False))
    device_count: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    status: ChunkStatus = Field(sa_column=_enum_column(ChunkStatus))
    connection_key: str = Field(
        default="", sa_column=sa.Column(sa.String(200), nullable=False, server_default="")
    )
    operation_id: str | None = Field(
        default=None, sa_column=sa.Column(sa.String(200), nullable=True)
    )
    collided_operation_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    reconciled: bool = Field(
        default=False, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false())
    )
    note: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    platform_status: str | None = Field(default=None, sa_column=sa.Column(sa.String(24)))
    stats: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONType))
    last_polled_at: datetime | None = Field(default=None, sa_column=_ts())
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    updated_at: datetime = Field(sa_column=_ts(nullable=False))
    submitted_at: datetime | None = Field(default=None, sa_column=_ts())
    finished_at: datetime | None = Field(default=None, sa_column=_ts())


class DeviceRun(SQLModel, table=True):
    """One device within one campaign: its wave, chunk, status, attempts, versions, failure."""

    __tablename__: ClassVar[str] = "device_run"  # type: ignore[misc]
    __table_args__ = (
        sa.Index("ix_device_run_wave_status", "campaign_id", "wave_index", "status", "device_id"),
        sa.Index("ix_device_run_status", "campaign_id", "status", "device_id"),
        sa.Index("ix_device_run_chunk", "chunk_id"),
    )

    campaign_id: int = Field(
        sa_column=sa.Column(
            sa.ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True, nullable=False
        )
    )
    device_id: str = Field(sa_column=sa.Column(sa.String(128), primary_key=True, nullable=False))
    wave_index: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    chunk_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.ForeignKey("chunk.id", ondelete="SET NULL"), nullable=True),
    )
    status: DeviceRunStatus = Field(sa_column=_enum_column(DeviceRunStatus))
    attempt: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    failure_kind: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    failure_detail: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    source_version: str | None = Field(default=None, sa_column=sa.Column(sa.String(100)))
    target_version: str | None = Field(default=None, sa_column=sa.Column(sa.String(100)))
    current_version: str | None = Field(default=None, sa_column=sa.Column(sa.String(100)))
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    updated_at: datetime = Field(sa_column=_ts(nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=_ts())


class DeviceClaim(SQLModel, table=True):
    """A device held by one campaign; the primary key makes "one campaign per device" a DB rule."""

    __tablename__: ClassVar[str] = "device_claim"  # type: ignore[misc]
    __table_args__ = (sa.Index("ix_device_claim_campaign", "campaign_id"),)

    device_id: str = Field(sa_column=sa.Column(sa.String(128), primary_key=True, nullable=False))
    campaign_id: int = Field(
        sa_column=sa.Column(sa.ForeignKey("campaign.id", ondelete="CASCADE"), nullable=False)
    )
    claimed_at: datetime = Field(sa_column=_ts(nullable=False))


class Event(SQLModel, table=True):
    """The append-only event log: what happened, to what, when, by whom, with decision inputs."""

    __tablename__: ClassVar[str] = "event"  # type: ignore[misc]
    __table_args__ = (sa.Index("ix_event_campaign_id", "campaign_id", "id"),)

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    )
    campaign_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.ForeignKey("campaign.id", ondelete="CASCADE"), nullable=True),
    )
    kind: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    subject: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    data: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False)
    )
    actor: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    flow_run_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    at: datetime = Field(sa_column=_ts(nullable=False))


class ConsentPlan(SQLModel, table=True):
    """A consent campaign's offer to owners: the plan period, the windows an appointment
    must fit in, how the package is delivered, and what the app needs to fetch it."""

    __tablename__: ClassVar[str] = "consent_plan"  # type: ignore[misc]

    campaign_id: int = Field(
        sa_column=sa.Column(
            sa.ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True, nullable=False
        )
    )
    period_start: datetime = Field(sa_column=_ts(nullable=False))
    period_end: datetime = Field(sa_column=_ts(nullable=False))
    windows: list[list[str]] = Field(sa_column=sa.Column(JSONType, nullable=False))
    """Allowed spans ``[[start, end], ...]`` (ISO 8601 UTC) inside the period; an
    appointment must fit inside one. Empty: any time in the period."""
    delivery: str = Field(sa_column=sa.Column(sa.String(24), nullable=False))
    """``platform`` (a platform task) or ``app`` (the owner's app fetches and installs)."""
    target_version: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    package_url: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    package_sha256: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    package_size: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    description: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    created_at: datetime = Field(sa_column=_ts(nullable=False))


class DeviceConsent(SQLModel, table=True):
    """One device's consent in one consent campaign, and what its app reported (app delivery)."""

    __tablename__: ClassVar[str] = "device_consent"  # type: ignore[misc]
    __table_args__ = (
        sa.Index("ix_device_consent_device", "device_id"),
        sa.Index("ix_device_consent_state", "campaign_id", "state"),
    )

    campaign_id: int = Field(
        sa_column=sa.Column(
            sa.ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True, nullable=False
        )
    )
    device_id: str = Field(sa_column=sa.Column(sa.String(128), primary_key=True, nullable=False))
    state: ConsentState = Field(sa_column=_enum_column(ConsentState))
    appoint_start: datetime | None = Field(default=None, sa_column=_ts())
    appoint_end: datetime | None = Field(default=None, sa_column=_ts())
    retries: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    """Times the owner asked for a retry after a failure or a decline."""
    answered_by: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    answered_at: datetime | None = Field(default=None, sa_column=_ts())
    app_status: str | None = Field(default=None, sa_column=sa.Column(sa.String(24)))
    """The app's last report (app delivery): downloading, installing, succeeded, failed."""
    app_detail: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    app_version: str | None = Field(default=None, sa_column=sa.Column(sa.String(100)))
    app_reported_at: datetime | None = Field(default=None, sa_column=_ts())
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    updated_at: datetime = Field(sa_column=_ts(nullable=False))


class ConsentOwner(SQLModel, table=True):
    """An end user of the consent API and the SHA-256 of their access token (never the token)."""

    __tablename__: ClassVar[str] = "consent_owner"  # type: ignore[misc]

    owner_id: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True, nullable=False))
    token_sha256: str | None = Field(
        default=None, sa_column=sa.Column(sa.String(64), nullable=True, unique=True)
    )
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    token_issued_at: datetime | None = Field(default=None, sa_column=_ts())


class DeviceOwner(SQLModel, table=True):
    """Which end user owns a device (imported from a CSV or JSON file); one owner per device."""

    __tablename__: ClassVar[str] = "device_owner"  # type: ignore[misc]
    __table_args__ = (sa.Index("ix_device_owner_owner", "owner_id"),)

    device_id: str = Field(sa_column=sa.Column(sa.String(128), primary_key=True, nullable=False))
    owner_id: str = Field(
        sa_column=sa.Column(
            sa.ForeignKey("consent_owner.owner_id", ondelete="CASCADE"), nullable=False
        )
    )
    imported_at: datetime = Field(sa_column=_ts(nullable=False))


class DeviceAutoUpgrade(SQLModel, table=True):
    """A device's auto-confirm switch; it outlives campaigns (a row exists once it was set)."""

    __tablename__: ClassVar[str] = "device_auto_upgrade"  # type: ignore[misc]

    device_id: str = Field(sa_column=sa.Column(sa.String(128), primary_key=True, nullable=False))
    enabled: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False))
    set_by: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    set_at: datetime = Field(sa_column=_ts(nullable=False))

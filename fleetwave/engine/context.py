"""What one run of the engine shares between its stages: the campaign, store, platform, clock.

Also the two seams the Prefect flow plugs into: :class:`StageRunner` (run a stage, e.g.
as a Prefect task; a repeated step inside a stage, such as a monitoring round, goes through
``RunContext.step`` and is never a task run of its own) and :data:`Approver` (ask an
operator, e.g. by pausing the flow run). Without them the engine runs plain, which is how
the engine tests drive it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pendulum
import sqlalchemy as sa
from sqlmodel import Session

from fleetwave import store
from fleetwave.clock import Clock, utc_instant
from fleetwave.engine.decide import Decision
from fleetwave.engine.progress import ProgressEvent, ProgressSink, WaveProgress
from fleetwave.platforms.base import PackageInfo, Platform
from fleetwave.spec.capability_check import chunk_size
from fleetwave.spec.model import CampaignSpec

if TYPE_CHECKING:
    from fleetwave.notify import PushHealth

__all__ = [
    "ApprovalReply",
    "ApprovalRequest",
    "Approver",
    "RunContext",
    "StageRunner",
    "carried",
    "plain_stage_runner",
    "to_pendulum",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class StageRunner(Protocol):
    """Runs one stage of the engine (``name`` is e.g. ``submit w1 r1``); returns its result."""

    def __call__(self, name: str, fn: Callable[[], Awaitable[T]]) -> Awaitable[T]: ...


async def plain_stage_runner(name: str, fn: Callable[[], Awaitable[T]]) -> T:
    """Run the stage in place (no Prefect)."""
    return await fn()


@dataclass(frozen=True, slots=True)
class _Carried:
    """An exception a stage hands back as its result rather than raising it (see
    :func:`carried`): control flow such as the end of a run is not a failed task run."""

    exc: Exception


async def carried(
    stage: StageRunner,
    name: str,
    fn: Callable[[], Awaitable[T]],
    *,
    carry: tuple[type[Exception], ...],
) -> T:
    """Run ``fn`` as the stage ``name``; an exception of the ``carry`` types leaves the stage
    as its result (so a Prefect task run ends Completed) and is raised again here."""

    async def _inner() -> T | _Carried:
        try:
            return await fn()
        except carry as exc:
            return _Carried(exc)

    result = await stage(name, _inner)
    if isinstance(result, _Carried):
        raise result.exc
    return result


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """A wave waits for an operator: which one, and what the campaign looks like now."""

    campaign: str
    wave: int
    wave_name: str
    devices: int
    reason: str
    summary: Mapping[str, Any] = field(default_factory=dict)
    token: str = ""  # distinct per gate occurrence (e.g. per breach), for pause keys
    #: Why the previous answer at this gate was refused ("" the first time), and how many
    #: answers were refused so far: the operator is asked again with the reason.
    problem: str = ""
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class ApprovalReply:
    """An operator's answer; ``start``/``end`` book an appointment for the wave."""

    approve: bool
    by: str
    comment: str = ""
    start: datetime | None = None
    end: datetime | None = None


Approver = Callable[[ApprovalRequest], Awaitable[ApprovalReply | None]]
"""Asks an operator; None when no answer came (the run then ends awaiting approval)."""


to_pendulum = utc_instant
"""A stored (aware, UTC) datetime as a pendulum UTC DateTime (``fleetwave.clock.utc_instant``)."""


@dataclass
class RunContext:
    """Everything a stage needs; one per run of :func:`fleetwave.engine.runner.advance`."""

    spec: CampaignSpec
    db: sa.Engine
    platform: Platform
    clock: Clock
    campaign_id: int
    holder: str
    package: PackageInfo
    rollback_package: PackageInfo | None
    progress: ProgressSink
    stage: StageRunner = plain_stage_runner
    #: Runs one repeated step inside a stage (a monitoring round): in place, never a
    #: Prefect task run of its own; the bench counts its calls.
    step: StageRunner = plain_stage_runner
    approver: Approver | None = None
    flow_run_id: str | None = None
    push: PushHealth | None = None  # push notifications, when a channel is running
    push_missed_at: pendulum.DateTime | None = None  # a poll found results push had not sent
    phase: str = "upgrade"
    submitted_tasks: int = 0
    device_refusals: int = 0
    """Tasks of this run the platform refused because of single devices (skipped)."""
    rounds: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def chunk_size(self) -> int:
        """Devices per platform task: the spec's size (default: the platform's largest task),
        never above the platform's largest task."""
        return chunk_size(self.spec, self.platform.capabilities)

    def now(self) -> pendulum.DateTime:
        return self.clock.now().in_tz("UTC")

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One store transaction (committed on success)."""
        with store.session_scope(self.db) as session:
            yield session

    def version_of(self, file_id: str) -> str | None:
        """The version of the package or rollback package with this fileId."""
        for pkg in (self.package, self.rollback_package):
            if pkg is not None and pkg.file_id == file_id:
                return pkg.version
        return None

    def api_calls(self) -> int:
        try:
            return sum(self.platform.call_counts().values())
        except Exception:  # a platform without counters still runs campaigns
            return 0

    def event(
        self, kind: str, *, subject: str | None = None, data: Mapping[str, Any] | None = None
    ) -> None:
        """Append one event to the campaign's log (its own transaction)."""
        with self.tx() as s:
            store.append_event(
                s,
                campaign_id=self.campaign_id,
                kind=kind,
                subject=subject,
                data=data,
                now=self.now(),
                actor="engine",
                flow_run_id=self.flow_run_id,
            )

    def decision(self, decision: Decision, *, subject: str | None = None) -> None:
        """Log a decision with its inputs, and tell the progress sink."""
        log.info(
            "%s: %s -> %s (%s)", self.name, decision.name, decision.verdict.value, decision.reason
        )
        self.event("decision", subject=subject, data=decision.as_event())
        self.emit("decision", message=decision.reason, detail=decision.as_event())

    def wave_progress(self) -> tuple[WaveProgress, ...]:
        """Per-wave device counts from one SQL aggregate."""
        with self.tx() as s:
            waves = store.get_waves(s, campaign_id=self.campaign_id)
            counts = store.device_status_counts_by_wave(s, campaign_id=self.campaign_id)
        out = []
        D = store.DeviceRunStatus
        for w in waves:
            c = counts.get(w.index, {})
            out.append(
                WaveProgress(
                    wave=w.index,
                    name=w.name,
                    total=sum(c.values()),
                    pending=c.get(D.PENDING, 0),
                    in_flight=c.get(D.QUEUED, 0)
                    + c.get(D.SUBMITTED, 0)
                    + c.get(D.IN_PROGRESS, 0)
                    + c.get(D.ROLLING_BACK, 0),
                    succeeded=c.get(D.SUCCEEDED, 0),
                    failed=c.get(D.FAILED, 0) + c.get(D.ROLLBACK_FAILED, 0),
                    timed_out=c.get(D.TIMED_OUT, 0),
                    skipped=c.get(D.SKIPPED, 0) + c.get(D.CANCELLED, 0),
                    rolled_back=c.get(D.ROLLED_BACK, 0),
                    status=w.status.value,
                )
            )
        return tuple(out)

    def emit(
        self,
        kind: str,
        *,
        stage: str | None = None,
        message: str = "",
        waves: tuple[WaveProgress, ...] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Send a progress event (never raises)."""
        try:
            self.progress(
                ProgressEvent(
                    kind=kind,
                    campaign=self.name,
                    at=self.now(),
                    phase=self.phase,
                    stage=stage,
                    message=message,
                    waves=waves if waves is not None else (),
                    api_calls=self.api_calls(),
                    detail=dict(detail or {}),
                )
            )
        except Exception:
            log.warning("progress sink failed", exc_info=True)

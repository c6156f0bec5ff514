"""``advance()``: run a campaign's stages as far as they can go now, then return an outcome.

The campaign is a durable state machine in the store; this module only moves it. One call
takes the campaign's lease, verifies the package, resolves and plans the targets (once),
reconciles intents left by a crashed run, then loops: approval gates, windows, submission
(retries first), a monitoring round, threshold and wave-gate decisions, a sleep on the
clock. It returns when the campaign completes, halts, rolls back, must wait for a window
or an approval, or fails. Every decision goes to the event log with its inputs.
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pendulum
import sqlalchemy as sa

from fleetwave import store
from fleetwave.clock import Clock, RealClock
from fleetwave.engine.approval import (
    REJECTED_HINT,
    AppointmentError,
    check_appointment,
    record_decision,
)
from fleetwave.engine.context import (
    ApprovalRequest,
    Approver,
    RunContext,
    StageRunner,
    plain_stage_runner,
    to_pendulum,
)
from fleetwave.engine.decide import (
    Counts,
    Decision,
    RetryCandidate,
    Verdict,
    backoff_seconds,
    chunk_capacity,
    evaluate_failure_threshold,
    evaluate_wave_gate,
    in_flight_counts,
    screen_targets,
    select_resubmissions,
)
from fleetwave.engine.lease import default_holder, take_lease
from fleetwave.engine.live_tasks import check_live_tasks
from fleetwave.engine.monitor import monitor_round
from fleetwave.engine.progress import ProgressSink, null_sink
from fleetwave.engine.resolve import SkipReason, no_eligible_devices, resolve_targets
from fleetwave.engine.submit import create_intents, reconcile_intents, submit_intent, task_policy
from fleetwave.engine.targeting import SHOWN, Targeting, TargetingReader, explicit_ids
from fleetwave.engine.verify import verify_packages
from fleetwave.errors import UserError
from fleetwave.plan.waves import plan_waves
from fleetwave.platforms.base import Capabilities, ExecuteType, Platform, TaskPolicy
from fleetwave.platforms.errors import PlatformError
from fleetwave.spec import SpecSource, load_spec_with_source, spec_snapshot
from fleetwave.spec.capability_check import apply_capabilities
from fleetwave.spec.model import (
    BreachAction,
    CampaignSpec,
    ExecuteMode,
    FailureKind,
    ThresholdScope,
    spec_change_records,
    spec_fingerprint,
)
from fleetwave.store import (
    ApprovalDecision,
    CampaignStatus,
    ChunkKind,
    DeviceRunStatus,
    Wave,
    WaveStatus,
)

if TYPE_CHECKING:
    from fleetwave.notify import PushHealth

__all__ = [
    "Outcome",
    "OutcomeKind",
    "advance",
    "campaign_counts",
    "default_holder",
    "threshold_counts",
]

log = logging.getLogger(__name__)

D = DeviceRunStatus


class OutcomeKind(enum.StrEnum):
    """How a run of :func:`advance` ended.

    COMPLETED: every wave finished. HALTED: a threshold tripped, an approval was rejected
    or an operator halted it; ``fleetwave resume`` continues (not after a rejection: that
    campaign stays halted, start a new one). ROLLED_BACK: the rollback
    finished. WAITING_WINDOW: nothing may be submitted before ``next_open`` (a window, an
    appointment, a soak period or a retry backoff); the next run continues.
    AWAITING_APPROVAL: wave ``wave`` needs an operator's decision. STOPPED: the run stopped
    before the campaign had to (``max_rounds`` reached); nothing went wrong, the state is
    kept and the next run continues. FAILED: an error the run cannot get past (``reason``
    says which); the campaign's state is kept.
    """

    COMPLETED = "completed"
    HALTED = "halted"
    ROLLED_BACK = "rolled_back"
    WAITING_WINDOW = "waiting_window"
    AWAITING_APPROVAL = "awaiting_approval"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one run of :func:`advance`."""

    kind: OutcomeKind
    campaign: str
    reason: str = ""
    next_open: pendulum.DateTime | None = None
    wave: int | None = None
    api_calls: int = 0
    tasks_submitted: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.campaign}: {self.kind.value}"
        if self.kind is OutcomeKind.WAITING_WINDOW and self.next_open is not None:
            text += f" until {self.next_open.to_iso8601_string()}"
        if self.kind is OutcomeKind.AWAITING_APPROVAL and self.wave is not None:
            text += f" of wave {self.wave}"
        return f"{text} ({self.reason})" if self.reason else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "campaign": self.campaign,
            "reason": self.reason,
            "next_open": self.next_open.isoformat() if self.next_open else None,
            "wave": self.wave,
            "api_calls": self.api_calls,
            "tasks_submitted": self.tasks_submitted,
            "counts": dict(self.counts),
        }


class _Stop(Exception):
    """Ends the loop with an outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome


def _load(campaign: CampaignSpec | str | Path) -> tuple[CampaignSpec, SpecSource | None]:
    if isinstance(campaign, CampaignSpec):
        return campaign, None
    return load_spec_with_source(campaign)


async def _capabilities(
    spec: CampaignSpec, platform: Platform | None, clock: Clock
) -> Capabilities:
    """The capabilities of the platform the run uses (constant for a connection: a platform
    opened from the spec's profile is read without any call to it)."""
    if platform is not None:
        return platform.capabilities
    from fleetwave.platforms import platform_capabilities

    return await platform_capabilities(spec.platform, clock=clock)


@asynccontextmanager
async def _platform(
    spec: CampaignSpec, platform: Platform | None, clock: Clock
) -> AsyncIterator[Platform]:
    if platform is not None:
        yield platform
        return
    from fleetwave.platforms import open_platform

    async with open_platform(spec.platform, clock=clock) as opened:
        yield opened


async def advance(
    campaign: CampaignSpec | str | Path,
    *,
    db: sa.Engine | None = None,
    platform: Platform | None = None,
    clock: Clock | None = None,
    progress: ProgressSink | None = None,
    approver: Approver | None = None,
    stage: StageRunner | None = None,
    flow_run_id: str | None = None,
    holder: str | None = None,
    sleep_through_windows: bool = False,
    wait_for_lease: bool = False,
    lease_ttl: timedelta | None = None,
    max_rounds: int | None = None,
    push: PushHealth | None = None,
    accept_spec_change: bool = False,
    operator: str | None = None,
) -> Outcome:
    """Advance the campaign (a spec or the path of its YAML file) as far as it can go now.

    ``db`` defaults to ``FLEETWAVE_DB_URL``'s engine (schema must be current), ``platform``
    to the spec's connection profile, ``clock`` to real time. ``sleep_through_windows``
    sleeps on the clock until a window opens instead of ending the run.
    ``wait_for_lease`` waits (in real time, never on ``clock``) for another run's lease
    instead of failing at once; a live holder keeps it, a dead one on this host loses it
    at once (see :mod:`fleetwave.engine.lease`). ``max_rounds`` (>= 1) bounds the
    monitoring rounds of this run; reaching it ends the run ``stopped``.
    Cancelling the run (a stop signal) ends the current step where it stands: a task
    intent whose create call was in flight stays an intent, reconciled by the next run;
    the lease is released and a ``run_stopped`` event recorded.
    ``push``: a started push channel (:class:`fleetwave.notify.PushChannel`); the run
    subscribes it for the campaign's kind, and the monitor then polls only as a safety net.
    A started campaign takes changes of its mutable fields (``MUTABLE_FIELDS``) from the
    file and refuses others unless ``accept_spec_change`` (recorded as by ``operator``).
    Raises ``UserError`` for problems the operator must fix (spec, package, targets).
    """
    if max_rounds is not None and max_rounds < 1:
        raise UserError(
            f"max_rounds must be at least 1, not {max_rounds}",
            hint="pass --max-rounds 1 or more, or leave it out to run until the campaign waits",
        )
    spec, source = _load(campaign)
    clock = clock or RealClock()
    # the platform's limits before anything is stored or submitted (FILE:LINE errors);
    # fills in the platform's defaults (the largest task)
    spec = apply_capabilities(spec, await _capabilities(spec, platform, clock), source)
    engine = db if db is not None else store.get_engine()
    if db is None:
        store.ensure_schema_current(engine)
    holder = holder or default_holder()
    poll = spec.policy.poll_interval.total_seconds()
    ttl = lease_ttl or timedelta(seconds=max(600.0, 3 * poll))
    now = clock.now()
    with store.session_scope(engine) as s:
        snapshot = spec_snapshot(spec)
        row = store.create_or_get_campaign(
            s,
            name=spec.name,
            spec=snapshot,
            now=now,
            fingerprint=spec_fingerprint(snapshot),
            compare=spec_change_records,
            allow_spec_change=accept_spec_change,
            actor=operator or "engine",
        )
        campaign_id = row.id
        status = row.status
        rejected = None  # a rejected wave halts its campaign for good
        if status is CampaignStatus.HALTED and campaign_id is not None:
            waves = store.get_waves(s, campaign_id=campaign_id)
            rejected = next((w.index for w in waves if w.status is WaveStatus.REJECTED), None)
    assert campaign_id is not None
    early = _early_outcome(spec.name, status, row.status_reason, rejected_wave=rejected)
    if early is not None:
        return early
    await take_lease(
        engine,
        campaign_id=campaign_id,
        name=spec.name,
        holder=holder,
        ttl=ttl,
        now=clock.now,
        wait=wait_for_lease,
    )
    try:
        with store.session_scope(engine) as s:
            store.set_flow_run(s, campaign_id=campaign_id, flow_run_id=flow_run_id, now=clock.now())
        async with _platform(spec, platform, clock) as plat:
            runner = stage or plain_stage_runner
            verified = await runner("verify package", lambda: verify_packages(plat, spec))
            if push is not None and hasattr(push, "subscribe_all"):
                await runner("subscribe push", lambda: push.subscribe_all(plat, kinds=[spec.kind]))
            ctx = RunContext(
                spec=spec,
                db=engine,
                platform=plat,
                clock=clock,
                campaign_id=campaign_id,
                holder=holder,
                package=verified.package,
                rollback_package=verified.rollback,
                progress=progress or null_sink,
                stage=runner,
                approver=approver,
                flow_run_id=flow_run_id,
                push=push,
            )
            loop = _Loop(
                ctx, ttl=ttl, sleep_through_windows=sleep_through_windows, max_rounds=max_rounds
            )
            try:
                outcome = await loop.run()
            except _Stop as stop:
                outcome = stop.outcome
            except PlatformError as exc:
                ctx.event("run_failed", data={"error": str(exc)})
                outcome = loop.outcome(OutcomeKind.FAILED, f"platform error: {exc}")
            except store.LeaseLostError as exc:
                outcome = loop.outcome(OutcomeKind.FAILED, str(exc))
            ctx.event("run_ended", data=outcome.as_dict())
            ctx.emit(
                "outcome", message=str(outcome), waves=ctx.wave_progress(), detail=outcome.as_dict()
            )
            return outcome
    except BaseException as exc:
        if not isinstance(exc, Exception):
            # SIGTERM/SIGINT (a cancellation, KeyboardInterrupt or Prefect's
            # TerminationSignal) stopped the run between two awaits, at any stage: every
            # commit so far stands; an intent whose create call was cut off is reconciled
            # by the next run. The lease is released below.
            with store.session_scope(engine) as s:
                store.append_event(
                    s,
                    campaign_id=campaign_id,
                    kind="run_stopped",
                    now=clock.now(),
                    actor="engine",
                    flow_run_id=flow_run_id,
                    data={"why": f"stopped ({type(exc).__name__}: a stop signal or the caller)"},
                )
        raise
    finally:
        with store.session_scope(engine) as s:
            # a run that ends before planning (bad secret, no package, no eligible device)
            # leaves no campaign row behind: nothing was sent, the name stays free
            if store.forget_unplanned_campaign(s, campaign_id=campaign_id, holder=holder):
                log.info("%s: never planned; its campaign row was removed", spec.name)
            else:
                store.release_lease(s, campaign_id=campaign_id, holder=holder)
                store.set_flow_run(s, campaign_id=campaign_id, flow_run_id=None, now=clock.now())


def _early_outcome(
    name: str, status: CampaignStatus, reason: str | None, *, rejected_wave: int | None = None
) -> Outcome | None:
    """Terminal or halted campaigns: nothing to advance. A campaign halted by a rejected
    wave is halted for good (``resume`` refuses it), and the reason says so."""
    if status is CampaignStatus.COMPLETED:
        return Outcome(OutcomeKind.COMPLETED, name, "already completed")
    if status is CampaignStatus.ROLLED_BACK:
        return Outcome(OutcomeKind.ROLLED_BACK, name, "already rolled back")
    if status is CampaignStatus.HALTED and rejected_wave is not None:
        return Outcome(
            OutcomeKind.HALTED,
            name,
            f"{reason or f'wave {rejected_wave} was rejected'}; {REJECTED_HINT}",
            wave=rejected_wave,
        )
    if status is CampaignStatus.HALTED:
        return Outcome(
            OutcomeKind.HALTED,
            name,
            f"{reason or 'halted'}; `fleetwave resume {name}` continues it",
        )
    if status in (CampaignStatus.FAILED, CampaignStatus.CANCELLED):
        return Outcome(OutcomeKind.FAILED, name, f"campaign is {status.value}: {reason or ''}")
    return None


def campaign_counts(
    session: Any,
    *,
    spec: CampaignSpec,
    campaign_id: int,
    wave_index: int | None = None,
    retrying: dict[str, int] | None = None,
) -> Counts:
    """Threshold counts of the campaign (or one wave) from two SQL aggregates."""
    st = store.device_status_counts(session, campaign_id=campaign_id, wave_index=wave_index)
    kinds = store.failure_kind_counts(session, campaign_id=campaign_id, wave_index=wave_index)
    kinds = {k: n for k, n in kinds.items()}
    rb_failed = st.get(D.ROLLBACK_FAILED, 0)
    if rb_failed:  # rollback failures are devices whose upgrade succeeded
        kinds = _rollback_adjusted(session, campaign_id, wave_index, kinds)
    retrying = retrying or {}
    final = {k: max(0, n - retrying.get(k, 0)) for k, n in kinds.items()}
    counted = {k.value for k in spec.thresholds.failure_kinds}
    failed = sum(n for k, n in final.items() if k in counted and k != FailureKind.TIMEOUT.value)
    timed_out = final.get(FailureKind.TIMEOUT.value, 0) if "timeout" in counted else 0
    return Counts(
        total=sum(st.values()),
        succeeded=st.get(D.SUCCEEDED, 0)
        + st.get(D.ROLLING_BACK, 0)
        + st.get(D.ROLLED_BACK, 0)
        + rb_failed,
        failed=failed,
        timed_out=timed_out,
        skipped=st.get(D.SKIPPED, 0) + st.get(D.CANCELLED, 0),
        retrying=sum(retrying.values()),
        ignored=sum(final.values()) - failed - timed_out,
    )


def threshold_counts(
    session: Any,
    *,
    spec: CampaignSpec,
    campaign_id: int,
    wave_index: int | None = None,
    retrying: dict[str, int] | None = None,
) -> tuple[Counts, Counts]:
    """(what the store holds, what only the last task polls add): the thresholds' counts.

    The second part counts the per-task statistics of active upgrade tasks (stored by each
    monitoring round) beyond the results already stored for those tasks, so a failure
    counts as soon as a poll shows it, not when its whole task has finished.
    """
    recorded = campaign_counts(
        session, spec=spec, campaign_id=campaign_id, wave_index=wave_index, retrying=retrying
    )
    figures = store.active_chunk_figures(session, campaign_id=campaign_id, wave_index=wave_index)
    rules = spec.policy.resubmit or {}
    in_flight = in_flight_counts(
        ((f.round, f.polled, f.recorded) for f in figures),
        counted_kinds=spec.thresholds.failure_kinds,
        max_attempts={k.value: 1 + r.rounds for k, r in rules.items()},
    )
    return recorded, in_flight


def _rollback_adjusted(
    session: Any, campaign_id: int, wave_index: int | None, kinds: dict[str, int]
) -> dict[str, int]:
    # failure_kind_counts includes ROLLBACK_FAILED rows; take them out again by kind
    out = dict(kinds)
    for run in store.iter_device_runs(
        session, campaign_id=campaign_id, wave_index=wave_index, statuses=[D.ROLLBACK_FAILED]
    ):
        k = run.failure_kind or "unknown"
        out[k] = max(0, out.get(k, 0) - 1)
    return out


@dataclass
class _Retries:
    """Failed devices of a wave that get another round: due now, later, and per kind."""

    due: dict[int, list[str]] = field(default_factory=dict)  # attempt -> devices
    by_kind: dict[str, int] = field(default_factory=dict)
    next_due: pendulum.DateTime | None = None
    decision: Decision | None = None
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> not retried

    @property
    def count(self) -> int:
        return sum(self.by_kind.values())


class _Loop:
    """The stage loop of one run (see the module docstring)."""

    def __init__(
        self,
        ctx: RunContext,
        *,
        ttl: timedelta,
        sleep_through_windows: bool,
        max_rounds: int | None,
    ) -> None:
        self.ctx = ctx
        self.spec = ctx.spec
        self.ttl = ttl
        self.sleep_through = sleep_through_windows
        self.max_rounds = max_rounds
        self.schedule = ctx.spec.schedule()
        self.poll = ctx.spec.policy.poll_interval.total_seconds()
        self._last_threshold: tuple[str, int] | None = None
        self._span: tuple[pendulum.DateTime, pendulum.DateTime] | None = None
        self.targets = TargetingReader(ctx.spec)
        self.targeting: Targeting | None = None
        self._not_retried: set[str] = set()  # reported in this run

    # ------------------------------------------------------------------ helpers

    def outcome(
        self,
        kind: OutcomeKind,
        reason: str = "",
        *,
        next_open: pendulum.DateTime | None = None,
        wave: int | None = None,
    ) -> Outcome:
        with self.ctx.tx() as s:
            counts = campaign_counts(s, spec=self.spec, campaign_id=self.ctx.campaign_id)
        return Outcome(
            kind,
            self.spec.name,
            reason,
            next_open=next_open,
            wave=wave,
            api_calls=self.ctx.api_calls(),
            tasks_submitted=self.ctx.submitted_tasks,
            counts=counts.as_dict(),
        )

    def status(self) -> CampaignStatus:
        with self.ctx.tx() as s:
            return store.get_campaign_by_id(s, campaign_id=self.ctx.campaign_id).status

    def set_status(
        self, status: CampaignStatus, reason: str | None = None, data: dict[str, Any] | None = None
    ) -> None:
        try:
            self._set_status(status, reason, data)
        except store.IllegalTransitionError:
            self.check_halt()  # an operator halted it meanwhile: that wins
            raise

    def _set_status(
        self, status: CampaignStatus, reason: str | None, data: dict[str, Any] | None
    ) -> None:
        with self.ctx.tx() as s:
            store.set_campaign_status(
                s,
                campaign_id=self.ctx.campaign_id,
                status=status,
                now=self.ctx.now(),
                reason=reason,
                actor="engine",
                flow_run_id=self.ctx.flow_run_id,
                data=data,
            )

    def set_wave(
        self,
        index: int,
        status: WaveStatus,
        reason: str | None = None,
        *,
        soak_until: pendulum.DateTime | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        with self.ctx.tx() as s:
            store.set_wave_status(
                s,
                campaign_id=self.ctx.campaign_id,
                index=index,
                status=status,
                now=self.ctx.now(),
                reason=reason,
                soak_until=soak_until,
                data=data,
                flow_run_id=self.ctx.flow_run_id,
            )

    def waves(self) -> list[Wave]:
        with self.ctx.tx() as s:
            return store.get_waves(s, campaign_id=self.ctx.campaign_id)

    def renew(self) -> None:
        with self.ctx.tx() as s:
            store.renew_lease(
                s,
                campaign_id=self.ctx.campaign_id,
                holder=self.ctx.holder,
                ttl=self.ttl,
                now=self.ctx.now(),
            )

    def check_halt(self) -> CampaignStatus:
        """The campaign's status now; an operator's halt ends the run."""
        status = self.status()
        if status is CampaignStatus.HALTED:
            raise _Stop(self.outcome(OutcomeKind.HALTED, "halted by an operator"))
        return status

    async def sleep(self, seconds: float) -> None:
        """Sleep on the campaign clock, renewing the lease every half lease: a live run
        never lets it lapse, however long it sleeps (windows, soaks, backoffs)."""
        left = max(0.0, seconds)
        step = self.ttl.total_seconds() / 2
        while left > step:
            await self.ctx.clock.sleep(step)
            left -= step
            self.renew()
        await self.ctx.clock.sleep(left)

    def progress(self, message: str = "") -> None:
        self.ctx.emit("round", message=message, waves=self.ctx.wave_progress())

    def tick(self) -> None:
        self.ctx.rounds += 1
        if self.max_rounds is not None and self.ctx.rounds > self.max_rounds:
            raise _Stop(
                self.outcome(
                    OutcomeKind.STOPPED,
                    f"stopped after {self.max_rounds} rounds (--max-rounds); run again to continue",
                )
            )

    # ------------------------------------------------------------------ events

    def _last_event(self, kinds: list[str], subject: Callable[[str], bool] | None = None) -> Any:
        """The newest event of these kinds (whose subject passes ``subject``), or None."""
        with self.ctx.tx() as s:
            found = store.recent_events(
                s,
                campaign_id=self.ctx.campaign_id,
                limit=1 if subject is None else 500,
                kinds=kinds,
            )
        for event in found:
            if subject is None or subject(event.subject or ""):
                return event
        return None

    def overridden(self) -> tuple[bool, Any]:
        """(the last breach was overridden by an operator, the override event or None)."""
        breach = self._last_event(["threshold_breach"])
        override = self._last_event(["threshold_override"])
        if override is None:
            return False, None
        return breach is None or override.id > breach.id, override

    # ------------------------------------------------------------------ main loop

    async def run(self) -> Outcome:
        ctx = self.ctx
        with ctx.tx() as s:
            planned = bool(store.get_waves(s, campaign_id=ctx.campaign_id))
        if not planned:
            await ctx.stage("resolve and plan", self.plan)
        await ctx.stage("reconcile", lambda: reconcile_intents(ctx))
        status = self.check_halt()
        if status is CampaignStatus.ROLLING_BACK:
            return await self.rollback_loop()
        # a store that never sent a task here asks the platform first (raises on overlap)
        await ctx.stage("check live platform tasks", lambda: check_live_tasks(ctx))
        if status is not CampaignStatus.RUNNING:
            self.set_status(CampaignStatus.RUNNING, "advancing")
        while True:
            self.renew()
            status = self.check_halt()
            if status is CampaignStatus.ROLLING_BACK:
                return await self.rollback_loop()
            wave = next(
                (
                    w
                    for w in self.waves()
                    if w.status not in (WaveStatus.SUCCEEDED, WaveStatus.SKIPPED)
                ),
                None,
            )
            if wave is None:
                self.set_status(CampaignStatus.COMPLETED, "every wave finished")
                return self.outcome(OutcomeKind.COMPLETED, "every wave finished")
            try:
                await self.step(wave)
            except _RollBack:
                return await self.rollback_loop()

    async def plan(self) -> None:
        ctx = self.ctx
        ctx.emit("stage", stage="resolve targets")
        res = await resolve_targets(ctx.platform, self.spec, ctx.package)
        empty = no_eligible_devices(self.spec, res)
        if empty is not None:  # never plan (and so "complete") a campaign that targets nothing
            raise empty
        plan = plan_waves(
            res.device_ids,
            self.spec.wave_targets(),
            seed=self.spec.shuffle_seed,
            max_devices_per_task=ctx.chunk_size,
            buckets=res.buckets,
        )
        now = ctx.now()
        with ctx.tx() as s:
            store.create_waves(
                s,
                campaign_id=ctx.campaign_id,
                waves=[store.WavePlan(w.index, w.name, w.device_count) for w in plan.waves],
                now=now,
            )
            rows = (
                store.NewDeviceRun(d, w.index, None, ctx.package.version)
                for w in plan.waves
                for d in w.iter_devices()
            )
            store.add_device_runs(s, campaign_id=ctx.campaign_id, devices=rows, now=now)
            # devices left out at resolve time: SKIPPED rows with the reason, so status and
            # report can say which were skipped and why (never claimed)
            store.add_skipped_device_runs(
                s,
                campaign_id=ctx.campaign_id,
                devices=(
                    (d, f"{reason.value}: {reason.text}")
                    for reason, ids in res.skipped.items()
                    for d in ids
                ),
                target_version=ctx.package.version,
                now=now,
            )
            store.append_event(
                s,
                campaign_id=ctx.campaign_id,
                kind="planned",
                now=now,
                actor="engine",
                flow_run_id=ctx.flow_run_id,
                data={
                    "package": {"file_id": ctx.package.file_id, "version": ctx.package.version},
                    "rollback": (
                        {
                            "file_id": ctx.rollback_package.file_id,
                            "version": ctx.rollback_package.version,
                        }
                        if ctx.rollback_package
                        else None
                    ),
                    "devices": plan.device_count,
                    "chunks": plan.chunk_count,
                    "waves": [
                        {
                            "index": w.index,
                            "name": w.name,
                            "devices": w.device_count,
                            "chunks": len(w.chunks),
                        }
                        for w in plan.waves
                    ],
                    "groups": [
                        {"group": g.label, "members": g.members, "eligible": g.eligible}
                        for g in res.groups
                    ],
                    "skipped": res.skip_counts(),
                },
            )
        log.info(
            "%s: planned %d devices in %d waves", self.spec.name, plan.device_count, len(plan.waves)
        )

    async def step(self, wave: Wave) -> None:
        """One pass over the current wave: gate, submit, monitor, decide, sleep."""
        idx = wave.index
        if wave.status is WaveStatus.PENDING:
            if wave.planned_size == 0:
                self.set_wave(idx, WaveStatus.SKIPPED, "no devices")
                return
            if self.spec.waves[idx].approval:
                self.set_wave(idx, WaveStatus.WAITING_APPROVAL, "approval required")
                return
            self.set_wave(idx, WaveStatus.RUNNING, "started")
            return
        if wave.status is WaveStatus.WAITING_APPROVAL:
            await self.approval_gate(wave)
            return
        if wave.status is WaveStatus.HALTED:
            self.set_wave(idx, WaveStatus.RUNNING, "resumed")
            return
        if wave.status in (WaveStatus.FAILED, WaveStatus.REJECTED, WaveStatus.CANCELLED):
            self.set_status(CampaignStatus.HALTED, f"wave {idx} is {wave.status.value}")
            raise _Stop(self.outcome(OutcomeKind.HALTED, f"wave {idx} is {wave.status.value}"))
        if wave.status is WaveStatus.SOAKING:
            until = to_pendulum(wave.soak_until) or self.ctx.now()
            if self.ctx.now() >= until:
                self.set_wave(idx, WaveStatus.SUCCEEDED, "soak period over")
                return
            await self.wait_until(until, f"wave {idx} soaks until {until.to_iso8601_string()}")
            return
        await self.running_step(wave)

    async def wait_until(
        self, when: pendulum.DateTime, reason: str, kind: OutcomeKind = OutcomeKind.WAITING_WINDOW
    ) -> None:
        """Wait for ``when``: sleep (in poll-sized steps) while the current window lasts past
        it, or always with ``sleep_through_windows``; otherwise end the run waiting for it."""
        now = self.ctx.now()
        if when <= now:
            return
        close = self.window_close(now)
        in_window = close is not None and when < close
        if self.sleep_through or in_window:
            self.progress(reason)
            step = (when - now).total_seconds()
            await self.sleep(step if self.sleep_through else min(step, self.poll))
            return
        span = self.schedule.next_window(when)
        if span is not None and span[0] > when:
            when = span[0]  # nothing can happen before the window after it opens
        self.set_status(CampaignStatus.PAUSED, reason, data={"next_open": when.isoformat()})
        raise _Stop(self.outcome(kind, reason, next_open=when))

    # ------------------------------------------------------------------ approval

    async def approval_gate(self, wave: Wave) -> None:
        ctx = self.ctx
        idx = wave.index
        # An approval counts unless a threshold of this wave tripped after it was given
        # (event order, not timestamps: the CLI and the engine may use different clocks).
        breach = self._last_event(["threshold_breach"], lambda subj: subj == f"wave {idx}")

        def valid(w: Wave) -> bool:
            if w.approval_decision is None:
                return False
            if breach is None:
                return True
            given = self._last_event(
                ["wave_approval"], lambda subj: subj.startswith(f"wave {idx} ")
            )
            return given is not None and given.id > breach.id

        if not valid(wave) and ctx.approver is not None:
            ctx.emit("stage", stage="approval", message=f"waiting for approval of wave {idx}")
            self.set_status(CampaignStatus.PAUSED, f"awaiting approval of wave {idx}")
            reply = await ctx.approver(
                ApprovalRequest(
                    campaign=self.spec.name,
                    wave=idx,
                    wave_name=wave.name,
                    devices=wave.planned_size,
                    reason="threshold breached" if breach else "wave requires approval",
                    token=f"breach-{breach.id}" if breach else "gate",
                    summary=self.outcome(OutcomeKind.AWAITING_APPROVAL).counts,
                )
            )
            if reply is not None:
                try:
                    appointment = check_appointment(
                        self.schedule, reply.start, reply.end, now=ctx.now()
                    )
                except AppointmentError as exc:
                    ctx.event(
                        "approval_invalid",
                        subject=f"wave {idx}",
                        data={"error": str(exc), "by": reply.by},
                    )
                    appointment = None
                    reply = None
                fresh = next(w for w in self.waves() if w.index == idx)
                if reply is not None and not valid(fresh):  # else `approve` recorded it
                    record_decision(
                        ctx.db,
                        campaign=self.spec.name,
                        wave=idx,
                        approve=reply.approve,
                        by=reply.by,
                        now=ctx.now(),
                        comment=reply.comment,
                        appointment=appointment,
                    )
            self.check_halt()
            wave = next(w for w in self.waves() if w.index == idx)
        if not valid(wave):
            reason = f"wave {idx} ({wave.name}) awaits approval"
            self.set_status(CampaignStatus.PAUSED, reason)
            raise _Stop(self.outcome(OutcomeKind.AWAITING_APPROVAL, reason, wave=idx))
        if wave.approval_decision is ApprovalDecision.REJECTED:
            reason = f"wave {idx} rejected by {wave.approval_by}" + (
                f": {wave.approval_comment}" if wave.approval_comment else ""
            )
            self.set_wave(idx, WaveStatus.REJECTED, reason)
            self.set_status(CampaignStatus.HALTED, reason)
            raise _Stop(self.outcome(OutcomeKind.HALTED, f"{reason}; {REJECTED_HINT}", wave=idx))
        if breach is not None:
            self.record_override(f"approved by {wave.approval_by}")
        booked = to_pendulum(wave.appointment_at)
        if booked is not None and ctx.now() < booked:
            if self.status() is not CampaignStatus.RUNNING:
                self.set_status(CampaignStatus.RUNNING, "approved")
            await self.wait_until(booked, f"wave {idx} booked for {booked.to_iso8601_string()}")
            return
        if self.status() is not CampaignStatus.RUNNING:
            self.set_status(CampaignStatus.RUNNING, f"wave {idx} approved")
        self.set_wave(
            idx,
            WaveStatus.RUNNING,
            f"approved by {wave.approval_by}",
            data={"comment": wave.approval_comment},
        )

    def record_override(self, why: str) -> None:
        with self.ctx.tx() as s:
            recorded, in_flight = threshold_counts(
                s, spec=self.spec, campaign_id=self.ctx.campaign_id
            )
        baseline = (recorded + in_flight).as_dict()
        self.ctx.event("threshold_override", data={"why": why, "baseline": baseline})

    # ------------------------------------------------------------------ running wave

    def scan_retries(self, wave_index: int, now: pendulum.DateTime) -> _Retries:
        rules = self.spec.policy.resubmit
        out = _Retries()
        if not rules:
            return out
        limits = {k.value: 1 + r.rounds for k, r in rules.items()}
        finished_at: dict[str, pendulum.DateTime | None] = {}
        cands: list[RetryCandidate] = []
        with self.ctx.tx() as s:
            for run in store.iter_device_runs(
                s,
                campaign_id=self.ctx.campaign_id,
                wave_index=wave_index,
                statuses=[D.FAILED, D.TIMED_OUT],
            ):
                kind = run.failure_kind or FailureKind.FAIL.value
                cands.append(RetryCandidate(run.device_id, run.attempt, kind))
                finished_at[run.device_id] = to_pendulum(run.finished_at)
        if self.targeting is not None:
            # an excluded (or removed) device is never sent again: its failure is final
            _, out.dropped = screen_targets(
                (c.device_id for c in cands),
                excluded=self.targeting.excluded,
                targeted=self.targeting.targeted,
            )
            gone = {d for ids in out.dropped.values() for d in ids}
            cands = [c for c in cands if c.device_id not in gone]
        again, _final, decision = select_resubmissions(cands, max_attempts=limits)
        out.decision = decision
        for c in again:
            out.by_kind[c.kind] = out.by_kind.get(c.kind, 0) + 1
            rule = rules[FailureKind(c.kind)]
            wait = backoff_seconds(
                c.attempt + 1,
                base_seconds=rule.backoff.total_seconds(),
                factor=rule.backoff_factor,
            )
            due = (finished_at.get(c.device_id) or now).add(seconds=wait)
            if due <= now:
                out.due.setdefault(c.attempt, []).append(c.device_id)
            elif out.next_due is None or due < out.next_due:
                out.next_due = due
        return out

    # ------------------------------------------------------------------ targets now

    def refresh_targeting(self) -> Targeting:
        """Re-read the exclusions and explicit device list (before every submission).

        Devices added to ``devices``/``devices_file`` after planning are not added (the
        device list is fixed at planning); when that list changed (an accepted spec
        change, or an edit during this run) an event says which were left out.
        """
        first = self.targeting is None
        targeting = self.targets.read()
        changed = not first and (
            self.targeting is not None and targeting.explicit_key != self.targeting.explicit_key
        )
        self.targeting = targeting
        if changed or (first and self._explicit_change_accepted()):
            self.report_not_added(targeting)
        return targeting

    def _explicit_change_accepted(self) -> bool:
        last = self._last_event(["spec_change_accepted", "targets_not_added"])
        if last is None or last.kind != "spec_change_accepted":
            return False
        fields = {str(c.get("field")) for c in (last.data or {}).get("changes", [])}
        return bool(fields & {"targets.devices", "targets.devices_file"})

    def report_not_added(self, targeting: Targeting) -> None:
        ctx = self.ctx
        shown: list[str] = []
        count = 0
        with ctx.tx() as s:
            for device_id in store.unknown_device_ids(
                s, campaign_id=ctx.campaign_id, device_ids=explicit_ids(self.spec)
            ):
                count += 1
                if len(shown) < SHOWN:
                    shown.append(device_id)
        ctx.event(
            "targets_not_added",
            data={
                "count": count,
                "devices": shown,
                "devices_file": targeting.explicit_key,
                "why": "added to targets.devices / devices_file after the campaign was "
                "planned; its devices are fixed at planning: start a new campaign for them",
            },
        )
        if count:
            log.warning(
                "%s: %d devices added to the target list after planning are not added",
                self.spec.name,
                count,
            )

    def drop_pending(
        self, wave_index: int, pending: dict[int, list[str]], targeting: Targeting
    ) -> dict[int, list[str]]:
        """Pending devices the target lists no longer allow: SKIPPED (with the reason)
        and named in a ``devices_dropped`` event; returns the rest."""
        ctx = self.ctx
        kept: dict[int, list[str]] = {}
        dropped: dict[str, list[str]] = {}
        for attempt, ids in pending.items():
            keep, gone = screen_targets(
                ids, excluded=targeting.excluded, targeted=targeting.targeted
            )
            if keep:
                kept[attempt] = keep
            for reason, dev in gone.items():
                dropped.setdefault(reason, []).extend(dev)
        for reason, ids in dropped.items():
            skip = SkipReason(reason)
            with ctx.tx() as s:
                changed = store.skip_pending_devices(
                    s,
                    campaign_id=ctx.campaign_id,
                    device_ids=ids,
                    reason=f"{skip.value}: {skip.text}",
                    now=ctx.now(),
                )
            if changed:
                ctx.event(
                    "devices_dropped",
                    subject=f"wave {wave_index}",
                    data={
                        "reason": skip.value,
                        "why": _DROP_WHY[skip],
                        "count": len(changed),
                        "devices": sorted(changed)[:SHOWN],
                        "status": D.SKIPPED.value,
                    },
                )
                log.warning(
                    "%s: wave %d: %d devices dropped (%s)",
                    self.spec.name,
                    wave_index,
                    len(changed),
                    _DROP_WHY[skip],
                )
        return kept

    def report_not_retried(self, wave_index: int, dropped: dict[str, list[str]]) -> None:
        """Failed devices that will not be resubmitted because the lists dropped them
        (they keep their failure), once per run."""
        for reason, ids in dropped.items():
            new = sorted(set(ids) - self._not_retried)
            if not new:
                continue
            self._not_retried.update(new)
            skip = SkipReason(reason)
            self.ctx.event(
                "devices_dropped",
                subject=f"wave {wave_index}",
                data={
                    "reason": skip.value,
                    "why": f"{_DROP_WHY[skip]}; not resubmitted, the failure stays",
                    "count": len(new),
                    "devices": new[:SHOWN],
                    "status": "not retried",
                },
            )

    async def submit(self, wave_index: int, retries: _Retries, now: pendulum.DateTime) -> int:
        """Submit retries (due) then pending devices of the wave, within the in-flight caps."""
        ctx = self.ctx
        open_now, _ = self.window_state(now)
        policy = task_policy(ctx, now, self._span if open_now else None)
        if policy is None:
            return 0
        pol = self.spec.policy
        targeting = self.refresh_targeting()
        with ctx.tx() as s:
            active = store.list_active_chunks(s, campaign_id=ctx.campaign_id)
            # A pending device's round is its attempt + 1: one whose retry intent was
            # abandoned comes back pending with its earlier attempts counted.
            pending: dict[int, list[str]] = {}
            for run in itertools.islice(
                store.iter_device_runs(
                    s,
                    campaign_id=ctx.campaign_id,
                    wave_index=wave_index,
                    statuses=[D.PENDING],
                ),
                ctx.chunk_size * pol.max_inflight_tasks,
            ):
                pending.setdefault(run.attempt, []).append(run.device_id)
        pending = self.drop_pending(wave_index, pending, targeting)
        not_retried = {r: list(ids) for r, ids in retries.dropped.items()}
        for attempt, ids in list(retries.due.items()):
            keep, dropped = screen_targets(
                ids, excluded=targeting.excluded, targeted=targeting.targeted
            )
            retries.due[attempt] = keep
            for reason, gone in dropped.items():
                not_retried.setdefault(reason, []).extend(gone)
        self.report_not_retried(wave_index, not_retried)
        due: dict[int, list[str]] = {}
        for attempt, ids in [*retries.due.items(), *pending.items()]:
            if ids:
                due.setdefault(attempt, []).extend(ids)
        groups: list[tuple[int, list[list[str]]]] = []
        for attempt in sorted(due, reverse=True):  # retries first
            ids = sorted(due[attempt])
            groups.append(
                (
                    attempt + 1,
                    [ids[i : i + ctx.chunk_size] for i in range(0, len(ids), ctx.chunk_size)],
                )
            )
        sizes = [len(b) for _, batches in groups for b in batches]
        allowed = chunk_capacity(
            active_tasks=len(active),
            active_devices=sum(c.device_count for c in active),
            max_tasks=pol.max_inflight_tasks,
            max_devices=pol.max_inflight_devices,
            chunk_sizes=sizes,
        )
        if allowed == 0:
            return 0
        if retries.due and retries.decision is not None:
            ctx.decision(retries.decision, subject=f"wave {wave_index}")
        submitted = 0
        for round_no, batches in groups:
            take = batches[: allowed - submitted]
            if not take:
                break

            async def _go(take: list[list[str]] = take, round_no: int = round_no) -> int:
                chunks = create_intents(
                    ctx,
                    kind=ChunkKind.UPGRADE,
                    wave_index=wave_index,
                    round=round_no,
                    batches=take,
                    file_id=ctx.package.file_id,
                    policy=policy,
                )
                for chunk in chunks:
                    await submit_intent(ctx, chunk)
                return len(chunks)

            n = await ctx.stage(
                f"submit wave {wave_index} round {round_no} ({len(take)} tasks)", _go
            )
            submitted += n
            ctx.emit(
                "submitted",
                message=f"wave {wave_index} round {round_no}: {n} tasks",
                detail={"wave": wave_index, "round": round_no, "tasks": n},
            )
        return submitted

    def window_state(self, now: pendulum.DateTime) -> tuple[bool, pendulum.DateTime | None]:
        """(submitting allowed now, the next opening when not).

        The span found is cached until ``now`` leaves it: finding spans can mean scanning
        many days ahead (an always-open schedule is one span of the whole horizon).
        """
        min_left = (
            self.ctx.platform.capabilities.min_window or timedelta(0)
            if self.spec.policy.execute is ExecuteMode.WINDOW
            else timedelta(0)
        )
        span = self._span
        if span is None or not (now < span[1] and span[1] - max(now, span[0]) >= min_left):
            span = self._span = self.schedule.next_window(now, min_length=min_left)
        if span is None:
            return False, None
        if span[0] <= now < span[1]:
            return True, None
        return False, span[0]

    def window_close(self, now: pendulum.DateTime) -> pendulum.DateTime | None:
        """When the window open at ``now`` closes (None when closed)."""
        open_now, _ = self.window_state(now)
        return self._span[1] if open_now and self._span is not None else None

    async def running_step(self, wave: Wave) -> None:
        ctx = self.ctx
        idx = wave.index
        self.tick()
        now = ctx.now()
        retries = self.scan_retries(idx, now)
        open_now, next_open = self.window_state(now)
        submitted = 0
        if open_now:
            submitted = await self.submit(idx, retries, now)
            if submitted:
                if ctx.push is not None:
                    ctx.push.expect(ctx.campaign_id, ctx.now())
                retries = self.scan_retries(idx, ctx.now())
        with ctx.tx() as s:
            active = len(store.list_active_chunks(s, campaign_id=ctx.campaign_id))
        if active:
            await ctx.stage(f"monitor round {ctx.rounds}", lambda: monitor_round(ctx))
            retries = self.scan_retries(idx, ctx.now())
        self.progress()
        if self.decide(idx, retries):
            return  # the wave finished: go on with the next one at once
        self.check_halt()
        with ctx.tx() as s:
            active = len(store.list_active_chunks(s, campaign_id=ctx.campaign_id))
            pending = store.device_status_counts(
                s, campaign_id=ctx.campaign_id, wave_index=idx
            ).get(D.PENDING, 0)
        if active:
            await self.sleep(self.poll)
            return
        now = ctx.now()
        open_now, next_open = self.window_state(now)
        if (pending or retries.due) and not open_now:
            if next_open is None:
                self.set_status(CampaignStatus.PAUSED, "no allowed window ahead")
                raise _Stop(self.outcome(OutcomeKind.WAITING_WINDOW, "no allowed window ahead"))
            await self.wait_until(
                next_open, f"window closed; next opens {next_open.to_iso8601_string()}"
            )
            return
        if pending or retries.due:
            if submitted == 0:
                await self.sleep(self.poll)  # e.g. the platform refused a policy: try later
            return
        if retries.next_due is not None:
            wake = retries.next_due
            await self.wait_until(wake, f"retry backoff until {wake.to_iso8601_string()}")
            return
        await self.sleep(self.poll)  # nothing to do yet (should not happen): no busy loop

    def decide(self, idx: int, retries: _Retries) -> bool:
        """Thresholds and the wave gate after a round; True when the wave finished."""
        ctx = self.ctx
        th = self.spec.thresholds
        overridden, override = self.overridden()
        wave_scope = th.scope is ThresholdScope.WAVE
        with ctx.tx() as s:
            # thresholds: stored results plus what the last task polls add; the wave gate
            # waits for stored results only
            recorded, in_flight = threshold_counts(
                s,
                spec=self.spec,
                campaign_id=ctx.campaign_id,
                wave_index=idx if wave_scope else None,
                retrying=retries.by_kind,
            )
            wave_counts = (
                recorded
                if wave_scope
                else campaign_counts(
                    s,
                    spec=self.spec,
                    campaign_id=ctx.campaign_id,
                    wave_index=idx,
                    retrying=retries.by_kind,
                )
            )
        scope_counts = recorded + in_flight
        if override is not None and not wave_scope:
            scope_counts = scope_counts.minus(Counts.from_dict(override.data.get("baseline", {})))
        on_trip = Verdict.ROLLBACK if th.on_breach is BreachAction.ROLLBACK else Verdict.HALT
        decision = evaluate_failure_threshold(
            scope_counts,
            max_failure_rate=(
                th.max_failure_percent / 100 if th.max_failure_percent is not None else None
            ),
            max_failures=th.max_failures,
            min_finished=th.min_finished,
            on_trip=on_trip,
            scope=f"wave {idx}" if wave_scope else "campaign",
            parts={"recorded": recorded.as_dict(), "in_flight": in_flight.as_dict()},
        )
        key = (decision.verdict.value, scope_counts.finished)
        if decision.verdict is not Verdict.WAIT and key != self._last_threshold:
            self._last_threshold = key
            ctx.decision(decision, subject=f"wave {idx}")
        if decision.verdict in (Verdict.HALT, Verdict.ROLLBACK):
            self.breach(idx, decision)
        nxt = idx + 1 if idx + 1 < len(self.spec.waves) else None
        gate = evaluate_wave_gate(
            idx,
            wave_counts,
            success_threshold=self.spec.wave_success_percent(idx) / 100,
            next_wave=nxt,
        )
        if gate.verdict is Verdict.WAIT:
            return False
        if gate.verdict is Verdict.HALT and overridden:
            gate = Decision(
                gate.name, Verdict.PROCEED, f"{gate.reason}; overridden by an operator", gate.inputs
            )
        ctx.decision(gate, subject=f"wave {idx}")
        if gate.verdict is Verdict.HALT:
            self.breach(idx, gate)
        soak = self.spec.waves[idx].soak
        if soak.total_seconds() > 0 and nxt is not None:
            until = ctx.now().add(seconds=soak.total_seconds())
            self.set_wave(
                idx, WaveStatus.SOAKING, gate.reason, soak_until=until, data=gate.as_event()
            )
        else:
            self.set_wave(idx, WaveStatus.SUCCEEDED, gate.reason, data=gate.as_event())
        return True

    def breach(self, idx: int, decision: Decision) -> None:
        """A threshold or gate tripped: halt, pause for approval, or roll back (raises _Stop)."""
        ctx = self.ctx
        action = self.spec.thresholds.on_breach
        ctx.event(
            "threshold_breach",
            subject=f"wave {idx}",
            data={"action": action.value, **decision.as_event()},
        )
        if action is BreachAction.ROLLBACK and ctx.rollback_package is not None:
            self.set_wave(idx, WaveStatus.FAILED, decision.reason, data=decision.as_event())
            self.set_status(CampaignStatus.ROLLING_BACK, decision.reason, data=decision.as_event())
            raise _RollBack()
        self.set_wave(idx, WaveStatus.HALTED, decision.reason, data=decision.as_event())
        if action is BreachAction.PAUSE:
            self.set_wave(idx, WaveStatus.WAITING_APPROVAL, "threshold breached")
            self.set_status(CampaignStatus.PAUSED, f"threshold breached: {decision.reason}")
            raise _Stop(self.outcome(OutcomeKind.AWAITING_APPROVAL, decision.reason, wave=idx))
        self.set_status(CampaignStatus.HALTED, decision.reason, data=decision.as_event())
        raise _Stop(self.outcome(OutcomeKind.HALTED, decision.reason, wave=idx))

    # ------------------------------------------------------------------ rollback

    async def rollback_loop(self) -> Outcome:
        """Send the rollback package to every device that took the new version."""
        ctx = self.ctx
        ctx.phase = "rollback"
        pkg = ctx.rollback_package
        if pkg is None:
            self.set_status(CampaignStatus.HALTED, "rollback needs a rollback package")
            return self.outcome(OutcomeKind.HALTED, "no rollback package to roll back with")
        now = ctx.now()
        with ctx.tx() as s:
            # only devices never sent a task: failures and timeouts keep their history
            cancelled = store.cancel_unsent_devices(s, campaign_id=ctx.campaign_id, now=now)
            for w in store.get_waves(s, campaign_id=ctx.campaign_id):
                if w.status in (
                    WaveStatus.PENDING,
                    WaveStatus.WAITING_APPROVAL,
                    WaveStatus.HALTED,
                    WaveStatus.RUNNING,
                    WaveStatus.SOAKING,
                ):
                    target = (
                        WaveStatus.CANCELLED
                        if w.status is not WaveStatus.RUNNING
                        else WaveStatus.FAILED
                    )
                    store.set_wave_status(
                        s,
                        campaign_id=ctx.campaign_id,
                        index=w.index,
                        status=target,
                        now=now,
                        reason="rolling back",
                        flow_run_id=ctx.flow_run_id,
                    )
        if cancelled:
            ctx.event("devices_cancelled", data={"devices": cancelled, "why": "rolling back"})
        ctx.emit("stage", stage="rollback", message=f"rolling back to {pkg.version}")
        pol = self.spec.policy
        while True:
            self.renew()
            if self.status() is CampaignStatus.HALTED:
                return self.outcome(OutcomeKind.HALTED, "halted by an operator during rollback")
            self.tick()
            with ctx.tx() as s:
                active = store.list_active_chunks(s, campaign_id=ctx.campaign_id)
                # a device whose upgrade task is still active waits for that task's final
                # read, which would otherwise land on its rollback (a halt may come early)
                busy = {c.id for c in active if c.kind is ChunkKind.UPGRADE}
                todo: dict[int, list[str]] = {}
                budget = ctx.chunk_size * max(0, pol.max_inflight_tasks - len(active))
                for run in store.iter_device_runs(
                    s, campaign_id=ctx.campaign_id, statuses=[D.SUCCEEDED]
                ):
                    if budget <= 0:
                        break
                    if run.chunk_id in busy:
                        continue
                    todo.setdefault(run.wave_index, []).append(run.device_id)
                    budget -= 1
            policy = task_policy(ctx, ctx.now())
            if policy is None:
                # a rollback does not wait for a window
                policy = TaskPolicy(ExecuteType.NOW, retry_times=pol.platform_retries)
            for w_idx, ids in sorted(todo.items()):
                batches = [ids[i : i + ctx.chunk_size] for i in range(0, len(ids), ctx.chunk_size)]

                async def _go(
                    w_idx: int = w_idx,
                    batches: list[list[str]] = batches,
                    policy: TaskPolicy = policy,
                ) -> int:
                    chunks = create_intents(
                        ctx,
                        kind=ChunkKind.ROLLBACK,
                        wave_index=w_idx,
                        round=1,
                        batches=batches,
                        file_id=pkg.file_id,
                        policy=policy,
                    )
                    for chunk in chunks:
                        await submit_intent(ctx, chunk)
                    return len(chunks)

                n = await ctx.stage(f"rollback wave {w_idx} ({len(batches)} tasks)", _go)
                if n and ctx.push is not None:
                    ctx.push.expect(ctx.campaign_id, ctx.now())
                ctx.emit("submitted", message=f"rollback wave {w_idx}: {n} tasks")
            with ctx.tx() as s:
                active = store.list_active_chunks(s, campaign_id=ctx.campaign_id)
            if active:
                await ctx.stage(f"monitor round {ctx.rounds}", lambda: monitor_round(ctx))
            self.progress()
            with ctx.tx() as s:
                active = store.list_active_chunks(s, campaign_id=ctx.campaign_id)
                left = store.device_status_counts(s, campaign_id=ctx.campaign_id).get(
                    D.SUCCEEDED, 0
                )
            if not active and not left:
                with ctx.tx() as s:
                    st = store.device_status_counts(s, campaign_id=ctx.campaign_id)
                reason = (
                    f"{st.get(D.ROLLED_BACK, 0)} devices rolled back to {pkg.version}, "
                    f"{st.get(D.ROLLBACK_FAILED, 0)} failed"
                )
                self.set_status(CampaignStatus.ROLLED_BACK, reason)
                return self.outcome(OutcomeKind.ROLLED_BACK, reason)
            if active:
                await self.sleep(self.poll)


_DROP_WHY = {
    SkipReason.EXCLUDED: "listed in targets.exclude / exclude_file now",
    SkipReason.REMOVED: "no longer in targets.devices / devices_file",
}


class _RollBack(Exception):
    """Switches the loop to the rollback phase."""

"""``advance()``: run a campaign's stages as far as they can go now, then return an outcome.

The campaign is a durable state machine in the store; this module only moves it. One call
takes the campaign's lease, verifies the package, then hands over to the wave driver
(:mod:`fleetwave.engine.waves`): plan the targets (once), reconcile intents left by a
crashed run, then loop over approval gates, windows, submission, monitoring rounds,
threshold and wave-gate decisions, sleeps on the clock; the rollback phase
(:mod:`fleetwave.engine.rollback`) when a breach rolls back. It returns when the campaign
completes, halts, rolls back, must wait for a window or an approval, or fails
(:mod:`fleetwave.engine.outcome`). A completed consent campaign whose owners asked for
retries of failed devices since (its plan period still open) runs again for those only.
Every decision goes to the event log with its inputs.

The engine's other modules by job: ``counts`` (threshold counts from the store),
``decide`` (every rule, pure), ``planning``, ``retries``, ``screening`` (target lists
now), ``submit``, ``monitor``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from fleetwave import store
from fleetwave.clock import Clock, RealClock
from fleetwave.engine.context import Approver, RunContext, StageRunner, plain_stage_runner
from fleetwave.engine.counts import campaign_counts, threshold_counts
from fleetwave.engine.decide import tasks_to_cancel
from fleetwave.engine.lease import default_holder, take_lease
from fleetwave.engine.lease import lease_ttl as lease_ttl_setting
from fleetwave.engine.outcome import Outcome, OutcomeKind, Stop, early_outcome
from fleetwave.engine.progress import ProgressSink, null_sink
from fleetwave.engine.verify import verify_packages
from fleetwave.engine.waves import WaveDriver
from fleetwave.errors import UserError
from fleetwave.platforms.base import Capabilities, Platform
from fleetwave.platforms.errors import PlatformError
from fleetwave.spec import SpecSource, load_spec_with_source, spec_snapshot
from fleetwave.spec.capability_check import apply_capabilities
from fleetwave.spec.model import CampaignSpec, spec_change_records, spec_fingerprint
from fleetwave.store import CampaignStatus, ChunkKind, WaveStatus

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


async def cancel_unstarted(ctx: RunContext) -> list[str]:
    """After a halt: cancel the campaign's live upgrade tasks that have not started, where
    the platform can (:func:`fleetwave.engine.decide.tasks_to_cancel`); the decision and
    each refusal go to the event log. Returns the operationIds the platform cancelled."""
    with ctx.tx() as s:
        live = [
            (c.operation_id, c.stats)
            for c in store.list_active_chunks(s, campaign_id=ctx.campaign_id)
            if c.operation_id and c.kind is ChunkKind.UPGRADE
        ]
    if not live:
        return []
    decision = tasks_to_cancel(can_cancel=ctx.platform.capabilities.can_cancel_tasks, tasks=live)
    ctx.decision(decision)
    cancelled: list[str] = []
    for op in decision.inputs["cancel"]:
        try:
            if await ctx.platform.cancel_task(op):
                cancelled.append(op)
        except PlatformError as exc:
            log.warning("%s: could not cancel task %s: %s", ctx.spec.name, op, exc)
    if decision.inputs["cancel"]:
        ctx.event(
            "tasks_cancelled",
            data={"cancelled": cancelled, "asked": len(decision.inputs["cancel"])},
        )
    return cancelled


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
    step: StageRunner | None = None,
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
    ``stage`` runs each stage (a Prefect task run under the flow): the fixed ones, each
    running wave's rounds as one, each submission batch inside it, and the rollback phase;
    ``step`` runs each monitoring round inside its wave's stage (in place by default).
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
    ttl = lease_ttl or lease_ttl_setting(poll)
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
    early = early_outcome(spec.name, status, row.status_reason, rejected_wave=rejected)
    after_completion = False
    if status is CampaignStatus.COMPLETED and spec.consent is not None:
        # the plan stays open after the waves: owners' retries recorded since are sent
        with store.session_scope(engine, read_only=True) as s:
            after_completion = bool(
                store.count_owner_retries(s, campaign_id=campaign_id, superseded=True)
            )
    if early is not None and not after_completion:
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
                step=step or plain_stage_runner,
                approver=approver,
                flow_run_id=flow_run_id,
                push=push,
            )
            loop = WaveDriver(
                ctx,
                ttl=ttl,
                sleep_through_windows=sleep_through_windows,
                max_rounds=max_rounds,
                after_completion=after_completion,
            )
            try:
                outcome = await loop.run()
            except Stop as stop:
                outcome = stop.outcome
            except PlatformError as exc:
                ctx.event("run_failed", data={"error": str(exc)})
                outcome = loop.outcome(OutcomeKind.FAILED, f"platform error: {exc}")
            except store.LeaseLostError as exc:
                outcome = loop.outcome(OutcomeKind.FAILED, str(exc))
            if outcome.kind is OutcomeKind.HALTED:
                await cancel_unstarted(ctx)
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

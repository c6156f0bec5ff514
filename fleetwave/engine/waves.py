"""The wave driver: the loop that moves a planned campaign through its waves.

Per pass over the current wave: its next step by status (``decide.wave_step``), the
approval gate, windows, submission (retries first), a monitoring round, then the failure
thresholds and the wave gate (``decide``) and what follows them. A running wave's rounds
are one stage (``run_wave``): stages grow with chunks and status changes, not with rounds.
The rules are pure functions in :mod:`fleetwave.engine.decide`; this module carries them out.
"""

from __future__ import annotations

import itertools
import logging
from datetime import timedelta
from typing import Any

import pendulum

from fleetwave import store
from fleetwave.engine.approval import (
    REJECTED_HINT,
    AppointmentError,
    check_appointment,
    record_decision,
)
from fleetwave.engine.consent import (
    appointment_policy,
    collect_app_reports,
    consent_round,
    hand_to_app,
    miss_retry_appointments,
)
from fleetwave.engine.context import ApprovalRequest, RunContext, carried, to_pendulum
from fleetwave.engine.counts import campaign_counts, threshold_counts
from fleetwave.engine.decide import (
    Counts,
    Decision,
    Verdict,
    after_gate,
    approval_validity,
    breach_action,
    chunk_capacity,
    count_declines_as_failures,
    evaluate_decline_limit,
    evaluate_failure_threshold,
    evaluate_wave_gate,
    screen_targets,
    wave_step,
)
from fleetwave.engine.live_tasks import check_live_tasks
from fleetwave.engine.loop import Loop
from fleetwave.engine.monitor import monitor_round
from fleetwave.engine.outcome import Outcome, OutcomeKind, Stop
from fleetwave.engine.planning import plan_campaign
from fleetwave.engine.progress import plural
from fleetwave.engine.retries import Retries, scan_retries
from fleetwave.engine.rollback import roll_back
from fleetwave.engine.screening import TargetScreen
from fleetwave.engine.submit import create_intents, reconcile_intents, submit_intent, task_policy
from fleetwave.platforms.base import TaskPolicy
from fleetwave.spec.model import BreachAction, ConsentDelivery, ExecuteMode, ThresholdScope
from fleetwave.store import (
    ApprovalDecision,
    CampaignStatus,
    ChunkKind,
    DeviceRunStatus,
    Wave,
    WaveStatus,
)

__all__ = ["WaveDriver"]

log = logging.getLogger(__name__)

D = DeviceRunStatus


def _owner_retries(n: int) -> str:
    return f"{n} owner {'retry' if n == 1 else 'retries'}"


def _retries_left(ctx: RunContext) -> int:
    """Owners' retries of the completed campaign not sent yet."""
    with ctx.tx() as s:
        return store.count_owner_retries(s, campaign_id=ctx.campaign_id, superseded=True)


class RollBack(Exception):
    """Switches the loop to the rollback phase."""


class WaveDriver(Loop):
    """The stage loop of one run (see the module docstring)."""

    def __init__(
        self,
        ctx: RunContext,
        *,
        ttl: timedelta,
        sleep_through_windows: bool,
        max_rounds: int | None,
        after_completion: bool = False,
    ) -> None:
        super().__init__(
            ctx, ttl=ttl, sleep_through_windows=sleep_through_windows, max_rounds=max_rounds
        )
        self.schedule = ctx.spec.schedule()
        self._last_threshold: tuple[str, int] | None = None
        self._span: tuple[pendulum.DateTime, pendulum.DateTime] | None = None
        self.screen = TargetScreen(ctx)
        consent = ctx.spec.consent
        self.app_delivery = consent is not None and consent.delivery is ConsentDelivery.APP
        self.after_completion = after_completion
        """Sending owners' retries of a completed campaign (:meth:`retries_after_completion`)."""

    # ------------------------------------------------------------------ main loop

    async def run(self) -> Outcome:
        """Plan (once), reconcile, check the platform's live tasks, then pass over the
        current wave until the campaign completes, rolls back or the run must end."""
        ctx = self.ctx
        with ctx.tx() as s:
            planned = bool(store.get_waves(s, campaign_id=ctx.campaign_id))
        if not planned:
            await ctx.stage("resolve and plan", lambda: plan_campaign(ctx))
        await ctx.stage("reconcile", lambda: reconcile_intents(ctx))
        status = self.check_halt()
        if status is CampaignStatus.ROLLING_BACK:
            return await roll_back(self)
        # a store that never sent a task here asks the platform first (raises on overlap)
        await ctx.stage("check live platform tasks", lambda: check_live_tasks(ctx))
        if self.after_completion and status is CampaignStatus.COMPLETED:
            return await carried(
                ctx.stage,
                "owners' retries after the waves",
                self.retries_after_completion,
                carry=(Stop,),
            )
        if status is not CampaignStatus.RUNNING:
            self.set_status(CampaignStatus.RUNNING, "advancing")
        while True:
            self.renew()
            status = self.check_halt()
            if status is CampaignStatus.ROLLING_BACK:
                return await roll_back(self)
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
            except RollBack:
                return await roll_back(self)

    async def retries_after_completion(self) -> Outcome:
        """Every wave finished, yet owners asked for retries of failed devices while the
        plan is open: send those (inside the windows and the in-flight caps, each once, as
        the waves' own rounds do), follow them to their results, and end completed again.

        The campaign stays COMPLETED; the failure threshold, as the spec says now, is
        checked before a wave's retries go out, and a trip holds them back (the run ends
        halted, the next run checks again). The retried devices are claimed while they
        run, and a device another campaign holds or later took in is left alone. A closed
        window ends the run waiting for the next one (or sleeps with
        ``sleep_through_windows``)."""
        ctx = self.ctx
        cid = ctx.campaign_id
        limit = ctx.chunk_size * self.spec.policy.max_inflight_tasks
        with ctx.tx() as s:
            missed = miss_retry_appointments(ctx, s, None, ctx.now())
            asked = store.count_owner_retries(s, campaign_id=cid, superseded=True)
        ctx.event("owner_retries_after_completion", data={"devices": asked})
        log.info("%s: %s after the waves finished", self.spec.name, _owner_retries(asked))
        sending = (D.QUEUED, D.SUBMITTED, D.IN_PROGRESS)
        try:
            while True:
                self.renew()
                self.tick()
                now = ctx.now()
                if self.app_delivery:
                    collect_app_reports(ctx, now)
                open_now, next_open = self.window_state(now)
                with ctx.tx() as s:
                    missed += miss_retry_appointments(ctx, s, None, now)
                    store.claim_owner_retries(s, campaign_id=cid, now=now)
                    waves = sorted(
                        {
                            r.wave_index
                            for r in store.owner_retries(
                                s, campaign_id=cid, limit=limit, superseded=True
                            )
                        }
                    )
                submitted = 0
                for idx in waves if open_now else []:
                    tripped = self.retry_threshold(idx)
                    if tripped is not None:  # the thresholds as they stand now hold them back
                        ctx.decision(tripped, subject=f"wave {idx}")
                        reason = f"{_owner_retries(_retries_left(ctx))} held back: {tripped.reason}"
                        ctx.event("owner_retries_held", data=tripped.as_event())
                        return self.outcome(OutcomeKind.HALTED, reason, wave=idx)
                    submitted += await self.submit(idx, Retries(), now)
                with ctx.tx() as s:
                    active = len(store.list_active_chunks(s, campaign_id=cid))
                if active:
                    await ctx.step(f"monitor round {ctx.rounds}", lambda: monitor_round(ctx))
                self.progress()
                with ctx.tx() as s:
                    left = store.count_owner_retries(s, campaign_id=cid, superseded=True)
                    counts = store.device_status_counts(s, campaign_id=cid)
                    active = len(store.list_active_chunks(s, campaign_id=cid))
                in_flight = active + sum(counts.get(st, 0) for st in sending)
                if not left and not in_flight:
                    reason = f"every wave finished; {_owner_retries(asked)} sent after"
                    if missed:
                        reason += f" ({_owner_retries(missed)} not sent: appointment ended)"
                    return self.outcome(OutcomeKind.COMPLETED, reason)
                if left and not in_flight and not open_now:
                    if next_open is None:
                        reason = "no allowed window ahead for the owners' retries"
                        return self.outcome(OutcomeKind.WAITING_WINDOW, reason)
                    if not self.sleep_through:
                        reason = (
                            f"{_owner_retries(left)} wait for the window opening "
                            f"{next_open.to_iso8601_string()}"
                        )
                        return self.outcome(OutcomeKind.WAITING_WINDOW, reason, next_open=next_open)
                    await self.sleep((next_open - now).total_seconds())
                    continue
                if left and not in_flight and not submitted:
                    # e.g. the target lists exclude them now, or the platform refused the
                    # policy: nothing to follow, so the run ends; the next one tries again
                    reason = (
                        f"{_owner_retries(left)} could not be sent now; the next run tries again"
                    )
                    return self.outcome(OutcomeKind.COMPLETED, reason)
                await self.sleep(self.poll)
        finally:
            with ctx.tx() as s:
                if not store.list_active_chunks(s, campaign_id=cid):
                    store.release_claims(s, campaign_id=cid)  # nothing of it in flight

    def retry_threshold(self, idx: int) -> Decision | None:
        """The failure threshold (as the spec says now, in its scope, declines counted as
        the spec says, after an operator's override) before owners' retries of wave
        ``idx`` go out after the campaign completed; the decision when it trips."""
        ctx = self.ctx
        th = self.spec.thresholds
        wave_scope = th.scope is ThresholdScope.WAVE
        _, override = self.overridden()
        with ctx.tx() as s:
            recorded, in_flight = threshold_counts(
                s,
                spec=self.spec,
                campaign_id=ctx.campaign_id,
                wave_index=idx if wave_scope else None,
            )
            declined, _ = store.decline_figures(
                s, campaign_id=ctx.campaign_id, wave_index=idx if wave_scope else None
            )
        counts = self._scope_counts(recorded, in_flight, declined, override, wave_scope)
        decision = self._failure_threshold(counts, recorded, in_flight, idx)
        return decision if decision.verdict in (Verdict.HALT, Verdict.ROLLBACK) else None

    def _scope_counts(
        self,
        recorded: Counts,
        in_flight: Counts,
        declined: int | None,
        override: Any,
        wave_scope: bool,
    ) -> Counts:
        """The counts the failure threshold judges: recorded and in flight, declines as
        failures when ``consent.declines_count``, minus an operator override's baseline
        (campaign scope)."""
        counts = recorded + in_flight
        consent = self.spec.consent
        if consent is not None and declined is not None and consent.declines_count:
            counts = count_declines_as_failures(counts, declined)
        if override is not None and not wave_scope:
            counts = counts.minus(Counts.from_dict(override.data.get("baseline", {})))
        return counts

    def _failure_threshold(
        self, counts: Counts, recorded: Counts, in_flight: Counts, idx: int
    ) -> Decision:
        """The spec's failure threshold on ``counts`` in its scope (wave ``idx`` or the
        campaign)."""
        th = self.spec.thresholds
        wave_scope = th.scope is ThresholdScope.WAVE
        return evaluate_failure_threshold(
            counts,
            max_failure_rate=(
                th.max_failure_percent / 100 if th.max_failure_percent is not None else None
            ),
            max_failures=th.max_failures,
            min_finished=th.min_finished,
            on_trip=Verdict.ROLLBACK if th.on_breach is BreachAction.ROLLBACK else Verdict.HALT,
            scope=f"wave {idx + 1}" if wave_scope else "campaign",
            parts={"recorded": recorded.as_dict(), "in_flight": in_flight.as_dict()},
        )

    async def step(self, wave: Wave) -> None:
        """One pass over the current wave: its next step by status (``decide.wave_step``)."""
        idx = wave.index
        pending = wave.status is WaveStatus.PENDING
        soaking = wave.status is WaveStatus.SOAKING
        until = to_pendulum(wave.soak_until) if soaking else None
        step = wave_step(
            idx,
            wave.status,
            planned_size=wave.planned_size,
            approval_required=pending and bool(self.spec.waves[idx].approval),
            soak_until=until,
            now=self.ctx.now() if soaking else None,  # only a soak reads the clock
        )
        log.debug("%s: %s -> %s (%s)", self.spec.name, step.name, step.verdict, step.reason)
        verdict = step.verdict
        if verdict is Verdict.SKIP:
            self.set_wave(idx, WaveStatus.SKIPPED, step.reason)
        elif verdict is Verdict.PAUSE:
            self.set_wave(idx, WaveStatus.WAITING_APPROVAL, step.reason)
        elif verdict is Verdict.RUN:
            self.set_wave(idx, WaveStatus.RUNNING, step.reason)
        elif verdict is Verdict.APPROVAL:
            await self.approval_gate(wave)
        elif verdict is Verdict.HALT:
            self.set_status(CampaignStatus.HALTED, step.reason)
            raise Stop(self.outcome(OutcomeKind.HALTED, step.reason))
        elif verdict is Verdict.PROCEED:
            self.set_wave(idx, WaveStatus.SUCCEEDED, step.reason)
        elif verdict is Verdict.WAIT:
            assert until is not None  # a soak without an end is over at once
            await self.wait_until(until, step.reason)
        else:
            await self.run_wave(idx)

    async def run_wave(self, idx: int) -> None:
        """The running wave's rounds (submission, monitoring, thresholds, the gate, sleeps)
        as one stage, i.e. one Prefect task run per wave and run however many rounds it
        polls; its submissions are stages inside it, its monitoring rounds steps. It ends
        when the wave leaves RUNNING or the campaign leaves running (rolling back); a
        ``Stop`` or rollback inside it is raised again outside the stage."""

        async def _rounds() -> None:
            wave: Wave | None = next(w for w in self.waves() if w.index == idx)
            while wave is not None and wave.status is WaveStatus.RUNNING:
                await self.running_step(wave)
                self.renew()
                if self.check_halt() is not CampaignStatus.RUNNING:
                    return  # rolling back: the run's loop takes over
                wave = next((w for w in self.waves() if w.index == idx), None)

        await carried(
            self.ctx.stage, f"wave {idx + 1}: submit and monitor", _rounds, carry=(Stop, RollBack)
        )

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
        raise Stop(self.outcome(kind, reason, next_open=when))

    # ------------------------------------------------------------------ approval

    async def approval_gate(self, wave: Wave) -> None:
        ctx = self.ctx
        idx = wave.index
        # An approval counts unless a threshold of this wave tripped after it was given
        # (decide.approval_validity: event order, not timestamps).
        breach = self.last_event(["threshold_breach"], lambda subj: subj == f"wave {idx}")

        def valid(w: Wave) -> bool:
            decided = w.approval_decision is not None
            given = None
            if decided and breach is not None:  # the approval event matters only then
                given = self.last_event(
                    ["wave_approval"], lambda subj: subj.startswith(f"wave {idx} ")
                )
            return (
                approval_validity(
                    idx,
                    decided=decided,
                    breach_event=breach.id if breach is not None else None,
                    approval_event=given.id if given is not None else None,
                ).verdict
                is Verdict.PROCEED
            )

        if not valid(wave) and ctx.approver is not None:
            ctx.emit("stage", stage="approval", message=f"waiting for approval of wave {idx + 1}")
            self.set_status(CampaignStatus.PAUSED, f"awaiting approval of wave {idx + 1}")
            problem, attempt = "", 0
            while True:  # an answer the gate refuses is asked again, with the reason
                async with self.lease_kept():  # the pause may outlast the lease
                    reply = await ctx.approver(
                        ApprovalRequest(
                            campaign=self.spec.name,
                            wave=idx,
                            wave_name=wave.name,
                            devices=wave.planned_size,
                            reason="threshold breached" if breach else "wave requires approval",
                            token=f"breach-{breach.id}" if breach else "gate",
                            summary=self.outcome(OutcomeKind.AWAITING_APPROVAL).counts,
                            problem=problem,
                            attempt=attempt,
                        )
                    )
                fresh = next(w for w in self.waves() if w.index == idx)
                if reply is None or valid(fresh):  # no answer, or `approve` recorded it
                    break
                try:  # a rejection books nothing
                    appointment = (
                        check_appointment(self.schedule, reply.start, reply.end, now=ctx.now())
                        if reply.approve
                        else None
                    )
                except AppointmentError as exc:
                    ctx.event(
                        "approval_invalid",
                        subject=f"wave {idx}",
                        data={"error": str(exc), "by": reply.by},
                    )
                    problem, attempt = str(exc), attempt + 1
                    continue
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
                break
            self.check_halt()
            wave = next(w for w in self.waves() if w.index == idx)
        if not valid(wave):
            reason = f"wave {idx + 1} ({wave.name}) awaits approval"
            self.set_status(CampaignStatus.PAUSED, reason)
            raise Stop(self.outcome(OutcomeKind.AWAITING_APPROVAL, reason, wave=idx))
        if wave.approval_decision is ApprovalDecision.REJECTED:
            reason = f"wave {idx + 1} rejected by {wave.approval_by}" + (
                f": {wave.approval_comment}" if wave.approval_comment else ""
            )
            self.set_wave(idx, WaveStatus.REJECTED, reason)
            self.set_status(CampaignStatus.HALTED, reason)
            raise Stop(self.outcome(OutcomeKind.HALTED, f"{reason}; {REJECTED_HINT}", wave=idx))
        if breach is not None:
            self.record_override(f"approved by {wave.approval_by}")
        booked = to_pendulum(wave.appointment_at)
        if booked is not None and ctx.now() < booked:
            if self.status() is not CampaignStatus.RUNNING:
                self.set_status(CampaignStatus.RUNNING, "approved")
            await self.wait_until(booked, f"wave {idx + 1} booked for {booked.to_iso8601_string()}")
            return
        if self.status() is not CampaignStatus.RUNNING:
            self.set_status(CampaignStatus.RUNNING, f"wave {idx + 1} approved")
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

    async def submit(self, wave_index: int, retries: Retries, now: pendulum.DateTime) -> int:
        """Submit retries (due) then pending devices of the wave, within the in-flight caps."""
        ctx = self.ctx
        open_now, _ = self.window_state(now)
        policy = task_policy(ctx, now, self._span if open_now else None)
        if policy is None:
            return 0
        pol = self.spec.policy
        targeting = self.screen.refresh_targeting()
        consent = self.spec.consent is not None
        limit = ctx.chunk_size * pol.max_inflight_tasks
        # A pending device's round is its attempt + 1: one whose retry intent was
        # abandoned comes back pending with its earlier attempts counted.
        pending: dict[int, list[str]] = {}
        # appointments opening within a poll interval go before everything else (they must
        # not wait behind the in-flight cap until they are over); later ones are booked
        # ahead only with the capacity left after the devices that go now
        appointed_due: list[tuple[int, list[list[str]], TaskPolicy]] = []
        appointed: list[tuple[int, list[list[str]], TaskPolicy]] = []
        if consent:
            # the store sorts by consent: at most `limit` consented devices and `limit`
            # appointed ones are read, unanswered ones never (memory flat in the wave)
            answers = consent_round(
                ctx, wave_index, now, limit=limit, superseded=self.after_completion
            )
            answers.send = self.screen.drop_pending(wave_index, answers.send, targeting)
            answers.appointed = {
                key: kept
                for key, by_attempt in answers.appointed.items()
                if (kept := self.screen.drop_pending(wave_index, by_attempt, targeting))
            }
            if self.app_delivery:  # the apps install: no platform task, no engine resubmits
                return hand_to_app(ctx, answers, now)
            retrying = {d for ids in retries.due.values() for d in ids}
            pending = {a: [d for d in ids if d not in retrying] for a, ids in answers.send.items()}
            for appointment, by_attempt in sorted(answers.appointed.items()):
                booked = appointment_policy(ctx, appointment, now)
                if booked is None:
                    continue
                due_soon = appointment[0] <= now + pol.poll_interval
                for attempt, ids in sorted(by_attempt.items(), reverse=True):
                    ids = sorted(d for d in ids if d not in retrying)
                    batches = [
                        ids[i : i + ctx.chunk_size] for i in range(0, len(ids), ctx.chunk_size)
                    ]
                    if batches:
                        (appointed_due if due_soon else appointed).append(
                            (attempt + 1, batches, booked)
                        )
        else:
            with ctx.tx() as s:
                for run in itertools.islice(
                    store.iter_device_runs(
                        s,
                        campaign_id=ctx.campaign_id,
                        wave_index=wave_index,
                        statuses=[D.PENDING],
                    ),
                    limit,
                ):
                    pending.setdefault(run.attempt, []).append(run.device_id)
            pending = self.screen.drop_pending(wave_index, pending, targeting)
        with ctx.tx() as s:
            active = store.list_active_chunks(s, campaign_id=ctx.campaign_id)
        not_retried = {r: list(ids) for r, ids in retries.dropped.items()}
        for attempt, ids in list(retries.due.items()):
            keep, dropped = screen_targets(
                ids, excluded=targeting.excluded, targeted=targeting.targeted
            )
            retries.due[attempt] = keep
            for reason, gone in dropped.items():
                not_retried.setdefault(reason, []).extend(gone)
        self.screen.report_not_retried(wave_index, not_retried)
        due: dict[int, list[str]] = {}
        for attempt, ids in [*retries.due.items(), *pending.items()]:
            if ids:
                due.setdefault(attempt, []).extend(ids)
        groups: list[tuple[int, list[list[str]], TaskPolicy]] = []
        for attempt in sorted(due, reverse=True):  # retries first
            ids = sorted(due[attempt])
            groups.append(
                (
                    attempt + 1,
                    [ids[i : i + ctx.chunk_size] for i in range(0, len(ids), ctx.chunk_size)],
                    policy,
                )
            )
        # one group per appointment: tasks whose window is it
        groups = [*appointed_due, *groups, *appointed]
        sizes = [len(b) for _, batches, _ in groups for b in batches]
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
        for round_no, batches, group_policy in groups:
            take = batches[: allowed - submitted]
            if not take:
                break

            async def _go(
                take: list[list[str]] = take,
                round_no: int = round_no,
                group_policy: TaskPolicy = group_policy,
            ) -> int:
                chunks = create_intents(
                    ctx,
                    kind=ChunkKind.UPGRADE,
                    wave_index=wave_index,
                    round=round_no,
                    batches=take,
                    file_id=ctx.package.file_id,
                    policy=group_policy,
                )
                for chunk in chunks:
                    await submit_intent(ctx, chunk)
                return len(chunks)

            n = await ctx.stage(
                f"submit wave {wave_index + 1} attempt {round_no} ({plural(len(take), 'task')})",
                _go,
            )
            submitted += n
            ctx.emit(
                "submitted",
                message=f"wave {wave_index + 1} attempt {round_no}: {plural(n, 'task')}",
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
        if self.app_delivery:
            collect_app_reports(ctx, now)
        retries = scan_retries(ctx, idx, now, self.screen.targeting)
        open_now, next_open = self.window_state(now)
        submitted = 0
        if open_now:
            submitted = await self.submit(idx, retries, now)
            if submitted:
                if ctx.push is not None:
                    ctx.push.expect(ctx.campaign_id, ctx.now())
                retries = scan_retries(ctx, idx, ctx.now(), self.screen.targeting)
        with ctx.tx() as s:
            active = len(store.list_active_chunks(s, campaign_id=ctx.campaign_id))
        if active:
            await ctx.step(f"monitor round {ctx.rounds}", lambda: monitor_round(ctx))
            retries = scan_retries(ctx, idx, ctx.now(), self.screen.targeting)
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
                raise Stop(self.outcome(OutcomeKind.WAITING_WINDOW, "no allowed window ahead"))
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

    def decide(self, idx: int, retries: Retries) -> bool:
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
            declines = (
                store.decline_figures(
                    s, campaign_id=ctx.campaign_id, wave_index=idx if wave_scope else None
                )
                if self.spec.consent is not None
                else None
            )
        scope_counts = self._scope_counts(
            recorded, in_flight, declines[0] if declines else None, override, wave_scope
        )
        consent = self.spec.consent
        on_trip = Verdict.ROLLBACK if th.on_breach is BreachAction.ROLLBACK else Verdict.HALT
        if consent is not None and declines is not None and not overridden:
            limit = evaluate_decline_limit(
                declined=declines[0],
                answered=declines[1],
                max_declined_rate=(
                    consent.max_declined_percent / 100
                    if consent.max_declined_percent is not None
                    else None
                ),
                min_answered=th.min_finished,
                on_trip=on_trip,
                scope=f"wave {idx + 1}" if wave_scope else "campaign",
            )
            if limit.verdict in (Verdict.HALT, Verdict.ROLLBACK):
                ctx.decision(limit, subject=f"wave {idx}")
                self.breach(idx, limit)
        decision = self._failure_threshold(scope_counts, recorded, in_flight, idx)
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
        if wave_counts.total and wave_counts.total == wave_counts.skipped:
            log.warning("%s: %s", self.spec.name, gate.reason)
        soak = self.spec.waves[idx].soak.total_seconds()
        follow = after_gate(idx, next_wave=nxt, soak_seconds=soak)
        log.info("%s: %s -> %s (%s)", self.spec.name, follow.name, follow.verdict, follow.reason)
        if follow.verdict is Verdict.SOAK:
            until = ctx.now().add(seconds=soak)
            self.set_wave(
                idx, WaveStatus.SOAKING, gate.reason, soak_until=until, data=gate.as_event()
            )
        else:  # the next wave starts, or the campaign completes: no wave is left
            self.set_wave(idx, WaveStatus.SUCCEEDED, gate.reason, data=gate.as_event())
        return True

    def breach(self, idx: int, decision: Decision) -> None:
        """A threshold or gate tripped: halt, pause for approval, or roll back (raises Stop
        or RollBack); ``decide.breach_action`` says which."""
        ctx = self.ctx
        action = self.spec.thresholds.on_breach
        ctx.event(
            "threshold_breach",
            subject=f"wave {idx}",
            data={"action": action.value, **decision.as_event()},
        )
        what = breach_action(
            idx,
            decision,
            on_breach=action,
            has_rollback_package=ctx.rollback_package is not None,
        )
        log.info("%s: %s -> %s (%s)", self.spec.name, what.name, what.verdict, what.reason)
        if what.verdict is Verdict.ROLLBACK:
            self.set_wave(idx, WaveStatus.FAILED, decision.reason, data=decision.as_event())
            self.set_status(CampaignStatus.ROLLING_BACK, decision.reason, data=decision.as_event())
            raise RollBack()
        self.set_wave(idx, WaveStatus.HALTED, decision.reason, data=decision.as_event())
        if what.verdict is Verdict.PAUSE:
            self.set_wave(idx, WaveStatus.WAITING_APPROVAL, "threshold breached")
            self.set_status(CampaignStatus.PAUSED, f"threshold breached: {decision.reason}")
            raise Stop(self.outcome(OutcomeKind.AWAITING_APPROVAL, decision.reason, wave=idx))
        self.set_status(CampaignStatus.HALTED, decision.reason, data=decision.as_event())
        raise Stop(self.outcome(OutcomeKind.HALTED, decision.reason, wave=idx))

"""What every phase of a run shares: the campaign's state in the store, the lease, the clock.

:class:`Loop` is the base of the wave driver (:mod:`fleetwave.engine.waves`) and what the
rollback phase (:mod:`fleetwave.engine.rollback`) runs on: outcomes, status and wave
transitions, lease renewal, sleeps on the campaign clock, the round count, event look-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pendulum

from fleetwave import store
from fleetwave.engine.context import RunContext
from fleetwave.engine.counts import campaign_counts
from fleetwave.engine.outcome import Outcome, OutcomeKind, Stop
from fleetwave.store import CampaignStatus, Wave, WaveStatus

__all__ = ["Loop", "last_event"]

log = logging.getLogger(__name__)


def last_event(
    ctx: RunContext, kinds: list[str], subject: Callable[[str], bool] | None = None
) -> Any:
    """The campaign's newest event of these kinds (whose subject passes ``subject``), or None."""
    with ctx.tx() as s:
        found = store.recent_events(
            s,
            campaign_id=ctx.campaign_id,
            limit=1 if subject is None else 500,
            kinds=kinds,
        )
    for event in found:
        if subject is None or subject(event.subject or ""):
            return event
    return None


class Loop:
    """The stage loop of one run: the helpers every phase uses."""

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
        self.poll = ctx.spec.policy.poll_interval.total_seconds()

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

    @contextlib.asynccontextmanager
    async def lease_kept(self) -> AsyncIterator[None]:
        """Renew the lease every quarter lease of real time while the body waits on
        something other than the campaign clock (an operator's answer to a paused flow run),
        so no run elsewhere takes the campaign meanwhile. A renewal that fails is logged
        and ends the renewals; the run's next :meth:`renew` raises it."""

        async def _renew() -> None:
            while True:
                await asyncio.sleep(self.ttl.total_seconds() / 4)  # real time, not the clock
                try:
                    self.renew()
                except Exception as exc:
                    log.warning("%s: could not renew the lease: %s", self.spec.name, exc)
                    return

        task = asyncio.create_task(_renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def check_halt(self) -> CampaignStatus:
        """The campaign's status now; an operator's halt ends the run."""
        status = self.status()
        if status is CampaignStatus.HALTED:
            raise Stop(self.outcome(OutcomeKind.HALTED, "halted by an operator"))
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
            raise Stop(
                self.outcome(
                    OutcomeKind.STOPPED,
                    f"stopped after {self.max_rounds} rounds (--max-rounds); run again to continue",
                )
            )

    # ------------------------------------------------------------------ events

    def last_event(self, kinds: list[str], subject: Callable[[str], bool] | None = None) -> Any:
        """The newest event of these kinds (whose subject passes ``subject``), or None."""
        return last_event(self.ctx, kinds, subject)

    def overridden(self) -> tuple[bool, Any]:
        """(the last breach was overridden by an operator, the override event or None)."""
        breach = self.last_event(["threshold_breach"])
        override = self.last_event(["threshold_override"])
        if override is None:
            return False, None
        return breach is None or override.id > breach.id, override

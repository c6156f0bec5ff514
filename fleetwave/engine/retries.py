"""Failed devices of a wave that get another round: which are due now, which later, per kind."""

from __future__ import annotations

from dataclasses import dataclass, field

import pendulum

from fleetwave import store
from fleetwave.engine.context import RunContext, to_pendulum
from fleetwave.engine.decide import (
    Decision,
    RetryCandidate,
    backoff_seconds,
    screen_targets,
    select_resubmissions,
)
from fleetwave.engine.targeting import Targeting
from fleetwave.spec.model import FailureKind
from fleetwave.store import DeviceRunStatus

__all__ = ["Retries", "scan_retries"]

D = DeviceRunStatus


@dataclass
class Retries:
    """Failed devices of a wave that get another round: due now, later, and per kind."""

    due: dict[int, list[str]] = field(default_factory=dict)  # attempt -> devices
    by_kind: dict[str, int] = field(default_factory=dict)
    next_due: pendulum.DateTime | None = None
    decision: Decision | None = None
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> not retried

    @property
    def count(self) -> int:
        return sum(self.by_kind.values())


def scan_retries(
    ctx: RunContext, wave_index: int, now: pendulum.DateTime, targeting: Targeting | None
) -> Retries:
    """The wave's failed devices that get another round (``policy.resubmit``) at ``now``.

    ``targeting``: the target lists as last read (None before the first submission); a
    device they exclude or no longer list is never sent again: its failure is final.
    """
    rules = ctx.spec.policy.resubmit
    out = Retries()
    if not rules:
        return out
    limits = {k.value: 1 + r.rounds for k, r in rules.items()}
    finished_at: dict[str, pendulum.DateTime | None] = {}
    cands: list[RetryCandidate] = []
    with ctx.tx() as s:
        for run in store.iter_device_runs(
            s,
            campaign_id=ctx.campaign_id,
            wave_index=wave_index,
            statuses=[D.FAILED, D.TIMED_OUT],
        ):
            kind = run.failure_kind or FailureKind.FAIL.value
            cands.append(RetryCandidate(run.device_id, run.attempt, kind))
            finished_at[run.device_id] = to_pendulum(run.finished_at)
    if targeting is not None:
        # an excluded (or removed) device is never sent again: its failure is final
        _, out.dropped = screen_targets(
            (c.device_id for c in cands),
            excluded=targeting.excluded,
            targeted=targeting.targeted,
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

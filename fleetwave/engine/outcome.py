"""How a run of :func:`fleetwave.engine.runner.advance` ends: :class:`Outcome` and its kinds.

Also the outcome of a campaign with nothing to advance (terminal or halted), and
:class:`Stop`, the exception that ends a run's loop with an outcome.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import pendulum

from fleetwave.engine.approval import REJECTED_HINT
from fleetwave.store import CampaignStatus

__all__ = ["Outcome", "OutcomeKind", "Stop", "early_outcome"]


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
            text += f" of wave {self.wave + 1}"
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


class Stop(Exception):
    """Ends the loop with an outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome


def early_outcome(
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
            f"{reason or f'wave {rejected_wave + 1} was rejected'}; {REJECTED_HINT}",
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

"""The thresholds' device counts of a campaign or a wave, from the store's aggregates.

The SQL is the store's (a few GROUP BYs); the arithmetic is
:func:`fleetwave.engine.decide.count_outcomes` and ``in_flight_counts``.
"""

from __future__ import annotations

from typing import Any

from fleetwave import store
from fleetwave.engine.consent import EXPIRED_KIND
from fleetwave.engine.decide import Counts, count_outcomes, in_flight_counts
from fleetwave.spec.model import CampaignSpec, ConsentTimeoutAction

__all__ = ["campaign_counts", "counted_failure_kinds", "threshold_counts"]


def counted_failure_kinds(spec: CampaignSpec) -> list[str]:
    """The failure kinds the thresholds count: ``thresholds.failure_kinds``, plus the
    unanswered consent devices when ``consent.on_timeout`` is ``fail``."""
    kinds = [k.value for k in spec.thresholds.failure_kinds]
    if spec.consent is not None and spec.consent.timeout_action is ConsentTimeoutAction.FAIL:
        kinds.append(EXPIRED_KIND)
    return kinds


def campaign_counts(
    session: Any,
    *,
    spec: CampaignSpec,
    campaign_id: int,
    wave_index: int | None = None,
    retrying: dict[str, int] | None = None,
) -> Counts:
    """Threshold counts of the campaign (or one wave) from two SQL aggregates."""
    return count_outcomes(
        store.device_status_counts(session, campaign_id=campaign_id, wave_index=wave_index),
        store.failure_kind_counts(session, campaign_id=campaign_id, wave_index=wave_index),
        counted_kinds=counted_failure_kinds(spec),
        retrying=retrying,
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
        counted_kinds=counted_failure_kinds(spec),
        max_attempts={k.value: 1 + r.rounds for k, r in rules.items()},
    )
    return recorded, in_flight

"""Applying pushed events to device runs: one transaction per batch, monotonic by construction.

An event counts only for a device that sits in the active (SUBMITTED) chunk of the event's
operationId; anything else is logged and ignored. The store's ``record_device_results``
applies a status only from the statuses ``allowed_sources`` lists, so a duplicate or a
state change that arrives after the result never moves a device backwards.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pendulum
from sqlmodel import Session

from fleetwave import store
from fleetwave.engine.decide import classify_failure
from fleetwave.platforms.base import (
    DeviceOutcome,
    UpgradeEvent,
    UpgradeEventKind,
    UpgradeStep,
)
from fleetwave.store import ChunkKind, ChunkRef, ChunkStatus, DeviceResult, DeviceRunStatus

__all__ = ["ApplyOutcome", "apply_events", "to_device_result"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ApplyOutcome:
    """What one batch did: rows changed, events ignored and why, campaigns heard from."""

    events: int = 0
    changed: int = 0
    unknown_operation: list[UpgradeEvent] = field(default_factory=list)
    inactive_chunk: int = 0
    not_in_chunk: int = 0
    unmatched: int = 0
    campaigns: dict[int, pendulum.DateTime] = field(default_factory=dict)
    """Per campaign, the latest ``received_at`` of an event that belonged to it."""

    @property
    def ignored(self) -> int:
        return (
            len(self.unknown_operation) + self.inactive_chunk + self.not_in_chunk + self.unmatched
        )


def to_device_result(event: UpgradeEvent, chunk_kind: ChunkKind) -> DeviceResult | None:
    """The device-run change an event asks for (None: it changes nothing, e.g. ``idle``)."""
    rollback = chunk_kind is ChunkKind.ROLLBACK
    if event.kind is UpgradeEventKind.STEP or event.outcome is None or not event.outcome.is_final:
        if rollback or event.step is UpgradeStep.IDLE:
            return None  # a rollback has no in-progress status; idle says nothing new
        return DeviceResult(event.device_id, DeviceRunStatus.IN_PROGRESS)
    if event.outcome is DeviceOutcome.SUCCEEDED:
        target = DeviceRunStatus.ROLLED_BACK if rollback else DeviceRunStatus.SUCCEEDED
        return DeviceResult(event.device_id, target, current_version=event.current_version)
    kind = classify_failure(event.outcome)
    if rollback:
        target = DeviceRunStatus.ROLLBACK_FAILED
    elif event.outcome is DeviceOutcome.TIMED_OUT:
        target = DeviceRunStatus.TIMED_OUT
    else:
        target = DeviceRunStatus.FAILED
    return DeviceResult(
        event.device_id,
        target,
        failure_kind=kind.value if kind is not None else "fail",
        failure_detail=event.detail,
        current_version=event.current_version,
    )


def apply_events(
    session: Session,
    events: Sequence[UpgradeEvent],
    *,
    now: datetime,
    connection_keys: Collection[str] | None = None,
) -> ApplyOutcome:
    """Apply a batch of events in the caller's transaction; see the module docstring.

    ``connection_keys``: the platform connections the events can come from (those the
    receiver subscribed); an operationId is looked up only among their chunks, as ids are
    unique per connection only. None looks in every connection.

    Events whose operationId no chunk carries yet come back in ``unknown_operation`` (the
    task may have been created a moment before its operationId was recorded), so the
    caller can retry them briefly before giving up.
    """
    out = ApplyOutcome(events=len(events))
    if not events:
        return out
    ops = sorted({e.operation_id for e in events if e.operation_id})
    by_op = store.chunk_refs_by_operation_id(
        session, operation_ids=ops, connection_keys=connection_keys
    )
    anonymous = sorted({e.device_id for e in events if not e.operation_id})
    by_device = (
        store.active_chunk_refs_by_device(session, device_ids=anonymous) if anonymous else {}
    )

    placed: list[tuple[UpgradeEvent, ChunkRef]] = []
    for e in events:
        if e.operation_id:
            ref = by_op.get(e.operation_id)
            if ref is None:
                out.unknown_operation.append(e)
                continue
        else:
            refs = [r for r in by_device.get(e.device_id, ()) if r.package_kind == e.package_kind]
            if len(refs) != 1:
                out.unmatched += 1
                log.info(
                    "%s for device %s has no operationId and matches %d active tasks; ignored",
                    e.source,
                    e.device_id,
                    len(refs),
                )
                continue
            ref = refs[0]
        if ref.status is not ChunkStatus.SUBMITTED:
            out.inactive_chunk += 1
            log.debug("%s: task %s is %s; ignored", e.source, e.operation_id, ref.status)
            continue
        if ref.package_kind != e.package_kind:
            out.unmatched += 1
            log.info(
                "%s for task %s of a %s chunk; ignored",
                e.source,
                e.operation_id,
                ref.package_kind,
            )
            continue
        placed.append((e, ref))

    members = store.chunk_members(
        session,
        chunk_ids={r.id for _, r in placed},
        device_ids=sorted({e.device_id for e, _ in placed}),
    )
    # One decisive change per device run: a result beats a progress step, the later one wins;
    # events that change nothing (idle, rollback progress) only count for liveness.
    decisive: dict[tuple[int, str], DeviceResult] = {}
    for e, ref in placed:
        if (ref.id, e.device_id) not in members:
            out.not_in_chunk += 1
            log.info(
                "%s: device %s is not (or no longer) in task %s; ignored",
                e.source,
                e.device_id,
                e.operation_id,
            )
            continue
        prev_at = out.campaigns.get(ref.campaign_id)
        if prev_at is None or e.received_at > prev_at:
            out.campaigns[ref.campaign_id] = e.received_at
        result = to_device_result(e, ref.kind)
        if result is None:
            continue
        key = (ref.campaign_id, e.device_id)
        prev = decisive.get(key)
        if prev is None or result.status.is_final or not prev.status.is_final:
            decisive[key] = result

    per_campaign: dict[int, list[DeviceResult]] = {}
    for (campaign_id, _), result in decisive.items():
        per_campaign.setdefault(campaign_id, []).append(result)
    for campaign_id, results in sorted(per_campaign.items()):
        out.changed += store.record_device_results(
            session, campaign_id=campaign_id, results=results, now=now
        )
    for e in out.unknown_operation:
        log.debug("%s for unknown task %s (device %s)", e.source, e.operation_id, e.device_id)
    return out

"""Build a :class:`CampaignReport` from the store: SQL aggregates for counts, streams for time.

Every query is a ``fleetwave.store`` data function. Per-wave counts are one GROUP BY over
device runs (``device_status_counts_by_wave``); the timeline streams finished devices
(``iter_finished_devices``) into bounded buckets, so a million-device campaign costs no
more memory than a thousand. A device that took the new version and was later rolled back appears in
its wave's rollout line at the time its upgrade task finished, and in the rollback line at
the time its rollback finished.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import pendulum
from sqlmodel import Session

from fleetwave.errors import UserError
from fleetwave.report.model import (
    CampaignReport,
    DeviceOutcome,
    EventLine,
    Totals,
    WaveReport,
    build_timeline,
    event_subject,
)
from fleetwave.store import api as store_api
from fleetwave.store.consent import consent_state_counts
from fleetwave.store.models import ChunkKind, DeviceRunStatus, Event

__all__ = ["load_report", "totals_from_counts"]

_D = DeviceRunStatus
BREACH_EVENT = "threshold_breach"  # the engine's event kind when a failure threshold trips
_TOOK_NEW = (_D.SUCCEEDED, _D.ROLLING_BACK, _D.ROLLED_BACK, _D.ROLLBACK_FAILED)
_ROLLBACK = (_D.ROLLING_BACK, _D.ROLLED_BACK, _D.ROLLBACK_FAILED)


def _pdt(value: datetime | None) -> pendulum.DateTime | None:
    # The store hands back aware UTC datetimes; pendulum.instance keeps the UTC zone.
    return pendulum.instance(value) if value is not None else None


def totals_from_counts(
    counts: Mapping[DeviceRunStatus, int],
) -> tuple[Totals, Totals | None]:
    """Rollout and (if any device is in a rollback status) rollback totals from status counts.

    A halt or rollback cancels only devices never sent a task, so CANCELLED means never
    sent and a failure keeps its FAILED / TIMED_OUT status.
    """

    def n(*statuses: DeviceRunStatus) -> int:
        return sum(counts.get(s, 0) for s in statuses)

    rollout = Totals(
        devices=sum(counts.values()),
        succeeded=n(*_TOOK_NEW),
        failed=n(_D.FAILED, _D.TIMED_OUT),
        in_progress=n(_D.QUEUED, _D.SUBMITTED, _D.IN_PROGRESS),
        pending=n(_D.PENDING),
        skipped=n(_D.SKIPPED),
        cancelled=n(_D.CANCELLED),
    )
    if not n(*_ROLLBACK):
        return rollout, None
    rollback = Totals(
        devices=n(*_ROLLBACK),
        succeeded=n(_D.ROLLED_BACK),
        failed=n(_D.ROLLBACK_FAILED),
        in_progress=n(_D.ROLLING_BACK),
    )
    return rollout, rollback


def _describe_package(spec: Mapping[str, Any], *keys: str) -> str | None:
    """One line for the spec snapshot's package entry (the first of ``keys`` present)."""
    value = next((spec[k] for k in keys if spec.get(k) is not None), None)
    if value is None:
        return None
    if isinstance(value, Mapping):
        parts = [
            f"{k}={v}"
            for k, v in value.items()
            if isinstance(v, str | int | float) and not isinstance(v, bool) and v != ""
        ]
        return ", ".join(parts) or None
    return str(value)


def _event_message(event: Event) -> str:
    parts = [event_subject(event.subject)] if event.subject else []
    for key, value in list((event.data or {}).items())[:8]:
        if isinstance(value, str | int | float | bool) or value is None:
            parts.append(f"{key}={value}")
    if event.actor:
        parts.append(f"by {event.actor}")
    return " ".join(parts)


def _outcomes(
    session: Session, campaign_id: int, wave_names: Mapping[int, str]
) -> Iterator[DeviceOutcome]:
    """Every finished device once or twice (rollout, rollback), streamed."""

    def name(index: int) -> str:
        return wave_names.get(index, f"wave {index}")

    for wave_index, status, finished_at in store_api.iter_finished_devices(
        session, campaign_id=campaign_id
    ):
        at = pendulum.instance(finished_at)
        if status in (_D.ROLLED_BACK, _D.ROLLBACK_FAILED):
            yield DeviceOutcome(f"{name(wave_index)} (rollback)", at, status is _D.ROLLED_BACK)
        else:
            yield DeviceOutcome(name(wave_index), at, status is _D.SUCCEEDED)

    # Devices now in a rollback status took the new version when their upgrade task finished.
    rolled_ids = set(
        store_api.iter_device_ids(
            session, campaign_id=campaign_id, statuses=_ROLLBACK, batch_size=5000
        )
    )
    if not rolled_ids:
        return
    # Newest task first: the latest task holding a device is the one it took.
    for task in store_api.iter_task_devices(
        session, campaign_id=campaign_id, kind=ChunkKind.UPGRADE
    ):
        at = pendulum.instance(task.finished_at or task.updated_at)
        for device_id in task.device_ids:
            if device_id in rolled_ids:
                rolled_ids.discard(device_id)  # counted once, at its latest upgrade task
                yield DeviceOutcome(name(task.wave_index), at, True)


def load_report(
    session: Session, name: str, *, events: int = 20, max_points: int = 200
) -> CampaignReport:
    """The report of campaign ``name``; raises :class:`UserError` if there is none."""
    campaign = store_api.find_campaign(session, name=name)
    if campaign is None:
        known = sorted(c.name for c in store_api.list_campaigns(session))[:10]
        hint = f"known campaigns: {', '.join(known)}" if known else "no campaign has run yet"
        raise UserError(f"no campaign named {name!r} in the store", hint=hint)
    assert campaign.id is not None
    cid = campaign.id

    waves = store_api.get_waves(session, campaign_id=cid)
    by_index = {w.index: w for w in waves}
    wave_names = {w.index: w.name for w in waves}

    counts = store_api.device_status_counts_by_wave(session, campaign_id=cid)
    chunk_counts = store_api.chunk_counts_by_wave(session, campaign_id=cid)

    rollout_rows: list[WaveReport] = []
    rollback_rows: list[WaveReport] = []
    all_rollout = Totals()
    indexes = sorted(set(wave_names) | set(counts))
    for index in indexes:
        wave = by_index.get(index)
        rollout, rollback = totals_from_counts(counts.get(index, {}))
        all_rollout = all_rollout + rollout
        at_resolve = wave is None and index == store_api.RESOLVE_SKIPPED_WAVE
        label = wave_names.get(index, "skipped at resolve" if at_resolve else f"wave {index}")
        rollout_rows.append(
            WaveReport(
                index=index,
                name=label,
                status=wave.status.value if wave else ("skipped" if at_resolve else "-"),
                totals=rollout,
                chunks=chunk_counts.get((index, ChunkKind.UPGRADE), 0),
                started_at=_pdt(wave.started_at) if wave else None,
                finished_at=_pdt(wave.finished_at) if wave else None,
            )
        )
        if rollback is not None:
            rollback_rows.append(
                WaveReport(
                    index=index,
                    name=label,
                    status="rolling back" if rollback.in_progress else "rolled back",
                    totals=rollback,
                    phase="rollback",
                    chunks=chunk_counts.get((index, ChunkKind.ROLLBACK), 0),
                )
            )

    event_rows = store_api.recent_events(session, campaign_id=cid, limit=events)
    event_lines = tuple(
        EventLine(pendulum.instance(e.at), e.kind, _event_message(e)) for e in reversed(event_rows)
    )
    breach_event = next(
        iter(store_api.recent_events(session, campaign_id=cid, kinds=[BREACH_EVENT], limit=1)),
        None,
    )
    breach = None
    if breach_event is not None:
        breach = str((breach_event.data or {}).get("reason") or _event_message(breach_event))
    # Chart and JSON list waves in wave order, the rollback phase after the rollout.
    rows = rollout_rows + rollback_rows
    order = {w.label: i for i, w in enumerate(rows)}
    timeline = build_timeline(_outcomes(session, cid, wave_names), max_points=max_points)
    spec = campaign.spec or {}
    return CampaignReport(
        name=campaign.name,
        status=campaign.status.value,
        kind=str(spec.get("kind", "-")),
        totals=all_rollout,
        waves=tuple(rows),
        timeline=tuple(sorted(timeline, key=lambda series: order.get(series.wave, len(order)))),
        events=event_lines,
        package=_describe_package(spec, "package"),
        rollback_package=_describe_package(spec, "rollback", "rollback_package"),
        created_at=_pdt(campaign.created_at),
        updated_at=_pdt(campaign.updated_at),
        breach=breach,
        skipped_reasons=tuple(
            sorted(
                store_api.skip_reason_counts(session, campaign_id=cid).items(),
                key=lambda item: (-item[1], item[0]),
            )
        ),
        consent=tuple(
            (state, n)
            for state, n in consent_state_counts(session, campaign_id=cid).items()
            if spec.get("consent") is not None
        ),
        halt_reason=campaign.status_reason
        if campaign.status.value in ("halted", "rolling_back", "rolled_back", "failed")
        else None,
    )

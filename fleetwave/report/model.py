"""The report model: plain, immutable figures of one campaign, independent of SQL and Prefect.

``fleetwave.report.store`` fills it from the store; renderers (markdown, chart, JSON) only
read it. The timeline is built in one pass over finished devices with a bounded number of
points per wave, so memory stays flat for a million-device campaign.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pendulum

__all__ = [
    "CampaignReport",
    "DeviceOutcome",
    "EventLine",
    "TimelineSeries",
    "Totals",
    "WaveReport",
    "build_timeline",
    "event_subject",
]

_SUBJECT_WAVE = re.compile(r"^(rollback )?wave (\d+)\b")


def event_subject(subject: str | None) -> str:
    """An event's subject for people: the store writes ``wave 0 ...`` (the 0-based index, a
    stable key the engine matches on); reports show ``wave 1 ...``, as ``plan`` counts."""
    if not subject:
        return ""
    return _SUBJECT_WAVE.sub(
        lambda m: f"{m.group(1) or ''}wave {int(m.group(2)) + 1}", subject, count=1
    )


@dataclass(frozen=True, slots=True)
class Totals:
    """Device counts by outcome class.

    ``failed`` counts every final non-success the platform reported (fail, stop, timeout);
    ``skipped`` devices were never sent (already on target, excluded); ``cancelled`` were
    never sent because the campaign stopped first.
    """

    devices: int = 0
    succeeded: int = 0
    failed: int = 0
    in_progress: int = 0
    pending: int = 0
    skipped: int = 0
    cancelled: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    @property
    def failure_rate(self) -> float | None:
        """Failed share of finished devices; None before any device finished."""
        return self.failed / self.finished if self.finished else None

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.devices + other.devices,
            self.succeeded + other.succeeded,
            self.failed + other.failed,
            self.in_progress + other.in_progress,
            self.pending + other.pending,
            self.skipped + other.skipped,
            self.cancelled + other.cancelled,
        )


@dataclass(frozen=True, slots=True)
class WaveReport:
    """One wave (of the rollout or of the rollback phase) with its counts."""

    index: int
    name: str
    status: str
    totals: Totals
    phase: str = "rollout"  # "rollout" | "rollback"
    chunks: int = 0
    started_at: pendulum.DateTime | None = None
    finished_at: pendulum.DateTime | None = None

    @property
    def label(self) -> str:
        return self.name if self.phase == "rollout" else f"{self.name} (rollback)"


@dataclass(frozen=True, slots=True)
class EventLine:
    """One event of the campaign's log, as a person reads it."""

    at: pendulum.DateTime
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class DeviceOutcome:
    """A device's final result, the input of :func:`build_timeline`."""

    wave: str
    finished_at: pendulum.DateTime
    succeeded: bool


@dataclass(frozen=True, slots=True)
class TimelineSeries:
    """Cumulative succeeded/failed counts of one wave at increasing instants (UTC)."""

    wave: str
    times: tuple[pendulum.DateTime, ...]
    succeeded: tuple[int, ...]
    failed: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CampaignReport:
    """Everything the report shows about one campaign."""

    name: str
    status: str
    kind: str
    totals: Totals
    waves: tuple[WaveReport, ...] = ()
    timeline: tuple[TimelineSeries, ...] = ()
    events: tuple[EventLine, ...] = ()
    package: str | None = None
    rollback_package: str | None = None
    created_at: pendulum.DateTime | None = None
    updated_at: pendulum.DateTime | None = None
    halt_reason: str | None = None
    breach: str | None = None
    skipped_reasons: tuple[tuple[str, int], ...] = ()
    consent: tuple[tuple[str, int], ...] = ()
    """Devices per consent state (consent campaigns only), apart from the outcomes."""
    """Devices skipped when the targets were resolved, per reason (most first)."""
    generated_at: pendulum.DateTime = field(default_factory=lambda: pendulum.now("UTC"))

    @property
    def rolled_back(self) -> bool:
        return any(w.phase == "rollback" for w in self.waves)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO 8601 UTC timestamps) for ``fleetwave report --json``."""

        def iso(value: pendulum.DateTime | None) -> str | None:
            return value.in_tz("UTC").isoformat() if value is not None else None

        def totals(t: Totals) -> dict[str, Any]:
            return {
                "devices": t.devices,
                "succeeded": t.succeeded,
                "failed": t.failed,
                "in_progress": t.in_progress,
                "pending": t.pending,
                "skipped": t.skipped,
                "cancelled": t.cancelled,
                "failure_rate": t.failure_rate,
            }

        return {
            "name": self.name,
            "status": self.status,
            "kind": self.kind,
            "package": self.package,
            "rollback_package": self.rollback_package,
            "halt_reason": self.halt_reason,
            "breach": self.breach,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "generated_at": iso(self.generated_at),
            "totals": totals(self.totals),
            "skipped_reasons": dict(self.skipped_reasons),
            "consent": dict(self.consent) if self.consent else None,
            "waves": [
                {
                    "index": w.index,
                    "name": w.name,
                    "phase": w.phase,
                    "status": w.status,
                    "chunks": w.chunks,
                    "started_at": iso(w.started_at),
                    "finished_at": iso(w.finished_at),
                    **totals(w.totals),
                }
                for w in self.waves
            ],
            "timeline": [
                {
                    "wave": s.wave,
                    "points": [
                        {"at": iso(t), "succeeded": ok, "failed": bad}
                        for t, ok, bad in zip(s.times, s.succeeded, s.failed, strict=True)
                    ],
                }
                for s in self.timeline
            ],
            "events": [
                {"at": iso(e.at), "kind": e.kind, "message": e.message} for e in self.events
            ],
        }


def build_timeline(
    outcomes: Iterable[DeviceOutcome], *, max_points: int = 200
) -> tuple[TimelineSeries, ...]:
    """Cumulative succeeded/failed per wave over time, at most ``max_points`` per wave.

    Outcomes may arrive in any order. Instants are bucketed per second, then (if a wave has
    more distinct seconds than ``max_points``) merged into equal-width buckets, keeping the
    final cumulative figures exact. Waves keep the order of their first appearance.
    """
    if max_points < 2:
        raise ValueError(f"a timeline needs at least 2 points per wave, not {max_points}")
    # wave -> epoch second -> [succeeded, failed]; bounded by distinct seconds, not devices.
    per_wave: dict[str, dict[int, list[int]]] = {}
    for outcome in outcomes:
        second = int(outcome.finished_at.timestamp())
        cell = per_wave.setdefault(outcome.wave, {}).setdefault(second, [0, 0])
        cell[0 if outcome.succeeded else 1] += 1
    series: list[TimelineSeries] = []
    for wave, buckets in per_wave.items():
        seconds = sorted(buckets)
        if len(seconds) > max_points:
            lo, hi = seconds[0], seconds[-1]
            width = (hi - lo) / (max_points - 1)
            merged: dict[int, list[int]] = {}
            for sec in seconds:
                # A bucket is stamped with its right edge, so counts never appear early.
                edge = min(hi, lo + math.ceil(math.ceil((sec - lo) / width) * width))
                cell = merged.setdefault(edge, [0, 0])
                cell[0] += buckets[sec][0]
                cell[1] += buckets[sec][1]
            buckets, seconds = merged, sorted(merged)
        ok = bad = 0
        times: list[pendulum.DateTime] = []
        oks: list[int] = []
        bads: list[int] = []
        for sec in seconds:
            ok += buckets[sec][0]
            bad += buckets[sec][1]
            times.append(pendulum.from_timestamp(sec, tz="UTC"))
            oks.append(ok)
            bads.append(bad)
        series.append(TimelineSeries(wave, tuple(times), tuple(oks), tuple(bads)))
    return tuple(series)

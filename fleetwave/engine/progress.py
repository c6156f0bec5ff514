"""Progress events the engine emits while it advances a campaign, and the sink protocol.

The CLI renders them with rich; the Prefect flow turns them into a progress artifact
(``flows/artifacts.py``). Both subscribe through :class:`ProgressSink`: a plain callable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pendulum

__all__ = [
    "ProgressEvent",
    "ProgressSink",
    "WaveProgress",
    "combine_sinks",
    "logging_sink",
    "null_sink",
    "plural",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WaveProgress:
    """Device counts of one wave (of one phase) at the time of the event."""

    wave: int
    name: str
    total: int
    pending: int = 0
    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    skipped: int = 0
    rolled_back: int = 0
    status: str = ""

    @property
    def finished(self) -> int:
        """Devices with no task outstanding (rolled back ones took the new version first)."""
        return self.succeeded + self.failed + self.timed_out + self.skipped + self.rolled_back

    @property
    def fraction(self) -> float:
        """Finished share of the wave, 0..1 (1 for an empty wave)."""
        return 1.0 if self.total == 0 else self.finished / self.total


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One thing the engine did or saw.

    ``kind`` is one of: ``stage`` (a stage started; ``stage`` names it), ``submitted``
    (chunks were submitted), ``round`` (a monitoring round finished; ``waves`` holds the
    counts), ``decision`` (a decision was taken; ``detail`` holds its inputs), ``outcome``
    (the run ends; ``message`` says how). ``phase`` is ``upgrade`` or ``rollback``.
    """

    kind: str
    campaign: str
    at: pendulum.DateTime
    phase: str = "upgrade"
    stage: str | None = None
    message: str = ""
    waves: tuple[WaveProgress, ...] = ()
    api_calls: int = 0
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(w.total for w in self.waves)

    @property
    def finished(self) -> int:
        return sum(w.finished for w in self.waves)


class ProgressSink(Protocol):
    """Receives progress events; must be quick and must not raise (errors are logged)."""

    def __call__(self, event: ProgressEvent) -> None: ...


def null_sink(event: ProgressEvent) -> None:
    """A sink that ignores every event."""


def logging_sink(event: ProgressEvent) -> None:
    """A sink that logs each event at INFO (rounds at DEBUG)."""
    level = logging.DEBUG if event.kind == "round" else logging.INFO
    logger.log(
        level,
        "%s [%s/%s] %s %s/%s",
        event.campaign,
        event.phase,
        event.kind,
        event.message or event.stage or "",
        event.finished,
        event.total,
    )


def combine_sinks(*sinks: ProgressSink | Callable[[ProgressEvent], None]) -> ProgressSink:
    """One sink that forwards to each of ``sinks``; a failing sink never stops the engine."""

    def _sink(event: ProgressEvent) -> None:
        for sink in sinks:
            try:
                sink(event)
            except Exception:  # a display problem must never stop a campaign
                logger.warning("progress sink %r failed", sink, exc_info=True)

    return _sink


def plural(n: int, noun: str) -> str:
    """``"1 task"``, ``"2 tasks"``: counts in messages people read."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

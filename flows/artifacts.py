"""Prefect artifacts of a campaign: markdown summary, per-wave table and a live progress bar.

Built from a :class:`fleetwave.report.CampaignReport` (which comes from the store), with
the same markdown as ``fleetwave report``. The flow calls :func:`publish_report` at the end
of a run and :meth:`ProgressArtifact.update` after every monitoring round. Artifact keys are
stable per campaign, so the Prefect UI shows each one's history across runs.
"""

from __future__ import annotations

import logging
import re
from typing import Any, cast
from uuid import UUID

from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from fleetwave.engine.progress import ProgressEvent
from fleetwave.report import CampaignReport, Totals, render_markdown
from fleetwave.report.markdown import render_summary

__all__ = [
    "ProgressArtifact",
    "artifact_key",
    "progress_description",
    "progress_percent",
    "publish_report",
    "publish_report_sync",
    "totals_from_event",
    "wave_table",
]

logger = logging.getLogger(__name__)

_KEY_MAX = 100


def artifact_key(campaign: str, suffix: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for a campaign's artifact."""
    base = re.sub(r"[^a-z0-9]+", "-", campaign.lower()).strip("-") or "campaign"
    tail = "-" + re.sub(r"[^a-z0-9]+", "-", suffix.lower()).strip("-")
    return (base[: _KEY_MAX - len(tail)].rstrip("-") + tail).lstrip("-")


def wave_table(report: CampaignReport) -> list[dict[str, Any]]:
    """One row per wave, the table artifact's content (plain JSON values)."""
    rows: list[dict[str, Any]] = []
    for w in report.waves:
        t = w.totals
        rate = t.failure_rate
        rows.append(
            {
                "#": str(w.index + 1) if w.index >= 0 else "-",  # from 1, as `plan` counts
                "Wave": w.label,
                "Status": w.status,
                "Devices": t.devices,
                "Tasks": w.chunks,
                "Succeeded": t.succeeded,
                "Failed": t.failed,
                "In progress": t.in_progress,
                "Pending": t.pending,
                "Skipped": t.skipped,
                "Cancelled": t.cancelled,
                "Failure rate": f"{100 * rate:.1f}%" if rate is not None else "-",
                "Started (UTC)": _when(w.started_at),
                "Finished (UTC)": _when(w.finished_at),
            }
        )
    return rows


def _when(value: Any) -> str:
    """``2026-01-05 22:00:00``: UTC to the second (the header says UTC)."""
    return value.in_tz("UTC").format("YYYY-MM-DD HH:mm:ss") if value is not None else ""


def progress_percent(totals: Totals) -> float:
    """Finished (succeeded + failed) share of the targeted devices (skipped ones were
    never sent), 0..100; 100 when every device was skipped."""
    targeted = totals.devices - totals.skipped
    if totals.devices <= 0:
        return 0.0
    if targeted <= 0:
        return 100.0
    done = totals.succeeded + totals.failed
    return max(0.0, min(100.0, 100.0 * done / targeted))


def progress_description(campaign: str, totals: Totals, *, phase: str = "rollout") -> str:
    """What the progress artifact says beside its bar: counts of the targeted devices, the
    skipped ones said apart (as the summary does)."""
    targeted = totals.devices - totals.skipped
    text = (
        f"{campaign} ({phase}): {totals.succeeded} succeeded, {totals.failed} failed, "
        f"{totals.in_progress} in progress, {totals.pending} pending of {targeted} targeted"
    )
    return text + (f" ({totals.skipped} skipped)" if totals.skipped else "")


def totals_from_event(event: ProgressEvent) -> Totals:
    """Campaign-wide counts of an engine progress event (summed over its waves)."""
    waves = event.waves
    return Totals(
        devices=sum(w.total for w in waves),
        succeeded=sum(w.succeeded + w.rolled_back for w in waves),
        failed=sum(w.failed + w.timed_out for w in waves),
        in_progress=sum(w.in_flight for w in waves),
        pending=sum(w.pending for w in waves),
        skipped=sum(w.skipped for w in waves),
    )


async def publish_report(report: CampaignReport) -> dict[str, UUID]:
    """Create the summary (markdown) and per-wave (table) artifacts; returns their ids by kind."""
    summary_id = await acreate_markdown_artifact(
        markdown=render_markdown(report),
        key=artifact_key(report.name, "summary"),
        description=f"Campaign {report.name}: {report.status}",
    )
    table_id = await acreate_table_artifact(
        table=wave_table(report),
        key=artifact_key(report.name, "waves"),
        description=render_summary(report).splitlines()[0].lstrip("# "),
    )
    return {"summary": summary_id, "waves": table_id}


def publish_report_sync(report: CampaignReport) -> dict[str, UUID]:
    """:func:`publish_report` for synchronous flows."""
    summary_id = cast(
        UUID,
        create_markdown_artifact(
            markdown=render_markdown(report),
            key=artifact_key(report.name, "summary"),
            description=f"Campaign {report.name}: {report.status}",
            _sync=True,  # type: ignore[call-arg]
        ),
    )
    table_id = cast(
        UUID,
        create_table_artifact(
            table=wave_table(report),
            key=artifact_key(report.name, "waves"),
            description=render_summary(report).splitlines()[0].lstrip("# "),
            _sync=True,  # type: ignore[call-arg]
        ),
    )
    return {"summary": summary_id, "waves": table_id}


class ProgressArtifact:
    """The campaign's progress bar in the Prefect UI: created on the first update, then updated.

    One instance per flow run (Prefect ties a progress artifact to the run that made it).
    Updates that would not change the bar or its text are skipped, so a monitoring loop can
    call :meth:`update` every round without flooding the API.
    """

    def __init__(self, campaign: str, *, phase: str = "rollout") -> None:
        self.campaign = campaign
        self.phase = phase
        self.artifact_id: UUID | None = None
        self._last: tuple[float, str] | None = None

    @property
    def key(self) -> str:
        return artifact_key(self.campaign, "progress")

    def _next(self, totals: Totals, phase: str | None) -> tuple[float, str] | None:
        if phase is not None:
            self.phase = phase
        state = (
            round(progress_percent(totals), 1),
            progress_description(self.campaign, totals, phase=self.phase),
        )
        if state == self._last:
            return None
        self._last = state
        return state

    async def update(self, totals: Totals, *, phase: str | None = None) -> UUID | None:
        """Show ``totals`` (async flows). Returns the artifact id (None if nothing changed)."""
        state = self._next(totals, phase)
        if state is None:
            return self.artifact_id
        percent, text = state
        if self.artifact_id is None:
            self.artifact_id = await acreate_progress_artifact(
                progress=percent, key=self.key, description=text
            )
        else:
            await aupdate_progress_artifact(self.artifact_id, progress=percent, description=text)
        return self.artifact_id

    def update_sync(self, totals: Totals, *, phase: str | None = None) -> UUID | None:
        """:meth:`update` for synchronous flows."""
        state = self._next(totals, phase)
        if state is None:
            return self.artifact_id
        percent, text = state
        if self.artifact_id is None:
            self.artifact_id = cast(
                UUID,
                create_progress_artifact(
                    progress=percent,
                    key=self.key,
                    description=text,
                    _sync=True,  # type: ignore[call-arg]
                ),
            )
        else:
            update_progress_artifact(
                self.artifact_id,
                progress=percent,
                description=text,
                _sync=True,  # type: ignore[call-arg]
            )
        return self.artifact_id

    def sink(self, event: ProgressEvent) -> None:
        """An engine :class:`~fleetwave.engine.progress.ProgressSink`: updates on rounds/outcome.

        Synchronous (the engine calls sinks inline); a failed update is logged, never raised,
        so the Prefect UI can never stop a campaign.
        """
        if event.kind not in ("round", "outcome") or not event.waves:
            return
        phase = "rollback" if event.phase == "rollback" else "rollout"
        try:
            self.update_sync(totals_from_event(event), phase=phase)
        except Exception:
            logger.warning(
                "could not update the progress artifact of %s", self.campaign, exc_info=True
            )

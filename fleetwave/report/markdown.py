"""Markdown rendering of a :class:`CampaignReport`, shared by the CLI and Prefect artifacts."""

from __future__ import annotations

import pendulum

from fleetwave.report.model import CampaignReport, Totals, WaveReport

__all__ = ["render_markdown", "render_summary", "render_wave_table"]


def _when(value: pendulum.DateTime | None) -> str:
    return value.in_tz("UTC").format("YYYY-MM-DD HH:mm:ss") + "Z" if value is not None else "-"


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _cell(text: str) -> str:
    """Escape what would break a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def render_summary(report: CampaignReport) -> str:
    """The campaign's headline: status, package, totals, and why it stopped if it did."""
    t = report.totals
    lines = [
        f"# Campaign `{report.name}`: {report.status}",
        "",
        f"- kind: {report.kind}",
        f"- package: {report.package or '-'}",
    ]
    if report.rollback_package:
        lines.append(f"- rollback package: {report.rollback_package}")
    lines += [
        f"- devices: {t.devices} ({t.devices - t.skipped} targeted, {t.skipped} skipped)",
        f"- succeeded: {t.succeeded} ({_pct(t.succeeded, t.devices - t.skipped)} of targeted)",
        f"- failed: {t.failed} ({_pct(t.failed, t.devices - t.skipped)} of targeted)",
        (
            f"- in progress: {t.in_progress}, pending: {t.pending}, skipped: {t.skipped}, "
            f"cancelled: {t.cancelled}"
        ),
        f"- started: {_when(report.created_at)}, last change: {_when(report.updated_at)}",
    ]
    if report.skipped_reasons:
        why = "; ".join(f"{reason}: {n}" for reason, n in report.skipped_reasons)
        lines.append(f"- skipped before sending: {_cell(why)}")
    if report.consent:
        answers = ", ".join(f"{state} {n}" for state, n in report.consent)
        lines.append(f"- consent (apart from outcomes): {answers}")
    if report.breach:
        lines.append(f"- threshold tripped: {report.breach}")
    if report.halt_reason and report.halt_reason != report.breach:
        lines.append(f"- why it stopped: {report.halt_reason}")
    if report.rolled_back:
        rb = sum((w.totals for w in report.waves if w.phase == "rollback"), Totals())
        lines.append(
            f"- rolled back: {rb.succeeded} of {rb.devices} devices back on the previous "
            f"version, {rb.failed} failed"
        )
    return "\n".join(lines) + "\n"


def _wave_row(w: WaveReport) -> str:
    t = w.totals
    cells = [
        str(w.index + 1) if w.index >= 0 else "-",
        _cell(w.label),
        w.status,
        str(t.devices),
        str(w.chunks),
        str(t.succeeded),
        str(t.failed),
        str(t.in_progress),
        str(t.pending),
        str(t.skipped),
        str(t.cancelled),
        _pct(t.failed, t.finished),
        _when(w.started_at),
        _when(w.finished_at),
    ]
    return "| " + " | ".join(cells) + " |"


def render_wave_table(report: CampaignReport) -> str:
    """A markdown table with one row per wave (rollout, then rollback)."""
    head = (
        "| # | wave | status | devices | tasks | succeeded | failed | in progress | pending "
        "| skipped | cancelled | failure rate | started (UTC) | finished (UTC) |"
    )
    sep = "|" + "---|" * 14
    rows = [_wave_row(w) for w in report.waves]
    if not rows:
        rows = ["| - | (no waves planned yet) |" + " |" * 12]
    return "\n".join([head, sep, *rows]) + "\n"


def render_markdown(report: CampaignReport, *, events: int = 10) -> str:
    """The whole report: summary, wave table and the last ``events`` events."""
    parts = [render_summary(report), "## Waves", "", render_wave_table(report)]
    if report.events and events > 0:
        parts += ["## Last events (oldest first)", ""]
        parts += [
            f"- {_when(e.at)} **{_cell(e.kind)}** {_cell(e.message)}"
            for e in report.events[-events:]
        ]
        parts.append("")
    return "\n".join(parts)

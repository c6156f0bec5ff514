"""A :class:`CampaignReport` rendered for a terminal with rich: the summary and events as
markdown, the waves as a table that drops columns with nothing to say, so it fits 80 columns.
"""

from __future__ import annotations

from typing import Any

from fleetwave.report.markdown import render_summary
from fleetwave.report.model import CampaignReport, WaveReport

__all__ = ["print_report"]


def _when(w: Any) -> str:
    return w.in_tz("UTC").format("MM-DD HH:mm") if w is not None else "-"


def _pct(w: WaveReport) -> str:
    rate = w.totals.failure_rate
    return f"{100 * rate:.1f}%" if rate is not None else "-"


# header, cell, justify; a column whose cells are all "0", "-" or "" is left out
_COLUMNS: tuple[tuple[str, Any, str], ...] = (
    ("#", lambda w: str(w.index + 1) if w.index >= 0 else "-", "right"),
    ("wave", lambda w: w.label, "left"),
    ("status", lambda w: w.status, "left"),
    ("devices", lambda w: str(w.totals.devices), "right"),
    ("tasks", lambda w: str(w.chunks), "right"),
    ("ok", lambda w: str(w.totals.succeeded), "right"),
    ("failed", lambda w: str(w.totals.failed), "right"),
    ("running", lambda w: str(w.totals.in_progress), "right"),
    ("pending", lambda w: str(w.totals.pending), "right"),
    ("skipped", lambda w: str(w.totals.skipped), "right"),
    ("cancelled", lambda w: str(w.totals.cancelled), "right"),
    ("fail %", _pct, "right"),
    ("started", lambda w: _when(w.started_at), "left"),
    ("finished", lambda w: _when(w.finished_at), "left"),
)
_ALWAYS = {"#", "wave", "status", "devices"}
_DROP_FIRST = ("finished", "started", "tasks", "pending", "running", "fail %")


def print_report(report: CampaignReport, console: Any, *, events: int = 10) -> None:
    """Print the report on ``console`` (a ``rich.console.Console``)."""
    from rich import box
    from rich.markdown import Markdown
    from rich.table import Table

    from fleetwave.report.markdown import _when as when

    console.print(Markdown(render_summary(report)))
    rows = [[cell(w) for _, cell, _ in _COLUMNS] for w in report.waves]
    keep = [
        i
        for i, (head, _, _) in enumerate(_COLUMNS)
        if head in _ALWAYS or any(r[i] not in ("0", "-", "") for r in rows)
    ]

    def width(i: int) -> int:
        return max([len(_COLUMNS[i][0]), *(len(r[i]) for r in rows)]) + 3

    # a narrow terminal loses the least needed columns first, never a name or a count
    heads = [h for h, _, _ in _COLUMNS]
    for head in _DROP_FIRST:
        if sum(width(i) for i in keep) <= console.width:
            break
        keep = [i for i in keep if heads[i] != head]
    table = Table(title="Waves (times UTC)", title_justify="left", box=box.SIMPLE_HEAD)
    for i in keep:
        head, _, justify = _COLUMNS[i]
        table.add_column(head, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(*(r[i] for i in keep))
    if not rows:
        table.add_row("-", "(no waves planned yet)", "", "")
    console.print(table)
    if report.events and events > 0:
        lines = [
            f"- {when(e.at)} **{e.kind}** {e.message}".replace("|", "\\|")
            for e in report.events[-events:]
        ]
        console.print(Markdown("## Last events (oldest first)\n\n" + "\n".join(lines)))

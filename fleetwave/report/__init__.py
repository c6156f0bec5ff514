"""Campaign reports: a model built from the store, rendered as markdown, JSON and a chart.

The same markdown feeds the CLI (``fleetwave report``) and the Prefect artifacts of the flow.
"""

from __future__ import annotations

from fleetwave.report.chart import render_chart
from fleetwave.report.markdown import render_markdown, render_summary, render_wave_table
from fleetwave.report.model import (
    CampaignReport,
    DeviceOutcome,
    EventLine,
    TimelineSeries,
    Totals,
    WaveReport,
    build_timeline,
)

__all__ = [
    "CampaignReport",
    "DeviceOutcome",
    "EventLine",
    "TimelineSeries",
    "Totals",
    "WaveReport",
    "build_timeline",
    "render_chart",
    "render_markdown",
    "render_summary",
    "render_wave_table",
]

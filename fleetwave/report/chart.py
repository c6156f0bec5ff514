"""A PNG chart of devices succeeded and failed over time, one colour per wave (matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleetwave.errors import UserError
from fleetwave.report.model import CampaignReport

__all__ = ["render_chart"]


def render_chart(report: CampaignReport, path: str | Path) -> Path:
    """Write the chart to ``path`` (PNG) and return it.

    Solid lines: cumulative succeeded per wave; dashed: cumulative failed. Time on the x
    axis is UTC. A campaign with no finished device yet gets an empty chart that says so.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    target = Path(path)
    if target.suffix.lower() != ".png":
        raise UserError(f"chart file {target} must end in .png", hint="e.g. --png report.png")
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=100)
    try:
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        # Naive UTC datetimes: matplotlib's date converter handles them without tz lookups.
        end = max((s.times[-1] for s in report.timeline if s.times), default=None)
        for i, series in enumerate(report.timeline):
            if not series.times or end is None:
                continue
            colour = colours[i % len(colours)]
            # Start each line at zero at its first result and carry it flat to the end, so a
            # wave whose devices all finished at one instant still shows as a step.
            first = series.times[0]
            if report.created_at is not None and report.created_at < first:
                first = report.created_at  # lines start at zero when the campaign started
            xs: Any = [t.in_tz("UTC").naive() for t in (first, *series.times, end)]
            ok = [0, *series.succeeded, series.succeeded[-1]]
            bad = [0, *series.failed, series.failed[-1]]
            ax.step(xs, ok, where="post", color=colour, label=f"{series.wave} succeeded")
            if any(series.failed):
                ax.step(
                    xs, bad, where="post", color=colour, linestyle="--",
                    label=f"{series.wave} failed",
                )  # fmt: skip
        if not report.timeline:
            ax.text(
                0.5, 0.5, "no device finished yet", ha="center", va="center", transform=ax.transAxes
            )
        ax.set_title(f"{report.name}: devices succeeded / failed per wave ({report.status})")
        ax.set_xlabel("time (UTC)")
        ax.set_ylabel("devices (cumulative)")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.autofmt_xdate()
        ax.grid(True, alpha=0.3)
        if report.timeline:
            ax.legend(loc="upper left", fontsize="small", ncol=2)
        fig.tight_layout()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(target, format="png")
        except OSError as exc:
            raise UserError(
                f"cannot write chart {target}: {exc.strerror}", hint="choose a writable path"
            ) from exc
    finally:
        plt.close(fig)
    return target

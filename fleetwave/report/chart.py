"""A PNG chart of devices succeeded and failed over time, one colour per wave, and for a
consent campaign the owners' answers in a panel of their own (matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleetwave.errors import UserError
from fleetwave.report.model import CampaignReport

__all__ = ["CONSENT_ORDER", "consent_bars", "render_chart"]

#: Consent states left to right in the chart's consent panel: consenting answers first,
#: then the ones that keep a device out, then the still open ones.
CONSENT_ORDER = ("confirmed", "auto", "appointed", "declined", "expired", "awaiting")
_CONSENT_COLOURS = {
    "confirmed": "#2ca02c",
    "auto": "#98df8a",
    "appointed": "#1f77b4",
    "declined": "#ff7f0e",
    "expired": "#7f7f7f",
    "awaiting": "#c7c7c7",
}


def consent_bars(consent: tuple[tuple[str, int], ...]) -> list[tuple[str, int, str]]:
    """The consent panel's segments: (state, devices, colour) in :data:`CONSENT_ORDER`
    (states it does not know after them), empty states left out."""
    counts = dict(consent)
    order = [*CONSENT_ORDER, *sorted(set(counts) - set(CONSENT_ORDER))]
    return [(s, counts[s], _CONSENT_COLOURS.get(s, "#bcbd22")) for s in order if counts.get(s)]


def render_chart(report: CampaignReport, path: str | Path) -> Path:
    """Write the chart to ``path`` (PNG) and return it.

    Solid lines: cumulative succeeded per wave; dashed: cumulative failed. Time on the x
    axis is UTC. A campaign with no finished device yet gets an empty chart that says so.
    A consent campaign gets a second panel below: one bar of devices by their owners'
    answers, so declines and expiries show apart from failures (they are not failures).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    target = Path(path)
    if target.suffix.lower() != ".png":
        raise UserError(f"chart file {target} must end in .png", hint="e.g. --png report.png")
    bars = consent_bars(report.consent)
    if bars:
        fig, (ax, cax) = plt.subplots(
            2, 1, figsize=(10, 7), dpi=100, gridspec_kw={"height_ratios": [4, 1]}
        )
    else:
        fig, ax = plt.subplots(figsize=(10, 5.5), dpi=100)
        cax = None
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
        # only the time axis is dates (fig.autofmt_xdate would also hide the tick labels
        # of every panel but the last, and rotate the consent panel's)
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
        ax.grid(True, alpha=0.3)
        if report.timeline:
            ax.legend(loc="upper left", fontsize="small", ncol=2)
        if cax is not None:
            _consent_panel(cax, bars)
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


def _consent_panel(ax: Any, bars: list[tuple[str, int, str]]) -> None:
    """One horizontal stacked bar: devices by consent state, each segment labelled."""
    total = sum(n for _, n, _ in bars)
    left = 0
    for state, n, colour in bars:
        ax.barh([0], [n], left=left, color=colour, label=f"{state} {n}")
        if n / total >= 0.06:  # a label only where it fits
            ax.text(left + n / 2, 0, f"{state}\n{n}", ha="center", va="center", fontsize=8)
        left += n
    ax.set_xlim(0, total)
    ax.set_yticks([])
    ax.set_xlabel("devices")
    ax.set_title("owners' answers (consent; declined and expired are not failures)", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=len(bars), fontsize="small")

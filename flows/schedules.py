"""What a deployment of a campaign shows and when it runs, derived from the campaign file.

``prefect.yaml`` is written by hand; these plain functions say what its nightly entries must
hold (one cron per allowed window, on the window's own days, in the campaign's timezone; a
description naming that timezone and the windows), and the tests compare the two. The
approval form reuses :func:`describe_windows`.
"""

from __future__ import annotations

from collections.abc import Iterable

from fleetwave.spec.model import CampaignSpec, Weekday

__all__ = ["cron_schedules", "day_span", "deployment_description", "describe_windows"]

_DAY_NAMES = {d: d.value.capitalize() for d in Weekday}


def _runs(isos: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted ISO weekday numbers: [1,2,3,6] -> [(1,3),(6,6)]."""
    out: list[tuple[int, int]] = []
    for n in isos:
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def day_span(days: Iterable[Weekday]) -> str:
    """``"daily"``, ``"Mon-Fri"``, ``"Sat-Sun"``, ``"Mon, Wed-Thu"``: the days a window opens."""
    isos = sorted({d.iso for d in days})
    if len(isos) == 7:
        return "daily"
    names = {d.iso: _DAY_NAMES[d] for d in Weekday}
    parts = []
    for a, b in _runs(isos):
        parts.append(names[a] if a == b else f"{names[a]}-{names[b]}")
    return ", ".join(parts)


def _cron_days(days: Iterable[Weekday]) -> str:
    """The cron day-of-week field (0 = Sunday) of the days a window opens."""
    isos = sorted({d.iso for d in days})
    if len(isos) == 7:
        return "*"
    cron = sorted(i % 7 for i in isos)
    parts = []
    for a, b in _runs(cron):
        parts.append(str(a) if a == b else f"{a}-{b}")
    return ",".join(parts)


def describe_windows(spec: CampaignSpec) -> str | None:
    """``"Mon-Fri 22:00-05:00 (Europe/Berlin); blackouts 2026-12-24..2026-12-26"``, or
    None for a campaign that may submit at any time (no allowed windows, no blackouts)."""
    w = spec.windows
    if w is None or (not w.allowed and not w.blackouts):
        return None
    parts = [
        f"{day_span(a.days)} "
        + ("all day" if a.start == a.end else f"{a.start:%H:%M}-{a.end:%H:%M}")
        for a in w.allowed
    ]
    text = (", ".join(parts) if parts else "any time") + f" ({w.timezone})"
    if w.blackouts:
        spans = [str(b.first) if b.first == b.last else f"{b.first}..{b.last}" for b in w.blackouts]
        text += "; blackouts " + ", ".join(spans)
    return text


def cron_schedules(spec: CampaignSpec) -> list[dict[str, str]]:
    """One schedule per allowed window: it opens the window on the window's own days, in
    the campaign's timezone (``[]`` for a campaign without windows: any time suits it)."""
    w = spec.windows
    if w is None or not w.allowed:
        return []
    return [
        {
            "cron": f"{a.start.minute} {a.start.hour} * * {_cron_days(a.days)}",
            "timezone": w.timezone,
        }
        for a in w.allowed
    ]


def deployment_description(
    summary: str, file: str, spec: CampaignSpec, *, schedule_timezone: str | None = None
) -> str:
    """A nightly deployment's description: what it does, the campaign's name and file, its
    windows and the timezone its schedule runs in (the UI shows schedule times without one).
    ``schedule_timezone``: the schedule's zone when the campaign has no windows to take it
    from."""
    windows = describe_windows(spec)
    tz = spec.windows.timezone if spec.windows is not None and spec.windows.allowed else None
    tz = tz or schedule_timezone or "UTC"
    when = f"windows {windows}" if windows else "no windows (may submit at any time)"
    return f"{summary}: campaign {spec.name} ({file}); {when}; schedule times are {tz}."

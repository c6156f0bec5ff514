"""When and how one device's FOTA upgrade runs: pure, seeded functions of the request's dates
and hour windows, the device's connectivity and the simulator's failure rate.

The state evaluates these plans at "now" on the simulator clock; nothing here keeps state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fleetwave.sim.fleet import Connectivity, hash_u

__all__ = [
    "DAY_S",
    "FAIL_REASONS",
    "REASON_NOT_REACHED",
    "REASON_WINDOW_MISSED",
    "DevicePlan",
    "DeviceTraits",
    "in_window",
    "next_in_window",
    "plan_device",
]

DAY_S = 86400.0
_SALT_JITTER = 31
_SALT_DURATION = 32
_SALT_OUTCOME = 33
_SALT_REASON = 34
_SALT_FAIL_AT = 35
_HORIZON_S = 60 * DAY_S  # a request without an end date stops looking for a wake after this

#: Reasons of a device whose upgrade failed (``resultReason``/``reason``), by phase.
FAIL_REASONS = (
    ("download", "Download failed: the device lost its connection"),
    ("download", "Download failed: not enough free space on the device"),
    ("install", "Install failed: the image did not verify on the device"),
    ("install", "Install failed: battery too low to install"),
)
REASON_NOT_REACHED = "The device did not connect before the end date"
REASON_WINDOW_MISSED = "No install window was reached before the end date"


@dataclass(frozen=True, slots=True)
class DeviceTraits:
    """What the timeline needs to know about one device."""

    index: int
    connectivity: Connectivity
    wake_minutes: int
    phase: float  # 0..1 of the wake period
    duration_s: tuple[float, float]
    failure_rate: float


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """The device's run: download start, terminal time, outcome and reason (None: not yet known)."""

    started: float | None
    done: float | None
    success: bool
    reason: str | None
    installing: float | None = None  # when the install began (None: never reached)


Window = tuple[int, int]  # (startTime 0..23, endTime 1..24): hour h is inside when s <= h < e


def in_window(t: float, windows: Sequence[Window]) -> bool:
    if not windows:
        return True
    hour = int((t % DAY_S) // 3600)
    return any(s <= hour < e for s, e in windows)


def next_in_window(t: float, windows: Sequence[Window]) -> float:
    """The first instant at or after ``t`` (UTC on the simulator clock) inside a window."""
    if in_window(t, windows):
        return t
    day = t - (t % DAY_S)
    best: float | None = None
    for s, _e in windows:
        for d in (0, 1):
            cand = day + d * DAY_S + s * 3600
            if cand >= t and (best is None or cand < best):
                best = cand
    assert best is not None
    return best


def _check_in(traits: DeviceTraits, seed: int, seq: int, ready: float, limit: float) -> list[float]:
    """Instants at/after ``ready`` (and before ``limit``) when the device talks to the platform."""
    if traits.connectivity is Connectivity.OFFLINE:
        return []
    if traits.connectivity is Connectivity.ALWAYS:
        return [ready + 60.0 * hash_u(seed, seq, traits.index, _SALT_JITTER)]
    period = traits.wake_minutes * 60.0
    offset = traits.phase * period
    k = max(0, int((ready - offset) // period))
    out: list[float] = []
    t = offset + k * period
    while t < limit and len(out) < 20_000:
        if t >= ready:
            out.append(t)
        t += period
    return out


def plan_device(
    traits: DeviceTraits,
    *,
    seed: int,
    seq: int,
    ready: float,
    end: float | None,
    download_windows: Sequence[Window] = (),
    install_after: float | None = None,
    install_windows: Sequence[Window] = (),
) -> DevicePlan:
    """The device's upgrade once the request is ready to run at ``ready``, until ``end``."""
    limit = end if end is not None else ready + _HORIZON_S
    start: float | None = None
    for t in _check_in(traits, seed, seq, ready, limit):
        if traits.connectivity is Connectivity.ALWAYS:
            t = next_in_window(t, download_windows)
        if in_window(t, download_windows) and t < limit:
            start = t
            break
    if start is None:
        if end is None:
            return DevicePlan(None, None, False, None)
        return DevicePlan(None, end, False, REASON_NOT_REACHED)
    lo, hi = traits.duration_s
    duration = lo + (hi - lo) * hash_u(seed, seq, traits.index, _SALT_DURATION)
    download_end = start + duration / 2
    fails = hash_u(seed, seq, traits.index, _SALT_OUTCOME) < traits.failure_rate
    phase, reason = FAIL_REASONS[
        int(hash_u(seed, seq, traits.index, _SALT_REASON) * len(FAIL_REASONS)) % len(FAIL_REASONS)
    ]
    at = 0.1 + 0.8 * hash_u(seed, seq, traits.index, _SALT_FAIL_AT)
    if fails and phase == "download":
        return DevicePlan(start, start + (duration / 2) * at, False, reason)
    install = next_in_window(max(download_end, install_after or 0.0), install_windows)
    if end is not None and install >= end:
        return DevicePlan(start, end, False, REASON_WINDOW_MISSED)
    if fails:
        return DevicePlan(start, install + (duration / 2) * at, False, reason, install)
    return DevicePlan(start, install + duration / 2, True, None, install)

"""How one device executes one upgrade subtask: a pure function of (device, task, policy, time).

:func:`plan_subtask` draws the whole timeline of a subtask (attempts, durations, outcome,
retries, window cut-off) from the seed when the task is created; :func:`state_at` reads
that timeline at any instant. Same inputs, same timeline: no hidden state, no wall clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleetwave.sim.fleet import Connectivity, hash_u

__all__ = [
    "OFFLINE_FAIL_AFTER_S",
    "RETRY_DELAY_S",
    "Attempt",
    "DeviceProfile",
    "SimPolicy",
    "Timeline",
    "next_wake",
    "plan_subtask",
    "state_at",
]

RETRY_DELAY_S = 60.0  # pause between a failed attempt and its platform retry
OFFLINE_FAIL_AFTER_S = 300.0  # executeType "now" gives up on an unreachable device after this

_SALT_DURATION = 11
_SALT_OUTCOME = 12
_SALT_FAIL_POINT = 13
_SALT_DETAIL = 14

FAIL_DETAILS = (
    "download failed: connection reset by device",
    "package verification failed on device",
    "device reported upgrade failure (error 7)",
    "device rebooted during update and rolled back",
)


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """What the simulator knows about a device when a task is created (a snapshot)."""

    index: int
    connectivity: Connectivity
    wake_minutes: int
    wake_phase: float  # 0..1 of the wake period
    failure_rate: float
    duration_s: tuple[float, float]


@dataclass(frozen=True, slots=True)
class SimPolicy:
    """The task policy in simulator terms (epoch seconds)."""

    execute_type: str = "now"  # now | device_online | custom
    start: float | None = None
    end: float | None = None
    retry_times: int = 0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One execution attempt: downloading from ``start``, updating from ``updating``."""

    start: float
    downloaded: float
    end: float
    ok: bool  # False: failed or cut off by the window end


@dataclass(frozen=True, slots=True)
class Timeline:
    """A subtask's whole life. ``final_status`` None means it waits forever."""

    attempts: tuple[Attempt, ...]
    final_status: str | None  # success | fail | stop | None
    final_time: float | None
    detail: str


def next_wake(profile: DeviceProfile, t: float) -> float | None:
    """The first instant >= t at which the device is reachable (None: never)."""
    if profile.connectivity is Connectivity.ALWAYS:
        return t
    if profile.connectivity is Connectivity.OFFLINE or profile.wake_minutes <= 0:
        return None
    period = profile.wake_minutes * 60.0
    phase = profile.wake_phase * period
    k = math.ceil((t - phase) / period)
    return phase + k * period


def plan_subtask(
    *, seed: int, op_seq: int, profile: DeviceProfile, policy: SimPolicy, created: float
) -> Timeline:
    """Draw the timeline of one subtask from the seed (pure)."""
    t = created
    if policy.execute_type == "custom" and policy.start is not None:
        t = max(t, policy.start)
    end_window = policy.end if policy.execute_type == "custom" else None
    attempts: list[Attempt] = []
    for k in range(policy.retry_times + 1):
        t0 = next_wake(profile, t)
        if t0 is None:
            if end_window is not None:
                return Timeline(tuple(attempts), "stop", end_window, "device did not come online")
            if policy.execute_type == "now" and not attempts:
                return Timeline((), "fail", created + OFFLINE_FAIL_AFTER_S, "device is offline")
            if attempts:  # a retry that can never run: the last failure stands
                return Timeline(
                    tuple(attempts), "fail", attempts[-1].end, _detail(seed, op_seq, profile, k)
                )
            return Timeline((), None, None, "waiting for the device to come online")
        if end_window is not None and t0 >= end_window:
            return Timeline(tuple(attempts), "stop", end_window, "task window ended")
        lo, hi = profile.duration_s
        dur = lo + (hi - lo) * hash_u(seed, op_seq, profile.index, k, _SALT_DURATION)
        fails = hash_u(seed, op_seq, profile.index, k, _SALT_OUTCOME) < profile.failure_rate
        if fails:
            point = 0.1 + 0.9 * hash_u(seed, op_seq, profile.index, k, _SALT_FAIL_POINT)
            t_end = t0 + dur * point
        else:
            t_end = t0 + dur
        downloaded = t0 + (t_end - t0) * 0.6
        if end_window is not None and t_end > end_window:
            attempts.append(Attempt(t0, min(downloaded, end_window), end_window, False))
            return Timeline(tuple(attempts), "stop", end_window, "task window ended")
        attempts.append(Attempt(t0, downloaded, t_end, not fails))
        if not fails:
            return Timeline(tuple(attempts), "success", t_end, "upgrade succeeded")
        t = t_end + RETRY_DELAY_S
    return Timeline(
        tuple(attempts),
        "fail",
        attempts[-1].end,
        _detail(seed, op_seq, profile, policy.retry_times),
    )


def _detail(seed: int, op_seq: int, profile: DeviceProfile, k: int) -> str:
    u = hash_u(seed, op_seq, profile.index, k, _SALT_DETAIL)
    return FAIL_DETAILS[int(u * len(FAIL_DETAILS))]


def state_at(timeline: Timeline, now: float) -> str:
    """The subtask status at ``now``: wait, processing, success, fail or stop."""
    if timeline.final_time is not None and now >= timeline.final_time:
        assert timeline.final_status is not None
        return timeline.final_status
    if timeline.attempts and now >= timeline.attempts[0].start:
        return "processing"
    return "wait"


def started_at(timeline: Timeline, now: float) -> float | None:
    """When the first attempt started, if it has by ``now``."""
    if timeline.attempts and timeline.attempts[0].start <= now:
        return timeline.attempts[0].start
    return None

"""Property tests of the device model: same seed, same outcome; states only move forward."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwave.sim.behaviour import (
    OFFLINE_FAIL_AFTER_S,
    DeviceProfile,
    SimPolicy,
    next_wake,
    plan_subtask,
    state_at,
)
from fleetwave.sim.fleet import Connectivity

T0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z

profiles = st.builds(
    DeviceProfile,
    index=st.integers(0, 10**6),
    connectivity=st.sampled_from(list(Connectivity)),
    wake_minutes=st.integers(1, 24 * 60),
    wake_phase=st.floats(0, 1, exclude_max=True),
    failure_rate=st.floats(0, 1),
    duration_s=st.tuples(st.floats(10, 600), st.floats(0, 3000)).map(lambda t: (t[0], t[0] + t[1])),
)


@st.composite
def policies(draw: st.DrawFn) -> SimPolicy:
    kind = draw(st.sampled_from(["now", "device_online", "custom"]))
    retries = draw(st.integers(0, 5))
    if kind != "custom":
        return SimPolicy(kind, retry_times=retries)
    start = T0 + draw(st.floats(0, 86400))
    end = start + draw(st.floats(300, 86400))
    return SimPolicy("custom", start, end, retries)


ORDER = {"wait": 0, "processing": 1, "success": 2, "fail": 2, "stop": 2}


@settings(deadline=None)  # no timing asserts: CI machines are shared
@given(
    seed=st.integers(0, 2**32),
    op=st.integers(1, 10**6),
    profile=profiles,
    policy=policies(),
    created=st.floats(T0, T0 + 3600),
)
def test_same_inputs_same_timeline(
    seed: int, op: int, profile: DeviceProfile, policy: SimPolicy, created: float
) -> None:
    a = plan_subtask(seed=seed, op_seq=op, profile=profile, policy=policy, created=created)
    b = plan_subtask(seed=seed, op_seq=op, profile=profile, policy=policy, created=created)
    assert a == b


@settings(deadline=None)  # no timing asserts: CI machines are shared
@given(
    seed=st.integers(0, 2**32),
    profile=profiles,
    policy=policies(),
    created=st.floats(T0, T0 + 3600),
)
def test_timeline_invariants(
    seed: int, profile: DeviceProfile, policy: SimPolicy, created: float
) -> None:
    tl = plan_subtask(seed=seed, op_seq=1, profile=profile, policy=policy, created=created)
    assert len(tl.attempts) <= policy.retry_times + 1
    for att in tl.attempts:
        assert created <= att.start <= att.downloaded <= att.end
        if policy.execute_type == "custom":
            assert policy.start is not None and policy.end is not None
            assert policy.start <= att.start and att.end <= policy.end
    for a, b in zip(tl.attempts, tl.attempts[1:], strict=False):
        assert not a.ok and a.end < b.start  # only failures are retried, after a pause
    if tl.final_status == "success":
        assert tl.attempts[-1].ok
    if tl.final_status == "stop":
        assert policy.execute_type == "custom" and tl.final_time == policy.end
    if tl.final_status is None:
        assert policy.execute_type == "device_online" and not tl.attempts
    if profile.failure_rate == 0.0 and tl.attempts:
        assert tl.final_status in ("success", "stop")
    # states only move forward in time
    times = sorted(
        {
            created,
            *(t for a in tl.attempts for t in (a.start, a.downloaded, a.end)),
            *([tl.final_time] if tl.final_time else []),
            created + 10**7,
        }
    )
    ranks = [ORDER[state_at(tl, t)] for t in times]
    assert ranks == sorted(ranks)
    assert state_at(tl, created + 10**7) == (tl.final_status or "wait")


@settings(deadline=None)  # no timing asserts: CI machines are shared
@given(profile=profiles, retries=st.integers(0, 5))
def test_certain_failure_uses_every_retry(profile: DeviceProfile, retries: int) -> None:
    p = DeviceProfile(profile.index, Connectivity.ALWAYS, 0, 0.0, 1.0, profile.duration_s)
    tl = plan_subtask(
        seed=1, op_seq=1, profile=p, policy=SimPolicy("now", retry_times=retries), created=T0
    )
    assert tl.final_status == "fail" and len(tl.attempts) == retries + 1
    assert tl.attempts[0].start == T0


@settings(deadline=None)  # no timing asserts: CI machines are shared
@given(profile=profiles)
def test_offline_devices(profile: DeviceProfile) -> None:
    p = DeviceProfile(profile.index, Connectivity.OFFLINE, 0, 0.0, 0.0, profile.duration_s)
    now = plan_subtask(seed=1, op_seq=1, profile=p, policy=SimPolicy("now"), created=T0)
    assert (now.final_status, now.final_time) == ("fail", T0 + OFFLINE_FAIL_AFTER_S)
    online = plan_subtask(
        seed=1, op_seq=1, profile=p, policy=SimPolicy("device_online"), created=T0
    )
    assert online.final_status is None and state_at(online, T0 + 10**6) == "wait"


@settings(deadline=None)  # no timing asserts: CI machines are shared
@given(profile=profiles, t=st.floats(T0, T0 + 10**6))
def test_sleepers_start_at_a_wake(profile: DeviceProfile, t: float) -> None:
    p = DeviceProfile(
        profile.index,
        Connectivity.SLEEPER,
        profile.wake_minutes,
        profile.wake_phase,
        0.0,
        profile.duration_s,
    )
    w = next_wake(p, t)
    assert w is not None
    period = p.wake_minutes * 60.0
    assert t <= w < t + period + 1e-6
    assert (
        abs(((w - p.wake_phase * period) / period) - round((w - p.wake_phase * period) / period))
        < 1e-6
    )
    tl = plan_subtask(seed=3, op_seq=2, profile=p, policy=SimPolicy("device_online"), created=t)
    assert tl.attempts[0].start == w and tl.final_status == "success"

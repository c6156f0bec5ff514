"""Waves and chunks: property tests (hypothesis) and the stratified canary."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwave.plan import WaveTarget, chunk, plan_waves, stratified_order, wave_sizes

FAST = settings(max_examples=60, deadline=None)


@st.composite
def wave_lists(draw: st.DrawFn) -> list[WaveTarget]:
    first_by_count = draw(st.booleans())
    pcts = sorted(set(draw(st.lists(st.integers(1, 99), max_size=4))))
    waves: list[WaveTarget] = []
    if first_by_count:
        waves.append(WaveTarget("canary", count=draw(st.integers(1, 50))))
    waves += [WaveTarget(f"w{p}", percent=p) for p in pcts]
    waves.append(WaveTarget("last", percent=100))
    return waves


devices_st = st.lists(
    st.text(alphabet="abcdef0123456789-", min_size=1, max_size=8), unique=True, max_size=600
)


@FAST
@given(devices=devices_st, waves=wave_lists(), size=st.integers(1, 300), seed=st.text(max_size=5))
def test_every_device_in_exactly_one_chunk(devices, waves, size, seed) -> None:
    plan = plan_waves(devices, waves, seed=seed, max_devices_per_task=size)
    flat = [d for c in plan.iter_chunks() for d in c.device_ids]
    assert sorted(flat) == sorted(devices)
    assert all(1 <= len(c) <= size for c in plan.iter_chunks())
    assert len({c.key for c in plan.iter_chunks()}) == plan.chunk_count


@FAST
@given(devices=devices_st, waves=wave_lists(), seed=st.text(max_size=5))
def test_wave_sizes_as_declared(devices, waves, seed) -> None:
    plan = plan_waves(devices, waves, seed=seed, max_devices_per_task=256)
    n = len(devices)
    done = 0
    for w, target in zip(plan.waves, waves, strict=True):
        if target.count is not None:
            want = min(target.count, n)
        else:
            want = math.ceil(n * target.percent / 100 - 1e-9)
        want = max(want, done)
        assert w.device_count == want - done
        done = want
    assert plan.device_count == n


@FAST
@given(devices=devices_st, waves=wave_lists(), seed=st.text(max_size=5), data=st.data())
def test_same_inputs_same_plan_whatever_the_order(devices, waves, seed, data) -> None:
    buckets = [f"g{hash(d) % 3}" for d in devices]
    a = plan_waves(devices, waves, seed=seed, max_devices_per_task=50, buckets=buckets)
    perm = data.draw(st.permutations(list(range(len(devices)))))
    b = plan_waves(
        [devices[i] for i in perm],
        waves,
        seed=seed,
        max_devices_per_task=50,
        buckets=[buckets[i] for i in perm],
    )
    assert a == b


def test_seed_changes_the_order() -> None:
    devices = [f"d{i}" for i in range(200)]
    assert stratified_order(devices, seed="x:") != stratified_order(devices, seed="x:1")
    assert stratified_order(devices, seed="x:") == stratified_order(devices, seed="x:")


def test_canary_spreads_over_buckets() -> None:
    # 1000 devices of group A, 50 of B, 10 of C: a canary of 9 must touch all three
    devices, buckets = [], []
    for g, n in (("A|m1", 1000), ("B|m2", 50), ("C|m3", 10)):
        devices += [f"{g[0]}{i}" for i in range(n)]
        buckets += [g] * n
    plan = plan_waves(
        devices,
        [WaveTarget("canary", count=9), WaveTarget("rest", percent=100)],
        seed="c",
        max_devices_per_task=256,
        buckets=buckets,
    )
    canary = plan.waves[0].device_ids
    assert Counter(d[0] for d in canary) == {"A": 3, "B": 3, "C": 3}
    # and not simply the first IDs of group A
    assert sorted(d for d in canary if d[0] == "A") != ["A0", "A1", "A2"]


def test_wave_sizes_rounding_and_empty_waves() -> None:
    waves = [WaveTarget("c", count=5), WaveTarget("a", percent=1), WaveTarget("z", percent=100)]
    assert wave_sizes(100, waves) == [5, 0, 95]  # 1 % of 100 is below the canary: empty
    assert wave_sizes(3, waves) == [3, 0, 0]
    assert wave_sizes(0, waves) == [0, 0, 0]
    # 12.5 % of 8 is exactly 1; floats must not round 1.0000000002 up to 2
    assert wave_sizes(8, [WaveTarget("a", percent=12.5), WaveTarget("b", percent=100)]) == [1, 7]
    assert wave_sizes(1000, [WaveTarget("a", percent=0.1), WaveTarget("z", percent=100)]) == [
        1,
        999,
    ]


def test_chunk_limits_and_validation() -> None:
    chunks = chunk([str(i) for i in range(513)], 256, wave_index=2)
    assert [len(c) for c in chunks] == [256, 256, 1]
    assert chunks[2].key == "w2-c2"
    with pytest.raises(ValueError, match="chunk size"):
        chunk(["a"], 0)
    with pytest.raises(ValueError, match="unique"):
        plan_waves(["a", "a"], [WaveTarget("z", percent=100)], seed="", max_devices_per_task=1)
    with pytest.raises(ValueError, match="exactly one of count or percent"):
        WaveTarget("x")


def test_million_devices() -> None:
    n = 1_000_000
    devices = [f"dev-{i:08d}" for i in range(n)]
    buckets = [f"g{i % 8}" for i in range(n)]
    plan = plan_waves(
        devices,
        [WaveTarget("c", count=100), WaveTarget("a", percent=10), WaveTarget("z", percent=100)],
        seed="big:",
        max_devices_per_task=256,
        buckets=buckets,
    )
    assert [w.device_count for w in plan.waves] == [100, 99_900, 900_000]
    assert plan.chunk_count == 1 + 391 + 3516

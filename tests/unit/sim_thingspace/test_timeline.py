"""The ThingSpace simulator's pure rules: IMEIs, hour windows, device plans."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwave.sim.fleet import Connectivity, Fleet
from fleetwave.sim.thingspace.catalog import Catalog, luhn_digit
from fleetwave.sim.thingspace.state import FotaError, parse_windows
from fleetwave.sim.thingspace.timeline import (
    DAY_S,
    REASON_NOT_REACHED,
    REASON_WINDOW_MISSED,
    DeviceTraits,
    in_window,
    next_in_window,
    plan_device,
)

T0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z


def test_imeis_are_luhn_valid_and_map_back() -> None:
    cat = Catalog(Fleet(1500, 5, 1))
    for index in (0, 1, 777, 1499):
        imei = cat.imei(index)
        assert len(imei) == 15 and imei.isdigit()
        assert luhn_digit(imei[:14]) == int(imei[14])
        assert cat.index_of(imei) == index
    assert luhn_digit("49015420323751") == 8  # a published IMEI example: 490154203237518
    last = cat.imei(1499)
    assert cat.index_of(last[:14] + str((int(last[14]) + 1) % 10)) is None  # bad check digit
    assert cat.index_of(cat.imei(1499)[:8] + "001500" + "0") is None  # beyond the fleet


def test_next_in_window_moves_to_the_next_window_start() -> None:
    windows = [(1, 3), (22, 24)]
    assert next_in_window(T0 + 3600 * 1.5, windows) == T0 + 3600 * 1.5  # inside
    assert next_in_window(T0 + 3600 * 3, windows) == T0 + 3600 * 22  # endTime is exclusive
    assert next_in_window(T0 + 3600 * 23.5, windows) == T0 + 3600 * 23.5
    assert next_in_window(T0 + DAY_S - 1, [(1, 3)]) == T0 + DAY_S + 3600
    assert next_in_window(T0 + 5, []) == T0 + 5  # no window: any hour


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"startTime": 24, "endTime": 24}], "startTime must be an hour 0-23"),
        ([{"startTime": 0, "endTime": 0}], "endTime must be an hour 1-24"),
        ([{"startTime": 5, "endTime": 5}], "cannot cross midnight"),
        ([{"startTime": True, "endTime": 5}], "startTime must be an hour 0-23"),
        ({"startTime": 1}, "must be a list"),
    ],
)
def test_window_validation(raw: object, message: str) -> None:
    with pytest.raises(FotaError) as err:
        parse_windows(raw, "downloadTimeWindowList")
    assert err.value.code == "SoftwareManagementService.INPUT_INVALID.TimeWindow"
    assert message in err.value.message


def always(index: int, failure_rate: float = 0.0) -> DeviceTraits:
    return DeviceTraits(index, Connectivity.ALWAYS, 0, 0.0, (60.0, 600.0), failure_rate)


window = st.tuples(st.integers(0, 23), st.integers(1, 24)).filter(lambda w: w[0] < w[1])


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(0, 10_000),
    ready_h=st.floats(0, 47),
    download=st.lists(window, max_size=3),
    install=st.lists(window, max_size=3),
    sleeper=st.booleans(),
)
def test_plans_start_in_a_download_window_and_install_in_an_install_window(
    index: int,
    ready_h: float,
    download: list[tuple[int, int]],
    install: list[tuple[int, int]],
    sleeper: bool,
) -> None:
    traits = (
        DeviceTraits(index, Connectivity.SLEEPER, 30, 0.37, (300.0, 1800.0), 0.0)
        if sleeper
        else always(index)
    )
    ready, end = T0 + ready_h * 3600, T0 + 3 * DAY_S
    plan = plan_device(
        traits,
        seed=1,
        seq=1,
        ready=ready,
        end=end,
        download_windows=download,
        install_windows=install,
    )
    assert plan.done is not None and plan.done <= end + 1800
    if plan.started is None:
        assert plan.reason == REASON_NOT_REACHED and plan.done == end
        return
    assert ready <= plan.started < end and in_window(plan.started, download)
    if plan.installing is None:
        assert not plan.success
        assert plan.reason == REASON_WINDOW_MISSED or plan.done < plan.started + 1800
    else:
        assert plan.started < plan.installing < end and in_window(plan.installing, install)
        assert plan.success and plan.done > plan.installing


def test_offline_devices_fail_at_the_end_and_never_without_one() -> None:
    offline = DeviceTraits(3, Connectivity.OFFLINE, 0, 0.0, (60.0, 60.0), 0.0)
    assert plan_device(offline, seed=1, seq=1, ready=T0, end=T0 + DAY_S).reason == (
        REASON_NOT_REACHED
    )
    forever = plan_device(offline, seed=1, seq=1, ready=T0, end=None)
    assert forever.done is None and forever.started is None


def test_failure_rate_draws_are_seeded() -> None:
    plans = [plan_device(always(i, 0.5), seed=7, seq=3, ready=T0, end=None) for i in range(200)]
    again = [plan_device(always(i, 0.5), seed=7, seq=3, ready=T0, end=None) for i in range(200)]
    assert plans == again
    failed = sum(not p.success for p in plans)
    assert 60 <= failed <= 140  # about half
    other_seed = [
        plan_device(always(i, 0.5), seed=8, seq=3, ready=T0, end=None) for i in range(200)
    ]
    assert other_seed != plans

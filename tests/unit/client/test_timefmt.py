"""The IoDM wire time format: parsing, formatting, round trips and clear errors."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetwave.platforms.iodm import format_iodm_time, parse_iodm_time


def test_parses_the_documented_example_to_utc() -> None:
    parsed = parse_iodm_time("20151212T121212Z")
    assert parsed == pendulum.datetime(2015, 12, 12, 12, 12, 12, tz="UTC")
    assert parsed is not None and parsed.timezone_name == "UTC"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_blank_is_none(value: str | None) -> None:
    assert parse_iodm_time(value) is None


def test_iso_is_accepted_and_converted_to_utc() -> None:
    assert parse_iodm_time("2026-03-29T03:30:00+02:00") == pendulum.datetime(
        2026, 3, 29, 1, 30, tz="UTC"
    )


@pytest.mark.parametrize("value", ["2017-08-1x", "20151312T121212Z", "tomorrow"])
def test_garbage_names_the_value_and_the_format(value: str) -> None:
    with pytest.raises(ValueError, match=r"yyyyMMdd'T'HHmmss'Z'") as caught:
        parse_iodm_time(value)
    assert repr(value) in str(caught.value)


def test_formats_in_utc_across_a_dst_change() -> None:
    berlin = pendulum.datetime(2026, 3, 29, 3, 0, tz="Europe/Berlin")  # just after the switch
    assert format_iodm_time(berlin) == "20260329T010000Z"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_iodm_time(dt.datetime(2026, 1, 1))


@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 2),
        max_value=dt.datetime(9998, 12, 31),
        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30))]),
    )
)
def test_round_trip_keeps_the_instant_to_the_second(value: dt.datetime) -> None:
    back = parse_iodm_time(format_iodm_time(value))
    assert back == value.replace(microsecond=0)

"""The typed model: durations, times, cross-field rules when built in code, conversions."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fleetwave.platforms.base import ExecuteType
from fleetwave.spec import (
    CampaignSpec,
    ExecuteMode,
    WindowSpec,
    campaign_json_schema,
    format_duration,
    parse_duration,
)
from tests.fakes import make_spec, spec_dict


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1d2h3m4s", 93784)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "30", "1.5h", "2 hours", "h", "-1m", 30, True, None])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(bad)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**7))
def test_format_duration_round_trips(seconds: int) -> None:
    td = dt.timedelta(seconds=seconds)
    assert parse_duration(format_duration(td)) == td


def test_window_times_and_length() -> None:
    w = WindowSpec.model_validate({"start": "22:00", "end": "05:00", "days": "weekdays"})
    assert w.length == dt.timedelta(hours=7)
    assert [d.iso for d in w.days] == [1, 2, 3, 4, 5]
    full = WindowSpec.model_validate({"start": "00:00", "end": "24:00"})
    assert full.length == dt.timedelta(hours=24)
    assert len(full.days) == 7
    long_names = WindowSpec.model_validate({"start": "01:00", "end": "02:00", "days": ["Monday"]})
    assert [d.value for d in long_names.days] == ["mon"]
    # how short a window may be is the platform's business (capability_check)
    short = WindowSpec.model_validate({"start": "01:00", "end": "01:04"})
    assert short.length == dt.timedelta(minutes=4)


def test_rules_apply_when_built_in_code() -> None:
    with pytest.raises(ValidationError, match="percentages are cumulative"):
        make_spec(waves=[{"percent": 50}, {"percent": 20}, {"percent": 100}])
    with pytest.raises(ValidationError, match="rollback needs a rollback package"):
        make_spec(thresholds={"on_breach": "rollback"})


def test_defaults_and_helpers() -> None:
    spec = make_spec()
    assert (spec.platform.type, spec.platform.profile) == ("iodm", "default")
    assert spec.policy.max_devices_per_task is None  # the platform's largest task
    assert spec.policy.execute.execute_type is ExecuteType.NOW
    assert ExecuteMode.WINDOW.execute_type is ExecuteType.CUSTOM
    assert ExecuteMode.DEVICE_ONLINE.execute_type is ExecuteType.DEVICE_ONLINE
    assert [spec.wave_name(i) for i in range(3)] == ["canary", "wave-2", "wave-3"]
    assert [w.count for w in spec.wave_targets()] == [2, None, None]
    assert spec.wave_success_percent(1) == 90.0
    assert spec.shuffle_seed == "test-campaign:"
    assert make_spec(seed=3).shuffle_seed == "test-campaign:3"
    assert spec.schedule().is_open(__import__("pendulum").datetime(2026, 1, 1))
    assert spec.thresholds.failure_kinds[0].value == "fail"


def test_schedule_from_spec() -> None:
    spec = make_spec(
        windows={
            "timezone": "Europe/Berlin",
            "allowed": [{"days": ["sat"], "start": "10:00", "end": "12:00"}],
            "blackouts": [{"date": "2026-06-06"}, {"start": "2026-06-20", "end": "2026-06-21"}],
        }
    )
    s = spec.schedule()
    assert s.timezone == "Europe/Berlin"
    assert s.windows[0].days == frozenset({6})
    assert s.is_blackout(dt.date(2026, 6, 6)) and s.is_blackout(dt.date(2026, 6, 21))
    assert not s.is_blackout(dt.date(2026, 6, 13))


def test_frozen_and_no_extra() -> None:
    spec = make_spec()
    with pytest.raises(ValidationError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        CampaignSpec.model_validate(spec_dict(colour="blue"))


def test_json_schema() -> None:
    schema = campaign_json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False
    assert {"name", "kind", "package", "targets", "waves"} <= set(schema["required"])
    assert "waves" in schema["properties"]
    defs = schema["$defs"]
    assert defs["WaveSpec"]["properties"]["soak"]["type"] == "string"
    assert defs["WindowSpec"]["properties"]["start"]["pattern"]


def test_json_dump_round_trips() -> None:
    """The store keeps ``model_dump(mode="json")``; it must load back to the same spec."""
    from pathlib import Path

    from fleetwave.spec import load_spec

    for path in sorted((Path(__file__).resolve().parents[3] / "campaigns").glob("*.yaml")):
        spec = load_spec(path)
        dumped = spec.model_dump(mode="json")
        assert CampaignSpec.model_validate(dumped) == spec
    spec = make_spec(waves=[{"count": 1, "soak": "1h30m"}, {"percent": 100}])
    assert spec.model_dump(mode="json")["waves"][0]["soak"] == "1h30m"

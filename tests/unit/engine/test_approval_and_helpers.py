"""Unit tests: approval input and appointments, stored-spec windows, clock and policy helpers."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pendulum
import pytest
from pydantic import ValidationError

from fleetwave.engine.approval import (
    AppointmentError,
    DecisionError,
    StandingDecision,
    check_appointment,
    check_wave_decision,
)
from fleetwave.engine.control import schedule_from_snapshot
from fleetwave.engine.submit import policy_from_json, policy_to_json
from fleetwave.plan.windows import WeeklyWindow, WindowSchedule
from fleetwave.platforms.base import ExecuteType, TaskPolicy
from fleetwave.sim.linked_clock import clock_from_option, parse_sim_time
from fleetwave.spec import load_spec_text
from fleetwave.store import ApprovalDecision, WaveStatus
from flows.approval import ApprovalInput

NIGHTLY = WindowSchedule(
    "Europe/Berlin", (WeeklyWindow(frozenset(range(1, 8)), dt.time(22, 0), dt.time(4, 0)),)
)


def test_approval_input_checks_types_only() -> None:
    ok = ApprovalInput(decision="approve", start="2026-01-05T21:00:00Z", end="2026-01-05T23:00Z")
    assert ok.start is not None and ok.start.tzinfo is not None
    # the appointment's rules are the engine's (check_appointment): an answer the form
    # accepted is never lost to a ValidationError when the run reads it
    zero = ApprovalInput(decision="approve", start="2026-01-05T21:00Z", end="2026-01-05T21:00Z")
    assert zero.start == zero.end
    assert ApprovalInput(decision="approve", start="2026-01-05T21:00Z").end is None
    with pytest.raises(ValidationError):
        ApprovalInput(decision="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ApprovalInput(decision="approve", start="tomorrow")  # type: ignore[arg-type]


def test_approval_form_fields_are_plain_date_times() -> None:
    """The Prefect UI renders ``anyOf [date-time, null]`` as a type menu whose null branch
    says 'Property is type "None"'; a plain date-time field gets a date and time picker."""
    props = ApprovalInput.model_json_schema()["properties"]
    for field in ("start", "end"):
        assert {k: props[field][k] for k in ("type", "format")} == {
            "type": "string",
            "format": "date-time",
        }
        assert "anyOf" not in props[field] and "default" not in props[field]
    assert props["decision"]["enum"] == ["approve", "reject"]


def test_a_refused_answer_leads_the_form_description() -> None:
    from fleetwave.engine.context import ApprovalRequest
    from flows.approval import describe_approval, input_problem

    req = ApprovalRequest("meters", 1, "wave-2", 55, "wave requires approval")
    assert "refused" not in describe_approval(req, waves=3, windows=None)
    again = describe_approval(
        dataclasses.replace(req, problem="the appointment lasts 30 minutes", attempt=1),
        waves=3,
        windows=None,
    )
    assert again.startswith(
        "**Your last answer was refused:** the appointment lasts 30 minutes. Answer again."
    )
    assert describe_approval(req, waves=3, windows=None) in again
    assert (
        input_problem([{"loc": ("start",), "msg": "Input should be a valid datetime"}])
        == "start: Input should be a valid datetime"
    )


#: The campaign clock in the appointment tests (a Monday noon, before the windows below).
NOW = pendulum.datetime(2026, 1, 5, 12)


def test_check_appointment() -> None:
    assert check_appointment(NIGHTLY, None, None, now=NOW) is None
    # 22:30-01:30 Berlin in winter = 21:30-00:30 UTC, inside one window
    a, b = check_appointment(
        NIGHTLY,
        pendulum.datetime(2026, 1, 5, 21, 30),
        pendulum.datetime(2026, 1, 6, 0, 30),
        now=NOW,
    ) or (None, None)
    assert a == pendulum.datetime(2026, 1, 5, 21, 30) and b is not None
    with pytest.raises(AppointmentError, match="at least one hour"):
        check_appointment(
            NIGHTLY,
            pendulum.datetime(2026, 1, 5, 21, 30),
            pendulum.datetime(2026, 1, 5, 22),
            now=NOW,
        )
    with pytest.raises(AppointmentError, match="not inside one allowed window") as err:
        check_appointment(
            NIGHTLY, pendulum.datetime(2026, 1, 5, 13), pendulum.datetime(2026, 1, 5, 15), now=NOW
        )
    assert "22:00" in str(err.value)  # suggests real windows
    with pytest.raises(AppointmentError, match="both"):
        check_appointment(NIGHTLY, pendulum.datetime(2026, 1, 5, 12), None, now=NOW)


def test_appointment_must_lie_in_the_future() -> None:
    always = WindowSchedule()
    # the case: a 2020 appointment, on any schedule, is refused
    with pytest.raises(AppointmentError, match="not in the future") as err:
        check_appointment(
            always, pendulum.datetime(2020, 1, 1), pendulum.datetime(2020, 1, 1, 2), now=NOW
        )
    assert "2020-01-01T00:00:00Z" in str(err.value) and "now 2026-01-05T12:00:00Z" in str(err.value)
    assert "inside" not in str(err.value)  # no weekly windows: none to suggest
    # inside last night's window: a real window, but past
    with pytest.raises(AppointmentError, match="not in the future") as err:
        check_appointment(
            NIGHTLY, pendulum.datetime(2026, 1, 4, 22), pendulum.datetime(2026, 1, 5, 1), now=NOW
        )
    assert "22:00" in str(err.value)  # names the next windows to pick from
    # starting exactly now is not in the future; one that started and runs on is refused too
    with pytest.raises(AppointmentError, match="not in the future"):
        check_appointment(always, NOW, NOW.add(hours=2), now=NOW)
    with pytest.raises(AppointmentError, match="not in the future"):
        check_appointment(always, NOW.subtract(minutes=5), NOW.add(hours=2), now=NOW)
    assert check_appointment(always, NOW.add(minutes=1), NOW.add(hours=2), now=NOW) == (
        NOW.add(minutes=1),
        NOW.add(hours=2),
    )


def test_appointment_ending_before_it_starts_says_so() -> None:
    with pytest.raises(AppointmentError) as err:
        check_appointment(
            WindowSchedule(),
            pendulum.datetime(2026, 1, 6, 3),
            pendulum.datetime(2026, 1, 6, 0),
            now=NOW,
        )
    text = str(err.value)
    assert "ends (2026-01-06T00:00:00Z) before it starts (2026-01-06T03:00:00Z)" in text
    assert "-180" not in text and "minutes" not in text


def test_zero_length_appointment_says_it_lasts_0_minutes() -> None:
    at = NOW.add(hours=1)
    with pytest.raises(AppointmentError) as err:
        check_appointment(WindowSchedule(), at, at, now=NOW)
    text = str(err.value)
    assert (
        f"the appointment {at.to_iso8601_string()} .. {at.to_iso8601_string()} lasts 0 minutes"
        in text
    )
    assert "before it starts" not in text and "at least one hour" in text


def test_check_wave_decision() -> None:
    standing = StandingDecision(
        ApprovalDecision.APPROVED, "cli:ann", pendulum.datetime(2026, 1, 5, 9), None
    )
    for status in (WaveStatus.PENDING, WaveStatus.WAITING_APPROVAL):
        assert (
            check_wave_decision(campaign="c", wave=1, status=status, standing=None, replace=False)
            is None
        )
    for status in (WaveStatus.SUCCEEDED, WaveStatus.SKIPPED, WaveStatus.FAILED):
        with pytest.raises(DecisionError, match=f"has finished \\({status.value}\\)"):
            check_wave_decision(campaign="c", wave=1, status=status, standing=None, replace=True)
    with pytest.raises(DecisionError, match="already running"):
        check_wave_decision(
            campaign="c", wave=0, status=WaveStatus.RUNNING, standing=None, replace=False
        )
    with pytest.raises(DecisionError, match="fleetwave resume c"):
        check_wave_decision(
            campaign="c", wave=0, status=WaveStatus.HALTED, standing=None, replace=False
        )
    # a second decision is refused unless it replaces the first, and then it says so
    with pytest.raises(DecisionError, match="already approved by cli:ann") as err:
        check_wave_decision(
            campaign="c", wave=1, status=WaveStatus.PENDING, standing=standing, replace=False
        )
    assert "--replace" in str(err.value)
    note = check_wave_decision(
        campaign="c", wave=1, status=WaveStatus.WAITING_APPROVAL, standing=standing, replace=True
    )
    assert note == "replaces the decision approved by cli:ann at 2026-01-05T09:00:00Z"


def test_schedule_from_stored_snapshot_matches_the_spec() -> None:
    spec = load_spec_text(
        """
name: snap
kind: firmware
package: {file_id: abc}
targets: {devices: [d1]}
waves: [{percent: 100}]
windows:
  timezone: Europe/Berlin
  allowed: [{days: weekdays, start: "22:00", end: "05:00"}]
  blackouts: [{date: 2026-12-24}, {start: 2026-12-30, end: 2027-01-01}]
"""
    )
    restored = schedule_from_snapshot(spec.model_dump(mode="json"))
    original = spec.schedule()
    t = pendulum.datetime(2026, 12, 20, tz="UTC")
    assert restored.upcoming(t, 8) == original.upcoming(t, 8)
    assert schedule_from_snapshot({"windows": None}).is_open(t)


def test_policy_json_round_trip() -> None:
    start = pendulum.datetime(2026, 1, 5, 21)
    p = TaskPolicy(ExecuteType.CUSTOM, start, start.add(hours=6), 3)
    assert policy_from_json(policy_to_json(p)) == p
    assert policy_from_json(policy_to_json(TaskPolicy())) == TaskPolicy()
    with_install = TaskPolicy(
        ExecuteType.CUSTOM,
        start,
        start.add(hours=3),
        3,
        install_start=start.add(hours=1),
        install_end=start.add(hours=4),
    )
    data = policy_to_json(with_install)
    assert data["install_start"] == "2026-01-05T22:00:00+00:00"
    assert policy_from_json(data) == with_install
    assert "install_start" not in policy_to_json(p)  # older chunks' JSON stays as it was


def test_parse_sim_time_and_clock_option() -> None:
    assert parse_sim_time({"now": "2026-01-05T00:00:00+00:00"}) == pendulum.datetime(2026, 1, 5)
    with pytest.raises(ValueError, match="no time"):
        parse_sim_time({"mode": "manual"})
    assert repr(clock_from_option("real")) == "RealClock()"
    sim = clock_from_option("sim", sim_url="http://127.0.0.1:9")
    assert "127.0.0.1:9" in repr(sim)
    with pytest.raises(Exception, match="--clock 'fast'"):
        clock_from_option("fast")


def test_pause_key_is_what_prefect_accepts() -> None:
    from fleetwave.engine.context import ApprovalRequest
    from flows.campaign import _pause_key

    key = _pause_key(
        ApprovalRequest("Meters_FW.2", 3, "wave-4", 10, "threshold breached", token="breach-17")
    )
    assert key == "approve-wave-3-breach-17-meters-fw-2"
    # asked again (a refused answer): a key this run has not paused with yet
    again = _pause_key(
        ApprovalRequest("Meters_FW.2", 3, "wave-4", 10, "threshold breached", attempt=1)
    )
    assert again == "approve-wave-3-gate-a1-0-meters-fw-2"


def test_utc_instant_is_the_one_to_utc_helper() -> None:
    from fleetwave.clock import utc_instant
    from fleetwave.engine.context import to_pendulum

    assert to_pendulum is utc_instant
    assert utc_instant(None) is None
    naive = utc_instant(dt.datetime(2026, 3, 29, 1, 30))
    assert naive.tzinfo is not None and naive.utcoffset() == dt.timedelta(0)
    assert naive.hour == 1
    berlin = utc_instant(dt.datetime(2026, 3, 29, 3, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))))
    assert isinstance(berlin, pendulum.DateTime) and berlin.hour == 1
    assert berlin.timezone_name == "UTC"

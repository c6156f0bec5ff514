"""Unit tests of the wave driver's rules in fleetwave.engine.decide (no Prefect, no database):
what a breach does, what follows a passed gate, whether an approval still counts, a wave's
next step by its status, and the thresholds' counting."""

from __future__ import annotations

import pendulum
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetwave.engine.decide import (
    Counts,
    Decision,
    Verdict,
    after_gate,
    approval_validity,
    breach_action,
    count_outcomes,
    tasks_to_cancel,
    wave_step,
)
from fleetwave.spec.model import BreachAction, FailureKind
from fleetwave.store.models import DeviceRunStatus, WaveStatus

D = DeviceRunStatus
W = WaveStatus
NOW = pendulum.datetime(2026, 3, 2, 10, tz="UTC")
TRIP = Decision("failure_threshold", Verdict.HALT, "failure rate 30.0% is above 20.0%", {})


# ---------------------------------------------------------------------------- breach


@pytest.mark.parametrize(
    ("on_breach", "has_rollback", "verdict"),
    [
        (BreachAction.HALT, True, Verdict.HALT),
        (BreachAction.HALT, False, Verdict.HALT),
        (BreachAction.PAUSE, True, Verdict.PAUSE),
        (BreachAction.PAUSE, False, Verdict.PAUSE),
        (BreachAction.ROLLBACK, True, Verdict.ROLLBACK),
        (BreachAction.ROLLBACK, False, Verdict.HALT),  # nothing to roll back with
    ],
)
def test_breach_action(on_breach: BreachAction, has_rollback: bool, verdict: Verdict) -> None:
    d = breach_action(2, TRIP, on_breach=on_breach, has_rollback_package=has_rollback)
    assert d.verdict is verdict
    assert d.inputs == {
        "wave": 2,
        "on_breach": on_breach.value,
        "rollback_package": has_rollback,
        "trip": "failure_threshold",
        "trip_verdict": "halt",
    }
    assert TRIP.reason in d.reason


def test_a_rollback_without_package_says_why_it_halts() -> None:
    d = breach_action(0, TRIP, on_breach=BreachAction.ROLLBACK, has_rollback_package=False)
    assert "no rollback package" in d.reason
    assert d.as_event()["verdict"] == "halt"


def test_a_failed_wave_gate_rolls_back_too() -> None:
    gate = Decision("wave_gate", Verdict.HALT, "wave 0 reached only 50.0% success", {})
    d = breach_action(0, gate, on_breach=BreachAction.ROLLBACK, has_rollback_package=True)
    assert d.verdict is Verdict.ROLLBACK and d.inputs["trip"] == "wave_gate"


# ---------------------------------------------------------------------------- after the gate


def test_after_gate_soaks_before_the_next_wave() -> None:
    d = after_gate(0, next_wave=1, soak_seconds=3600)
    assert d.verdict is Verdict.SOAK
    assert d.inputs == {"wave": 0, "next_wave": 1, "soak_seconds": 3600}


def test_after_gate_goes_on_without_a_soak() -> None:
    assert after_gate(0, next_wave=1, soak_seconds=0).verdict is Verdict.PROCEED


def test_the_last_wave_never_soaks() -> None:
    d = after_gate(3, next_wave=None, soak_seconds=3600)
    assert d.verdict is Verdict.DONE and "last wave" in d.reason


# ---------------------------------------------------------------------------- approval


def test_no_decision_is_never_valid() -> None:
    d = approval_validity(1, decided=False, breach_event=None, approval_event=None)
    assert d.verdict is Verdict.WAIT


def test_a_decision_without_a_breach_counts() -> None:
    d = approval_validity(1, decided=True, breach_event=None, approval_event=None)
    assert d.verdict is Verdict.PROCEED


@pytest.mark.parametrize(
    ("breach", "approval", "verdict"),
    [
        (10, 12, Verdict.PROCEED),  # approved after the breach
        (12, 10, Verdict.WAIT),  # the breach came after the approval: ask again
        (10, None, Verdict.WAIT),  # no approval event found
        (10, 10, Verdict.WAIT),
    ],
)
def test_event_order_decides_after_a_breach(
    breach: int, approval: int | None, verdict: Verdict
) -> None:
    d = approval_validity(4, decided=True, breach_event=breach, approval_event=approval)
    assert d.verdict is verdict
    assert d.inputs == {
        "wave": 4,
        "decided": True,
        "breach_event": breach,
        "approval_event": approval,
    }


# ---------------------------------------------------------------------------- wave step


def _step(status: WaveStatus, **kw: object) -> Decision:
    args: dict[str, object] = {"planned_size": 10, "approval_required": False, **kw}
    return wave_step(1, status, **args)  # type: ignore[arg-type]


def test_a_pending_wave_skips_asks_or_starts() -> None:
    assert _step(W.PENDING, planned_size=0, approval_required=True).verdict is Verdict.SKIP
    asks = _step(W.PENDING, approval_required=True)
    assert asks.verdict is Verdict.PAUSE and asks.reason == "approval required"
    starts = _step(W.PENDING)
    assert starts.verdict is Verdict.RUN and starts.reason == "started"


def test_waiting_halted_running() -> None:
    assert _step(W.WAITING_APPROVAL).verdict is Verdict.APPROVAL
    resumed = _step(W.HALTED)
    assert resumed.verdict is Verdict.RUN and resumed.reason == "resumed"
    assert _step(W.RUNNING).verdict is Verdict.CONTINUE


@pytest.mark.parametrize("status", [W.FAILED, W.REJECTED, W.CANCELLED])
def test_an_ended_wave_halts_the_campaign(status: WaveStatus) -> None:
    d = _step(status)
    assert d.verdict is Verdict.HALT and d.reason == f"wave 2 is {status.value}"


def test_a_soak_is_over_at_its_end_and_waits_before() -> None:
    until = NOW.add(hours=1)
    wait = _step(W.SOAKING, soak_until=until, now=NOW)
    assert wait.verdict is Verdict.WAIT
    assert wait.reason == f"wave 2 soaking until {until.to_iso8601_string()}"
    assert wait.inputs["soak_until"] == until.isoformat()
    assert _step(W.SOAKING, soak_until=until, now=until).verdict is Verdict.PROCEED
    assert _step(W.SOAKING, soak_until=None, now=NOW).verdict is Verdict.PROCEED


@pytest.mark.parametrize("status", [W.SUCCEEDED, W.SKIPPED])
def test_a_finished_wave_has_no_step(status: WaveStatus) -> None:
    with pytest.raises(ValueError, match="no next step"):
        _step(status)


def test_a_soak_needs_the_time() -> None:
    with pytest.raises(ValueError):
        _step(W.SOAKING, soak_until=NOW)


# ---------------------------------------------------------------------------- counting

ALL_KINDS = [FailureKind.FAIL, FailureKind.TIMEOUT, FailureKind.STOP]


def test_count_outcomes_by_status_and_kind() -> None:
    statuses = {
        D.PENDING: 3,
        D.SUCCEEDED: 10,
        D.ROLLING_BACK: 1,
        D.ROLLED_BACK: 2,
        D.ROLLBACK_FAILED: 1,
        D.FAILED: 4,
        D.TIMED_OUT: 2,
        D.SKIPPED: 5,
        D.CANCELLED: 1,
    }
    kinds = {"fail": 3, "stop": 1, "timeout": 2}
    c = count_outcomes(statuses, kinds, counted_kinds=[FailureKind.FAIL, FailureKind.TIMEOUT])
    assert c == Counts(
        total=29, succeeded=14, failed=3, timed_out=2, skipped=6, retrying=0, ignored=1
    )


def test_retrying_devices_are_not_final() -> None:
    c = count_outcomes(
        {D.FAILED: 4, D.SUCCEEDED: 6},
        {"fail": 4},
        counted_kinds=ALL_KINDS,
        retrying={"fail": 3, "timeout": 2},  # more than failed: never below zero
    )
    assert (c.failed, c.retrying, c.finished, c.unfinished) == (1, 5, 7, 3)


def test_a_timeout_not_counted_is_ignored() -> None:
    c = count_outcomes({D.TIMED_OUT: 2}, {"timeout": 2}, counted_kinds=["fail"])
    assert (c.timed_out, c.ignored, c.failures) == (0, 2, 0)


@given(
    kinds=st.dictionaries(
        st.sampled_from(["fail", "stop", "timeout", "unknown"]), st.integers(0, 50)
    ),
    retrying=st.dictionaries(st.sampled_from(["fail", "stop", "timeout"]), st.integers(0, 50)),
    counted=st.sets(st.sampled_from(ALL_KINDS)),
)
def test_every_final_failure_lands_in_one_bucket(
    kinds: dict[str, int], retrying: dict[str, int], counted: set[FailureKind]
) -> None:
    c = count_outcomes({D.FAILED: sum(kinds.values())}, kinds, counted_kinds=counted)
    assert c.failed + c.timed_out + c.ignored == sum(kinds.values())
    r = count_outcomes(
        {D.FAILED: sum(kinds.values())}, kinds, counted_kinds=counted, retrying=retrying
    )
    final = sum(max(0, n - retrying.get(k, 0)) for k, n in kinds.items())
    assert r.failed + r.timed_out + r.ignored == final
    assert r.retrying == sum(retrying.values())


# ---------------------------------------------------------------------------- cancel on halt


def test_a_halt_cancels_only_tasks_that_have_not_started() -> None:
    live = [
        ("never-read", None),
        ("all-pending", {"total": 3, "pending": 3, "running": 0, "succeeded": 0}),
        ("one-running", {"total": 3, "pending": 2, "running": 1}),
        ("one-done", {"total": 3, "pending": 2, "failed": 1}),
    ]
    d = tasks_to_cancel(can_cancel=True, tasks=live)
    assert d.verdict is Verdict.HALT and d.inputs["cancel"] == ["never-read", "all-pending"]
    assert "2 of 4" in d.reason
    started = tasks_to_cancel(can_cancel=True, tasks=live[2:])
    assert started.verdict is Verdict.CONTINUE and started.inputs["cancel"] == []
    cannot = tasks_to_cancel(can_cancel=False, tasks=live)
    assert cannot.verdict is Verdict.CONTINUE and cannot.inputs["cancel"] == []
    assert "cannot cancel" in cannot.reason

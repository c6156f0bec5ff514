"""Unit tests: outcomes as Prefect states, refused runs, and whether a run is active."""

from __future__ import annotations

import subprocess
import sys

import pendulum
import pytest
from prefect.client.schemas.objects import StateType

from fleetwave.cli.db import _status_text
from fleetwave.engine.lease import LeaseHeldError, default_holder, run_activity
from fleetwave.engine.outcome import Outcome, OutcomeKind
from fleetwave.errors import UserError
from flows.states import OUTCOME_STATES, campaign_result, error_state, outcome_state

NOW = pendulum.datetime(2026, 1, 5, 12)


@pytest.mark.parametrize(
    ("kind", "type_", "name"),
    [
        (OutcomeKind.COMPLETED, StateType.COMPLETED, "Completed"),
        (OutcomeKind.FAILED, StateType.FAILED, "Failed"),
        (OutcomeKind.HALTED, StateType.FAILED, "Halted"),
        (OutcomeKind.ROLLED_BACK, StateType.FAILED, "RolledBack"),
        (OutcomeKind.WAITING_WINDOW, StateType.COMPLETED, "AwaitingWindow"),
        (OutcomeKind.AWAITING_APPROVAL, StateType.COMPLETED, "AwaitingApproval"),
        (OutcomeKind.STOPPED, StateType.COMPLETED, "Stopped"),
    ],
)
async def test_each_outcome_has_its_named_state(
    kind: OutcomeKind, type_: StateType, name: str
) -> None:
    outcome = Outcome(kind, "meters", reason=f"because {kind.value}").as_dict()
    state = outcome_state(outcome)
    assert (state.type, state.name) == (type_, name)
    assert state.message == f"because {kind.value}"
    assert await campaign_result(state) == outcome  # the data survives, even when Failed


def test_every_outcome_kind_is_mapped_and_only_completed_is_plain_green() -> None:
    assert set(OUTCOME_STATES) == set(OutcomeKind)
    plain = [
        k for k, (t, n) in OUTCOME_STATES.items() if (t, n) == (StateType.COMPLETED, "Completed")
    ]
    assert plain == [OutcomeKind.COMPLETED]
    assert len({n for _, n in OUTCOME_STATES.values()}) == len(OutcomeKind)


async def test_refused_runs_end_cancelled_or_failed_and_raise_for_in_process_callers() -> None:
    held = LeaseHeldError("campaign 'm' is being advanced by flow run x", campaign="m")
    state = error_state(held, "campaign 'm' is already being advanced by flow run 'calm-owl'")
    assert (state.type, state.name) == (StateType.CANCELLED, "AlreadyRunning")
    assert state.message == "campaign 'm' is already being advanced by flow run 'calm-owl'"
    with pytest.raises(LeaseHeldError) as info:
        await campaign_result(state)
    assert info.value.exit_code == 6
    bad = error_state(UserError("campaigns/x.yaml: no such file"))
    assert (bad.type, bad.name, bad.message) == (
        StateType.FAILED,
        "Failed",
        "campaigns/x.yaml: no such file",
    )


def test_run_activity() -> None:
    gone = ("run_stopped", {"why": "stopped (CancelledError: a stop signal or the caller)"})
    none = run_activity(
        holder=None, expires_at=None, flow_run_id=None, now=NOW, last_end=(NOW, *gone)
    )
    assert not none.active
    assert none.text == (
        "no run is active; the last one ended at 2026-01-05T12:00:00Z "
        "(stopped (CancelledError: a stop signal or the caller))"
    )
    ended = run_activity(
        holder=None,
        expires_at=None,
        flow_run_id=None,
        now=NOW,
        last_end=(NOW, "run_ended", {"kind": "waiting_window", "reason": "window closed"}),
    )
    assert ended.text.endswith("(waiting window: window closed)")
    # a holder in this very process runs; a holder elsewhere runs while its lease lasts
    mine = run_activity(
        holder=default_holder(),
        expires_at=NOW.add(minutes=5),
        flow_run_id="fr-1",
        now=NOW,
        last_end=None,
    )
    assert mine.active and mine.text.startswith("flow run fr-1 (process ")
    elsewhere = "build-7/4026531836:4242:0:cafe0001"
    live = run_activity(
        holder=elsewhere, expires_at=NOW.add(minutes=5), flow_run_id=None, now=NOW, last_end=None
    )
    assert live.active and "process 4242 on build-7 is advancing it" in live.text
    lapsed = run_activity(
        holder=elsewhere,
        expires_at=NOW.subtract(minutes=1),
        flow_run_id=None,
        now=NOW,
        last_end=None,
    )
    assert not lapsed.active and "it stopped renewing it" in lapsed.text


def test_run_activity_of_a_dead_process_on_this_host() -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    holder = default_holder().split(":")
    holder[-3] = child.stdout.strip()  # HOST:PID:START:NONCE with the exited child's PID
    dead = run_activity(
        holder=":".join(holder),
        expires_at=NOW.add(minutes=5),
        flow_run_id=None,
        now=NOW,
        last_end=None,
    )
    assert not dead.active and "its process is gone" in dead.text


def test_status_column_says_no_run_is_active() -> None:
    idle = {"status": "running", "run": {"active": False, "text": "no run is active"}}
    busy = {"status": "running", "run": {"active": True, "text": "flow run x is advancing it"}}
    done = {"status": "completed", "run": None}
    assert [_status_text(c) for c in (idle, busy, done)] == [
        "running, no run active",
        "running",
        "completed",
    ]

"""Unit tests of the engine's pure decisions (fleetwave.engine.decide)."""

from __future__ import annotations

import pendulum
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetwave.engine.decide import (
    Counts,
    RetryCandidate,
    Verdict,
    backoff_seconds,
    chunk_capacity,
    classify_failure,
    evaluate_failure_threshold,
    evaluate_wave_gate,
    in_flight_counts,
    select_resubmissions,
    task_timed_out,
)
from fleetwave.platforms.base import DeviceOutcome
from fleetwave.spec.model import FailureKind


def test_threshold_waits_for_minimum_finished() -> None:
    d = evaluate_failure_threshold(
        Counts(total=100, succeeded=5, failed=2), max_failure_rate=0.1, min_finished=20
    )
    assert d.verdict is Verdict.WAIT
    assert d.inputs["finished"] == 7
    assert d.as_event()["verdict"] == "wait"


def test_threshold_trips_above_limit_and_not_at_it() -> None:
    at = Counts(total=100, succeeded=90, failed=10)
    assert evaluate_failure_threshold(at, max_failure_rate=0.1, min_finished=10).verdict is (
        Verdict.CONTINUE
    )
    above = Counts(total=100, succeeded=89, failed=8, timed_out=3)
    d = evaluate_failure_threshold(above, max_failure_rate=0.1, min_finished=10)
    assert d.verdict is Verdict.HALT
    assert "11.0%" in d.reason


def test_threshold_trips_early_when_failures_alone_exceed_scope() -> None:
    d = evaluate_failure_threshold(
        Counts(total=20, failed=5),
        max_failure_rate=0.2,
        min_finished=10,
        on_trip=Verdict.ROLLBACK,
    )
    assert d.verdict is Verdict.ROLLBACK


@given(
    succeeded=st.integers(0, 500),
    failed=st.integers(0, 500),
    rate=st.floats(0.0, 1.0),
    minimum=st.integers(0, 100),
)
def test_threshold_never_trips_within_limit(
    succeeded: int, failed: int, rate: float, minimum: int
) -> None:
    counts = Counts(total=10_000, succeeded=succeeded, failed=failed)
    d = evaluate_failure_threshold(counts, max_failure_rate=rate, min_finished=minimum)
    if d.verdict is Verdict.HALT:
        assert counts.failure_rate > rate
    if counts.finished >= minimum and counts.failure_rate > rate:
        assert d.verdict is Verdict.HALT


def test_wave_gate() -> None:
    running = Counts(total=10, succeeded=5)
    assert evaluate_wave_gate(0, running, success_threshold=0.9, next_wave=1).verdict is (
        Verdict.WAIT
    )
    ok = Counts(total=10, succeeded=9, failed=1)
    assert evaluate_wave_gate(0, ok, success_threshold=0.9, next_wave=1).verdict is (
        Verdict.PROCEED
    )
    bad = Counts(total=10, succeeded=8, failed=2)
    d = evaluate_wave_gate(0, bad, success_threshold=0.9, next_wave=1)
    assert d.verdict is Verdict.HALT
    assert d.inputs["success_rate"] == 0.8
    retrying = Counts(total=10, succeeded=9, failed=0, retrying=1)
    assert evaluate_wave_gate(0, retrying, success_threshold=0.5, next_wave=1).verdict is (
        Verdict.WAIT
    )
    skipped = Counts(total=10, succeeded=5, skipped=5)
    assert evaluate_wave_gate(0, skipped, success_threshold=1.0, next_wave=None).verdict is (
        Verdict.PROCEED
    )
    none_sent = evaluate_wave_gate(
        1, Counts(total=7, skipped=7), success_threshold=1.0, next_wave=None
    )
    assert none_sent.verdict is Verdict.PROCEED
    assert none_sent.reason.startswith("wave 2 sent none of its 7 devices: all skipped")
    assert "100" not in none_sent.reason


def test_task_timeout() -> None:
    t0 = pendulum.datetime(2026, 1, 5, tz="UTC")
    assert task_timed_out("op", t0, t0.add(minutes=59), 3600).verdict is Verdict.CONTINUE
    d = task_timed_out("op", t0, t0.add(minutes=61), 3600)
    assert d.verdict is Verdict.TIMED_OUT
    assert d.inputs["operation_id"] == "op"


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [
        (DeviceOutcome.TIMED_OUT, FailureKind.TIMEOUT),
        (DeviceOutcome.CANCELLED, FailureKind.STOP),
        (DeviceOutcome.FAILED, FailureKind.FAIL),
        (DeviceOutcome.SUCCEEDED, None),
        (DeviceOutcome.RUNNING, None),
        (DeviceOutcome.PENDING, None),
    ],
)
def test_classify_failure(outcome: DeviceOutcome, kind: FailureKind | None) -> None:
    assert classify_failure(outcome) is kind


def test_select_resubmissions() -> None:
    failed = [
        RetryCandidate("a", 1, "fail"),
        RetryCandidate("b", 3, "fail"),
        RetryCandidate("c", 1, "stop"),
        RetryCandidate("d", 2, "timeout"),
    ]
    again, final, d = select_resubmissions(failed, max_attempts={FailureKind.FAIL: 3, "timeout": 3})
    assert [c.device_id for c in again] == ["a", "d"]
    assert [c.device_id for c in final] == ["b", "c"]
    assert d.verdict is Verdict.RESUBMIT
    assert d.inputs["resubmit_by_kind"] == {"fail": 1, "timeout": 1}
    again, final, d = select_resubmissions(failed, max_attempts={})
    assert not again and len(final) == 4 and d.verdict is Verdict.CONTINUE


def test_backoff() -> None:
    assert backoff_seconds(1, base_seconds=60) == 0
    assert backoff_seconds(2, base_seconds=60) == 60
    assert backoff_seconds(4, base_seconds=60, factor=2) == 240


def test_chunk_capacity() -> None:
    sizes = [256, 256, 256, 10]
    assert (
        chunk_capacity(
            active_tasks=0, active_devices=0, max_tasks=None, max_devices=None, chunk_sizes=sizes
        )
        == 4
    )
    assert (
        chunk_capacity(
            active_tasks=1, active_devices=256, max_tasks=2, max_devices=None, chunk_sizes=sizes
        )
        == 1
    )
    assert (
        chunk_capacity(
            active_tasks=0, active_devices=0, max_tasks=None, max_devices=300, chunk_sizes=sizes
        )
        == 1
    )
    # a chunk larger than the device cap still goes when nothing is in flight
    assert (
        chunk_capacity(
            active_tasks=0, active_devices=0, max_tasks=None, max_devices=100, chunk_sizes=sizes
        )
        == 1
    )


def test_threshold_by_count() -> None:
    counts = Counts(total=1000, succeeded=100, failed=6)
    d = evaluate_failure_threshold(counts, max_failure_rate=None, min_finished=10, max_failures=5)
    assert d.verdict is Verdict.HALT and d.inputs["max_failures"] == 5
    d = evaluate_failure_threshold(counts, max_failure_rate=None, min_finished=10, max_failures=6)
    assert d.verdict is Verdict.CONTINUE


def test_in_flight_counts_take_only_what_the_store_lacks() -> None:
    figures = [
        # round 1: poll says 5 ok, 4 failed, 1 cancelled; the store holds 2 ok, 1 failed
        (
            1,
            {"succeeded": 5, "failed": 4, "cancelled": 1, "timed_out": 0},
            {"succeeded": 2, "failed": 1},
        ),
        # the store is ahead of an older poll (push): nothing new, never negative
        (1, {"succeeded": 1, "failed": 0}, {"succeeded": 3, "failed": 2}),
    ]
    c = in_flight_counts(figures, counted_kinds=[FailureKind.FAIL, FailureKind.TIMEOUT])
    assert (c.succeeded, c.failed, c.timed_out, c.ignored, c.retrying) == (3, 3, 0, 1, 0)
    assert c.total == 0
    # fail is retried up to 2 attempts: round 1's failures retry, round 2's are final
    retry = in_flight_counts(
        [(1, {"failed": 3}, {}), (2, {"failed": 2, "timed_out": 1}, {})],
        counted_kinds=["fail", "timeout"],
        max_attempts={"fail": 2},
    )
    assert (retry.retrying, retry.failed, retry.timed_out) == (3, 2, 1)


def test_counts_add_and_threshold_records_its_parts() -> None:
    recorded = Counts(total=20, succeeded=3, failed=1)
    polled = Counts(succeeded=4, failed=5)
    both = recorded + polled
    assert both == Counts(total=20, succeeded=7, failed=6)
    d = evaluate_failure_threshold(
        both,
        max_failure_rate=0.2,
        min_finished=10,
        parts={"recorded": recorded.as_dict(), "in_flight": polled.as_dict()},
    )
    assert d.verdict is Verdict.HALT
    assert d.inputs["failed"] == 6
    assert d.inputs["parts"]["in_flight"]["failed"] == 5
    assert d.inputs["parts"]["recorded"]["failed"] == 1
    # the same failures only in the store (the old view) would still wait
    assert (
        evaluate_failure_threshold(recorded, max_failure_rate=0.2, min_finished=10).verdict
        is Verdict.WAIT
    )


def test_screen_targets_drops_excluded_and_removed_devices() -> None:
    from fleetwave.engine.decide import screen_targets

    keep, dropped = screen_targets(
        ["a", "b", "c", "d"], excluded={"b", "x"}, targeted={"a", "b", "c"}
    )
    assert keep == ["a", "c"]
    assert dropped == {"excluded": ["b"], "removed": ["d"]}
    keep, dropped = screen_targets(["a", "d"], excluded=set(), targeted=None)
    assert (keep, dropped) == (["a", "d"], {})

"""The engine's consent rules: sorting pending devices by answer, and the declines'
own limit and their optional counting as failures."""

from __future__ import annotations

import pendulum

from fleetwave.engine.decide import (
    ConsentBucket,
    Counts,
    Verdict,
    consent_bucket,
    consent_split,
    consent_states,
    count_declines_as_failures,
    evaluate_decline_limit,
)
from fleetwave.spec.model import ConsentTimeoutAction
from fleetwave.store.models import ConsentState

S = ConsentState
T = pendulum.datetime(2026, 3, 3, 1, tz="UTC")
SLOT = (T, T.add(hours=2))
OTHER = (T.add(days=1), T.add(days=1, hours=1))

STATES = {
    "c": (S.CONFIRMED, None),
    "a": (S.AUTO, None),
    "p1": (S.APPOINTED, SLOT),
    "p2": (S.APPOINTED, SLOT),
    "p3": (S.APPOINTED, OTHER),
    "d": (S.DECLINED, None),
    "w": (S.AWAITING, None),
    "x": (S.EXPIRED, None),
}


def test_split_before_the_timeout() -> None:
    got = consent_split(STATES, timed_out=False, on_timeout=ConsentTimeoutAction.SKIP)
    assert got.send == ["a", "c"]
    assert got.appointed == {SLOT: ["p1", "p2"], OTHER: ["p3"]}
    assert (got.held, got.declined, got.expired) == (["w"], ["d"], ["x"])
    assert got.counts()["appointments"] == 2


def test_split_after_the_timeout_skip_or_proceed() -> None:
    skip = consent_split(STATES, timed_out=True, on_timeout=ConsentTimeoutAction.SKIP)
    assert (skip.held, skip.expired) == ([], ["w", "x"])
    go = consent_split(STATES, timed_out=True, on_timeout=ConsentTimeoutAction.PROCEED)
    assert go.send == ["a", "c", "w", "x"] and go.expired == [] and go.declined == ["d"]


def test_states_per_bucket_are_what_the_store_selects_with() -> None:
    B, skip, go = ConsentBucket, ConsentTimeoutAction.SKIP, ConsentTimeoutAction.PROCEED
    assert consent_states(B.SEND, timed_out=False, on_timeout=skip) == {S.CONFIRMED, S.AUTO}
    assert consent_states(B.SEND, timed_out=True, on_timeout=go) == {
        S.CONFIRMED,
        S.AUTO,
        S.AWAITING,
        S.EXPIRED,
    }
    assert consent_states(B.EXPIRED, timed_out=False, on_timeout=skip) == {S.EXPIRED}
    assert consent_states(B.EXPIRED, timed_out=True, on_timeout=skip) == {S.AWAITING, S.EXPIRED}
    assert consent_states(B.HELD, timed_out=True, on_timeout=skip) == set()
    assert consent_states(B.APPOINTED, timed_out=True, on_timeout=go) == {S.APPOINTED}
    # a device without a consent row goes where an unanswered one goes
    for timed_out in (False, True):
        for action in ConsentTimeoutAction:
            assert consent_bucket(None, timed_out=timed_out, on_timeout=action) is (
                consent_bucket(S.AWAITING, timed_out=timed_out, on_timeout=action)
            )


def test_decline_limit() -> None:
    assert evaluate_decline_limit(declined=5, answered=5, max_declined_rate=None).verdict is (
        Verdict.CONTINUE
    )
    wait = evaluate_decline_limit(declined=2, answered=2, max_declined_rate=0.1, min_answered=5)
    assert wait.verdict is Verdict.WAIT
    ok = evaluate_decline_limit(declined=1, answered=10, max_declined_rate=0.1)
    assert ok.verdict is Verdict.CONTINUE  # equal to the limit does not trip
    trip = evaluate_decline_limit(
        declined=2, answered=10, max_declined_rate=0.1, on_trip=Verdict.ROLLBACK
    )
    assert trip.verdict is Verdict.ROLLBACK
    assert trip.inputs["decline_rate"] == 0.2 and "2 of 10" in trip.reason


def test_declines_counted_as_failures_move_from_skipped() -> None:
    counts = Counts(total=10, succeeded=4, failed=1, skipped=3)
    moved = count_declines_as_failures(counts, 2)
    assert (moved.failed, moved.skipped, moved.total) == (3, 1, 10)
    assert count_declines_as_failures(counts, 9).skipped == 0


def test_resume_counts_failures_as_the_stored_spec_says() -> None:
    """``resume`` rebuilds the threshold counting from the stored spec snapshot: an explicit
    ``consent.on_timeout: fail`` counts unanswered devices, a campaign without consent not."""
    from fleetwave.engine.control import _counting_spec
    from fleetwave.engine.counts import counted_failure_kinds

    with_fail = {"consent": {"required": True, "on_timeout": "fail"}}
    assert counted_failure_kinds(_counting_spec(with_fail)) == [
        "fail",
        "timeout",
        "consent_expired",
    ]
    assert counted_failure_kinds(_counting_spec({"consent": None})) == ["fail", "timeout"]
    skip = {"consent": {"required": True, "on_timeout": None}}
    assert counted_failure_kinds(_counting_spec(skip)) == ["fail", "timeout"]

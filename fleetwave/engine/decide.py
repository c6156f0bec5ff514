"""Every decision the engine takes, as pure functions returning a :class:`Decision`.

A decision is a value: what was decided, why, and the inputs it looked at, so the
runner can write it to the event log verbatim and a reader can replay it. No I/O here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

import pendulum

from fleetwave.platforms.base import DeviceOutcome
from fleetwave.spec.model import FailureKind

__all__ = [
    "Counts",
    "Decision",
    "RetryCandidate",
    "Verdict",
    "backoff_seconds",
    "chunk_capacity",
    "classify_failure",
    "evaluate_failure_threshold",
    "evaluate_wave_gate",
    "in_flight_counts",
    "screen_targets",
    "select_resubmissions",
    "task_timed_out",
]


class Verdict(enum.StrEnum):
    """The possible outcomes of a decision.

    CONTINUE: nothing to do, keep going. HALT: stop submitting (threshold tripped or
    wave gate failed). ROLLBACK: halt and roll back. WAIT: the condition cannot be
    decided yet (too few finished devices, devices still running). PROCEED: a gate
    opened (the next wave may start). TIMED_OUT: a task ran past its timeout.
    RESUBMIT: devices are selected for another round.
    """

    CONTINUE = "continue"
    HALT = "halt"
    ROLLBACK = "rollback"
    WAIT = "wait"
    PROCEED = "proceed"
    TIMED_OUT = "timed_out"
    RESUBMIT = "resubmit"


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision with its inputs, ready for the event log (``as_event()``)."""

    name: str
    verdict: Verdict
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)

    def as_event(self) -> dict[str, Any]:
        """JSON-ready form for the store's event log."""
        return {
            "decision": self.name,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "inputs": dict(self.inputs),
        }


@dataclass(frozen=True, slots=True)
class Counts:
    """Device outcome counts over some scope (a wave, a phase, a campaign).

    ``failed`` and ``timed_out`` count settled failures of the kinds the thresholds count;
    ``ignored`` counts settled failures of other kinds (finished, but neither a success
    nor a counted failure); ``retrying`` counts failed devices that will get another
    round, so they are not finished yet.
    """

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    skipped: int = 0
    retrying: int = 0
    ignored: int = 0

    @property
    def finished(self) -> int:
        """Devices with a final outcome (skipped devices are not counted: they never ran)."""
        return self.succeeded + self.failed + self.timed_out + self.ignored

    @property
    def failures(self) -> int:
        return self.failed + self.timed_out

    @property
    def failure_rate(self) -> float:
        return 0.0 if self.finished == 0 else self.failures / self.finished

    @property
    def unfinished(self) -> int:
        """Devices still to run or running, including those waiting for a retry round."""
        return self.total - self.finished - self.skipped

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{k: getattr(self, k) + getattr(other, k) for k in _COUNT_FIELDS})

    def minus(self, base: Counts) -> Counts:
        """Counts since ``base`` (an operator's override): finished parts subtracted."""
        return Counts(
            total=max(0, self.total - base.finished),
            succeeded=max(0, self.succeeded - base.succeeded),
            failed=max(0, self.failed - base.failed),
            timed_out=max(0, self.timed_out - base.timed_out),
            skipped=self.skipped,
            retrying=self.retrying,
            ignored=max(0, self.ignored - base.ignored),
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "skipped": self.skipped,
            "retrying": self.retrying,
            "ignored": self.ignored,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Counts:
        return cls(**{k: int(data.get(k, 0) or 0) for k in cls.__slots__})  # type: ignore[attr-defined]


_KIND_OF_OUTCOME = {
    DeviceOutcome.FAILED: FailureKind.FAIL,
    DeviceOutcome.TIMED_OUT: FailureKind.TIMEOUT,
    DeviceOutcome.CANCELLED: FailureKind.STOP,
}
_FINAL_KEYS = tuple(o.value for o in DeviceOutcome if o.is_final)

_COUNT_FIELDS = ("total", "succeeded", "failed", "timed_out", "skipped", "retrying", "ignored")


def in_flight_counts(
    figures: Iterable[tuple[int, Mapping[str, int], Mapping[str, int]]],
    *,
    counted_kinds: Iterable[str],
    max_attempts: Mapping[str, int] | None = None,
) -> Counts:
    """Outcomes the platform reported for active tasks that the store does not hold yet.

    ``figures``: per active task ``(round, polled, recorded)``: the last poll's device
    counts per final :class:`DeviceOutcome` value (succeeded, failed, cancelled, timed_out)
    and the task's devices already final in the store by the same keys; only the excess
    of the poll over the store is new, so no device counts twice. A failure of a kind
    (:func:`classify_failure`) that gets another round (its task's round is below
    ``max_attempts[kind]``) is ``retrying``; a kind not in ``counted_kinds`` is
    ``ignored``. ``total`` stays 0: those devices are already in the store's total.
    """
    counted = {str(getattr(k, "value", k)) for k in counted_kinds}
    limits = {str(getattr(k, "value", k)): int(v) for k, v in (max_attempts or {}).items()}
    succeeded = failed = timed_out = retrying = ignored = 0
    for round_no, polled, recorded in figures:
        new = {
            key: max(0, int(polled.get(key, 0) or 0) - int(recorded.get(key, 0) or 0))
            for key in _FINAL_KEYS
        }
        succeeded += new[DeviceOutcome.SUCCEEDED.value]
        for outcome, failure in _KIND_OF_OUTCOME.items():
            n = new[outcome.value]
            if not n:
                continue
            kind = failure.value
            if round_no < limits.get(kind, 0):
                retrying += n
            elif kind not in counted:
                ignored += n
            elif failure is FailureKind.TIMEOUT:
                timed_out += n
            else:
                failed += n
    return Counts(
        succeeded=succeeded,
        failed=failed,
        timed_out=timed_out,
        retrying=retrying,
        ignored=ignored,
    )


def evaluate_failure_threshold(
    counts: Counts,
    *,
    max_failure_rate: float | None,
    min_finished: int,
    max_failures: int | None = None,
    on_trip: Verdict = Verdict.HALT,
    scope: str = "campaign",
    parts: Mapping[str, Mapping[str, int]] | None = None,
) -> Decision:
    """Trip (``on_trip``) when the failure rate or count passes its limit.

    The rate is over finished devices (succeeded + failed + timed out); a rate equal to
    the limit does not trip it, nor does a count equal to ``max_failures``. Limits are
    checked only once ``min_finished`` devices have finished (WAIT before), unless the
    failures alone already exceed the rate limit over the whole scope (then no later
    success can bring the rate back under it). ``parts`` (e.g. the counts the store holds
    and those only the last task poll reported) go into the inputs beside the sum.
    """
    inputs: dict[str, Any] = {
        "scope": scope,
        **counts.as_dict(),
        "finished": counts.finished,
        "failure_rate": round(counts.failure_rate, 6),
        "max_failure_rate": max_failure_rate,
        "max_failures": max_failures,
        "min_finished": min_finished,
    }
    if parts:
        inputs["parts"] = {name: dict(p) for name, p in parts.items()}
    runnable = counts.total - counts.skipped
    certain = (
        max_failure_rate is not None
        and runnable > 0
        and counts.failures / runnable > max_failure_rate
    )
    if counts.finished < min_finished and not certain:
        return Decision(
            "failure_threshold",
            Verdict.WAIT,
            f"{counts.finished} of at least {min_finished} devices finished in {scope}",
            inputs,
        )
    if max_failures is not None and counts.failures > max_failures:
        return Decision(
            "failure_threshold",
            on_trip,
            f"{counts.failures} failed devices in {scope} is above the limit {max_failures}",
            inputs,
        )
    if max_failure_rate is not None and (counts.failure_rate > max_failure_rate or certain):
        return Decision(
            "failure_threshold",
            on_trip,
            f"failure rate {counts.failure_rate:.1%} of {counts.finished} finished devices "
            f"in {scope} is above the limit {max_failure_rate:.1%}",
            inputs,
        )
    limit = "no limit" if max_failure_rate is None else f"{max_failure_rate:.1%}"
    return Decision(
        "failure_threshold",
        Verdict.CONTINUE,
        f"failure rate {counts.failure_rate:.1%} within {limit} in {scope}",
        inputs,
    )


def evaluate_wave_gate(
    wave: int, counts: Counts, *, success_threshold: float, next_wave: int | None
) -> Decision:
    """May the wave after ``wave`` start? Only once ``wave`` has no unfinished device.

    The success rate is succeeded / (total - skipped); at or above ``success_threshold``
    the gate opens (PROCEED), below it the campaign halts.
    """
    runnable = counts.total - counts.skipped
    rate = 1.0 if runnable == 0 else counts.succeeded / runnable
    inputs: dict[str, Any] = {
        "wave": wave,
        "next_wave": next_wave,
        **counts.as_dict(),
        "success_rate": round(rate, 6),
        "success_threshold": success_threshold,
    }
    if counts.unfinished > 0 or counts.retrying > 0:
        return Decision(
            "wave_gate",
            Verdict.WAIT,
            f"wave {wave} still has {counts.unfinished} unfinished devices",
            inputs,
        )
    if rate + 1e-12 >= success_threshold:
        return Decision(
            "wave_gate",
            Verdict.PROCEED,
            f"wave {wave} reached {rate:.1%} success (needs {success_threshold:.1%})",
            inputs,
        )
    return Decision(
        "wave_gate",
        Verdict.HALT,
        f"wave {wave} reached only {rate:.1%} success (needs {success_threshold:.1%})",
        inputs,
    )


def task_timed_out(
    operation_id: str,
    submitted_at: pendulum.DateTime,
    now: pendulum.DateTime,
    timeout_seconds: float,
) -> Decision:
    """Has the task run past its timeout (measured from submission)?"""
    age = (now - submitted_at).total_seconds()
    inputs = {
        "operation_id": operation_id,
        "submitted_at": submitted_at.isoformat(),
        "now": now.isoformat(),
        "age_seconds": age,
        "timeout_seconds": timeout_seconds,
    }
    if age > timeout_seconds:
        return Decision(
            "task_timeout",
            Verdict.TIMED_OUT,
            f"task {operation_id} ran {age:.0f} s, past its timeout of {timeout_seconds:.0f} s",
            inputs,
        )
    return Decision("task_timeout", Verdict.CONTINUE, "within timeout", inputs)


def classify_failure(outcome: DeviceOutcome) -> FailureKind | None:
    """The failure kind (the spec's ``fail | timeout | stop``) of a device's final outcome:
    failed -> fail, timed_out -> timeout, cancelled -> stop.

    None for success and for outcomes that are not final. The platform's free-text
    detail is kept beside it as the failure detail, never parsed.
    """
    return _KIND_OF_OUTCOME.get(outcome)


@dataclass(frozen=True, slots=True)
class RetryCandidate:
    """A failed device: its attempt number (1 = first task) and failure kind."""

    device_id: str
    attempt: int
    kind: str


def select_resubmissions(
    failed: Iterable[RetryCandidate],
    *,
    max_attempts: Mapping[str, int],
) -> tuple[list[RetryCandidate], list[RetryCandidate], Decision]:
    """Split failed devices into (resubmit, give up) and the decision that says why.

    ``max_attempts`` maps each retryable failure kind to its attempt limit (1 + the
    spec's resubmission rounds); a kind not in it is never retried. A device is
    resubmitted while it has had fewer attempts than its kind's limit.
    """
    limits = {str(getattr(k, "value", k)): int(v) for k, v in max_attempts.items()}
    again: list[RetryCandidate] = []
    final: list[RetryCandidate] = []
    for cand in failed:
        limit = limits.get(cand.kind, 0)
        (again if cand.attempt < limit else final).append(cand)
    by_kind: dict[str, int] = {}
    for cand in again:
        by_kind[cand.kind] = by_kind.get(cand.kind, 0) + 1
    inputs = {
        "max_attempts": limits,
        "resubmit": len(again),
        "give_up": len(final),
        "resubmit_by_kind": by_kind,
    }
    verdict = Verdict.RESUBMIT if again else Verdict.CONTINUE
    reason = (
        f"{len(again)} devices resubmitted, {len(final)} failures final"
        if again
        else f"no device to resubmit ({len(final)} failures final)"
    )
    return again, final, Decision("resubmission", verdict, reason, inputs)


#: Why :func:`screen_targets` drops a device.
DROP_EXCLUDED = "excluded"
DROP_REMOVED = "removed"


def screen_targets(
    device_ids: Iterable[str],
    *,
    excluded: Set[str],
    targeted: Set[str] | None,
) -> tuple[list[str], dict[str, list[str]]]:
    """Devices about to be sent, screened against the campaign's targets as they read now:
    (the ones that may be sent, in order; the dropped ones by reason).

    ``excluded``: listed in ``exclude``/``exclude_file`` (reason :data:`DROP_EXCLUDED`).
    ``targeted``: the explicit device list (``devices`` + ``devices_file``) when it is the
    campaign's only source of devices, else None; a device no longer in it is dropped
    (reason :data:`DROP_REMOVED`). Exclusion wins when both apply.
    """
    keep: list[str] = []
    dropped: dict[str, list[str]] = {}
    for device_id in device_ids:
        if device_id in excluded:
            dropped.setdefault(DROP_EXCLUDED, []).append(device_id)
        elif targeted is not None and device_id not in targeted:
            dropped.setdefault(DROP_REMOVED, []).append(device_id)
        else:
            keep.append(device_id)
    return keep, dropped


def backoff_seconds(attempt: int, *, base_seconds: float, factor: float = 2.0) -> float:
    """Wait before attempt ``attempt`` (2 = first retry): base * factor**(attempt-2)."""
    if attempt <= 1:
        return 0.0
    return float(base_seconds) * float(factor) ** (attempt - 2)


def chunk_capacity(
    *,
    active_tasks: int,
    active_devices: int,
    max_tasks: int | None,
    max_devices: int | None,
    chunk_sizes: Sequence[int],
) -> int:
    """How many of the next chunks (sizes in order) may be submitted under the in-flight caps.

    At least one chunk is allowed when nothing is in flight, so a chunk larger than
    ``max_devices`` can never deadlock the campaign.
    """
    n = 0
    tasks, devices = active_tasks, active_devices
    for size in chunk_sizes:
        if max_tasks is not None and tasks + 1 > max_tasks:
            break
        if max_devices is not None and devices + size > max_devices and tasks > 0:
            break
        n += 1
        tasks += 1
        devices += size
    return n

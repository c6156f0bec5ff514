"""Every decision the engine takes, as pure functions returning a :class:`Decision`.

A decision is a value: what was decided, why, and the inputs it looked at, so the
runner can write it to the event log verbatim and a reader can replay it. No I/O here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from typing import Any

import pendulum

from fleetwave.platforms.base import DeviceOutcome
from fleetwave.spec.model import BreachAction, ConsentTimeoutAction, FailureKind
from fleetwave.store.models import ConsentState, DeviceRunStatus, WaveStatus

__all__ = [
    "ConsentBucket",
    "ConsentSplit",
    "Counts",
    "Decision",
    "RetryCandidate",
    "Verdict",
    "after_gate",
    "app_result",
    "approval_validity",
    "backoff_seconds",
    "breach_action",
    "chunk_capacity",
    "classify_failure",
    "consent_bucket",
    "consent_split",
    "consent_states",
    "count_declines_as_failures",
    "count_outcomes",
    "evaluate_decline_limit",
    "evaluate_failure_threshold",
    "evaluate_wave_gate",
    "in_flight_counts",
    "screen_targets",
    "select_resubmissions",
    "task_timed_out",
    "tasks_to_cancel",
    "wave_step",
]


class Verdict(enum.StrEnum):
    """The possible outcomes of a decision.

    CONTINUE: nothing to do, keep going. HALT: stop submitting (threshold tripped or
    wave gate failed). ROLLBACK: halt and roll back. WAIT: the condition cannot be
    decided yet (too few finished devices, devices still running). PROCEED: a gate
    opened (the next wave may start). TIMED_OUT: a task ran past its timeout.
    RESUBMIT: devices are selected for another round. PAUSE: stop and wait for an
    operator's approval (the wave goes to its approval gate). SOAK: the wave passed and
    soaks before the next one starts. DONE: the last wave passed: the campaign is done.
    SKIP: the wave has nothing to run. RUN: the wave starts (or resumes) running.
    APPROVAL: the wave waits at its approval gate (an approval is asked for or checked).
    """

    CONTINUE = "continue"
    HALT = "halt"
    ROLLBACK = "rollback"
    WAIT = "wait"
    PROCEED = "proceed"
    TIMED_OUT = "timed_out"
    RESUBMIT = "resubmit"
    PAUSE = "pause"
    SOAK = "soak"
    DONE = "done"
    SKIP = "skip"
    RUN = "run"
    APPROVAL = "approval"


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
    the gate opens (PROCEED), below it the campaign halts. A wave whose devices were all
    skipped opens it, with a reason that says nothing was sent.
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
            f"wave {wave + 1} still has {counts.unfinished} unfinished devices",
            inputs,
        )
    if runnable == 0:  # say so: "100 % success" would hide that nothing was upgraded
        return Decision(
            "wave_gate",
            Verdict.PROCEED,
            f"wave {wave + 1} sent none of its {counts.total} devices: all skipped "
            "(declined, no answer, up to date or excluded); no success rate to judge",
            inputs,
        )
    if rate + 1e-12 >= success_threshold:
        return Decision(
            "wave_gate",
            Verdict.PROCEED,
            f"wave {wave + 1} reached {rate:.1%} success (needs {success_threshold:.1%})",
            inputs,
        )
    return Decision(
        "wave_gate",
        Verdict.HALT,
        f"wave {wave + 1} reached only {rate:.1%} success (needs {success_threshold:.1%})",
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


# ---------------------------------------------------------------------- the wave driver's rules


def count_outcomes(
    statuses: Mapping[DeviceRunStatus, int],
    failure_kinds: Mapping[str, int],
    *,
    counted_kinds: Iterable[str],
    retrying: Mapping[str, int] | None = None,
) -> Counts:
    """The thresholds' counts from the store's two aggregates (devices per status, and
    settled failures per kind).

    ``failure_kinds`` counts FAILED and TIMED_OUT devices per failure kind (a rollback
    failure is a device whose upgrade succeeded, so it is not in it). ``retrying``: failed
    devices per kind that get another round; they are not final, so they are taken out of
    their kind. A final failure of a kind in ``counted_kinds`` is ``failed`` (``timed_out``
    for ``timeout``), of another kind ``ignored``. Devices rolling back, rolled back or
    whose rollback failed took the new version: they count as ``succeeded``. SKIPPED and
    CANCELLED devices are ``skipped``.
    """
    rs = DeviceRunStatus
    retrying = retrying or {}
    counted = {str(getattr(k, "value", k)) for k in counted_kinds}
    final = {k: max(0, n - retrying.get(k, 0)) for k, n in failure_kinds.items()}
    timeout = FailureKind.TIMEOUT.value
    failed = sum(n for k, n in final.items() if k in counted and k != timeout)
    timed_out = final.get(timeout, 0) if timeout in counted else 0
    return Counts(
        total=sum(statuses.values()),
        succeeded=statuses.get(rs.SUCCEEDED, 0)
        + statuses.get(rs.ROLLING_BACK, 0)
        + statuses.get(rs.ROLLED_BACK, 0)
        + statuses.get(rs.ROLLBACK_FAILED, 0),
        failed=failed,
        timed_out=timed_out,
        skipped=statuses.get(rs.SKIPPED, 0) + statuses.get(rs.CANCELLED, 0),
        retrying=sum(retrying.values()),
        ignored=sum(final.values()) - failed - timed_out,
    )


def breach_action(
    wave: int, trip: Decision, *, on_breach: BreachAction, has_rollback_package: bool
) -> Decision:
    """What a tripped threshold or failed wave gate (``trip``) does to the campaign.

    ``on_breach`` (the spec's ``thresholds.on_breach``) decides: ROLLBACK rolls back (the
    wave fails), PAUSE halts the wave and waits for an operator's approval, HALT halts the
    campaign. A rollback without a rollback package cannot run: the campaign halts.
    """
    inputs: dict[str, Any] = {
        "wave": wave,
        "on_breach": on_breach.value,
        "rollback_package": has_rollback_package,
        "trip": trip.name,
        "trip_verdict": trip.verdict.value,
    }
    if on_breach is BreachAction.ROLLBACK and has_rollback_package:
        return Decision("breach_action", Verdict.ROLLBACK, f"roll back: {trip.reason}", inputs)
    if on_breach is BreachAction.PAUSE:
        return Decision(
            "breach_action",
            Verdict.PAUSE,
            f"wave {wave + 1} halted, awaiting approval: {trip.reason}",
            inputs,
        )
    reason = f"halt: {trip.reason}"
    if on_breach is BreachAction.ROLLBACK:
        reason += " (on_breach is rollback, but there is no rollback package)"
    return Decision("breach_action", Verdict.HALT, reason, inputs)


def after_gate(wave: int, *, next_wave: int | None, soak_seconds: float) -> Decision:
    """What follows a passed wave gate: SOAK (the wave waits ``soak_seconds`` before the
    next one starts), PROCEED (the next wave may start now) or DONE (it was the last wave).

    The last wave never soaks: nothing waits for it.
    """
    inputs: dict[str, Any] = {"wave": wave, "next_wave": next_wave, "soak_seconds": soak_seconds}
    if next_wave is None:
        return Decision("after_gate", Verdict.DONE, f"wave {wave + 1} was the last wave", inputs)
    if soak_seconds > 0:
        return Decision(
            "after_gate",
            Verdict.SOAK,
            f"wave {wave + 1} soaks {soak_seconds:.0f} s before wave {next_wave + 1}",
            inputs,
        )
    return Decision("after_gate", Verdict.PROCEED, f"wave {next_wave + 1} may start", inputs)


def approval_validity(
    wave: int,
    *,
    decided: bool,
    breach_event: int | None,
    approval_event: int | None,
) -> Decision:
    """Does the wave's recorded approval decision still count?

    ``decided``: the wave holds an operator's decision. ``breach_event``: the ID of the
    newest threshold breach of this wave in the event log (None if none);
    ``approval_event``: the ID of the newest approval event of this wave. A decision
    counts unless a breach came after it; event order decides, not timestamps (the CLI
    and the engine may use different clocks). PROCEED: it counts; WAIT: an operator must
    decide (again).
    """
    inputs: dict[str, Any] = {
        "wave": wave,
        "decided": decided,
        "breach_event": breach_event,
        "approval_event": approval_event,
    }
    if not decided:
        return Decision("approval", Verdict.WAIT, f"wave {wave + 1} has no decision yet", inputs)
    if breach_event is None:
        return Decision("approval", Verdict.PROCEED, f"wave {wave + 1} was decided", inputs)
    if approval_event is not None and approval_event > breach_event:
        return Decision(
            "approval", Verdict.PROCEED, f"wave {wave + 1} was decided after its breach", inputs
        )
    return Decision(
        "approval",
        Verdict.WAIT,
        f"a threshold of wave {wave + 1} tripped after its decision: it must be decided again",
        inputs,
    )


def wave_step(
    wave: int,
    status: WaveStatus,
    *,
    planned_size: int,
    approval_required: bool,
    soak_until: pendulum.DateTime | None = None,
    now: pendulum.DateTime | None = None,
) -> Decision:
    """The next step of the current wave (the first neither succeeded nor skipped) by its status.

    PENDING: SKIP without devices, PAUSE when the spec asks for an approval, else RUN.
    WAITING_APPROVAL: APPROVAL (the gate asks or checks). HALTED: RUN (resumed).
    FAILED, REJECTED, CANCELLED: HALT (the campaign halts). SOAKING: PROCEED once ``now``
    reaches ``soak_until`` (none recorded: at once), else WAIT. RUNNING: CONTINUE
    (submit, monitor, decide).
    """
    inputs: dict[str, Any] = {
        "wave": wave,
        "status": status.value,
        "planned_size": planned_size,
        "approval_required": approval_required,
    }
    ws = WaveStatus
    if status is ws.PENDING:
        if planned_size == 0:
            return Decision("wave_step", Verdict.SKIP, "no devices", inputs)
        if approval_required:
            return Decision("wave_step", Verdict.PAUSE, "approval required", inputs)
        return Decision("wave_step", Verdict.RUN, "started", inputs)
    if status is ws.WAITING_APPROVAL:
        return Decision("wave_step", Verdict.APPROVAL, f"wave {wave + 1} awaits approval", inputs)
    if status is ws.HALTED:
        return Decision("wave_step", Verdict.RUN, "resumed", inputs)
    if status in (ws.FAILED, ws.REJECTED, ws.CANCELLED):
        return Decision("wave_step", Verdict.HALT, f"wave {wave + 1} is {status.value}", inputs)
    if status is ws.SOAKING:
        if now is None:
            raise ValueError("a soaking wave's step needs now")
        until = soak_until or now
        inputs["soak_until"] = until.isoformat()
        inputs["now"] = now.isoformat()
        if now >= until:
            return Decision("wave_step", Verdict.PROCEED, "soak period over", inputs)
        return Decision(
            "wave_step",
            Verdict.WAIT,
            f"wave {wave + 1} soaking until {until.to_iso8601_string()}",
            inputs,
        )
    if status is ws.RUNNING:
        return Decision("wave_step", Verdict.CONTINUE, f"wave {wave + 1} is running", inputs)
    raise ValueError(f"wave {wave + 1} is {status.value}: it has no next step")


# --------------------------------------------------------------------------- consent


Appointment = tuple[pendulum.DateTime, pendulum.DateTime]


@dataclass(frozen=True, slots=True)
class ConsentSplit:
    """Pending devices of a consent campaign sorted by what their owners answered.

    ``send``: consented (confirmed, auto, or unanswered past the timeout with ``proceed``);
    ``appointed``: by appointment, each group sent in tasks whose window is the
    appointment; ``held``: no answer yet; ``declined`` and ``expired``: never sent
    (skipped, not failed).
    """

    send: list[str] = field(default_factory=list)
    appointed: dict[Appointment, list[str]] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)
    declined: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "send": len(self.send),
            "appointed": sum(len(v) for v in self.appointed.values()),
            "appointments": len(self.appointed),
            "held": len(self.held),
            "declined": len(self.declined),
            "expired": len(self.expired),
        }


class ConsentBucket(enum.StrEnum):
    """Where a pending device of a consent campaign goes in a round (see
    :func:`consent_bucket`)."""

    SEND = "send"
    APPOINTED = "appointed"
    HELD = "held"
    DECLINED = "declined"
    EXPIRED = "expired"


def consent_bucket(
    state: ConsentState | None, *, timed_out: bool, on_timeout: ConsentTimeoutAction
) -> ConsentBucket:
    """The rule for one pending device by its consent (None: no consent row, as unanswered).

    Confirmed or auto: sent now; appointed: sent in its appointment's window; declined:
    left out; unanswered or expired: held until the answer timeout (``timed_out``), then
    sent with ``on_timeout: proceed`` and left out (``expired``) otherwise.
    """
    if state in (ConsentState.CONFIRMED, ConsentState.AUTO):
        return ConsentBucket.SEND
    if state is ConsentState.APPOINTED:
        return ConsentBucket.APPOINTED
    if state is ConsentState.DECLINED:
        return ConsentBucket.DECLINED
    if state is ConsentState.EXPIRED or timed_out:
        if on_timeout is ConsentTimeoutAction.PROCEED:
            return ConsentBucket.SEND
        return ConsentBucket.EXPIRED
    return ConsentBucket.HELD


def consent_states(
    bucket: ConsentBucket, *, timed_out: bool, on_timeout: ConsentTimeoutAction
) -> frozenset[ConsentState]:
    """The consent states :func:`consent_bucket` puts in ``bucket``: what the store's
    queries select with (a device without a consent row goes where ``awaiting`` goes)."""
    return frozenset(
        s
        for s in ConsentState
        if consent_bucket(s, timed_out=timed_out, on_timeout=on_timeout) is bucket
    )


def consent_split(
    states: Mapping[str, tuple[ConsentState, Appointment | None]],
    *,
    timed_out: bool,
    on_timeout: ConsentTimeoutAction,
) -> ConsentSplit:
    """Which pending devices go now, in which appointment, wait, or are left out.

    ``states`` maps each pending device to its consent and appointment (a device without
    a consent row waits, as unanswered). Past the answer timeout (``timed_out``) an
    unanswered or expired device follows ``on_timeout``: ``proceed`` sends it, ``skip`` and
    ``fail`` leave it out (in ``expired``; the caller records it as skipped or failed).
    Each device follows :func:`consent_bucket`; the engine itself lets the store sort by
    :func:`consent_states` (one query per bucket, never every pending device in memory).
    """
    out = ConsentSplit()
    for device_id in sorted(states):
        state, appointment = states[device_id]
        if state is ConsentState.APPOINTED and appointment is None:
            state = ConsentState.AWAITING  # an appointment without its period: unanswered
        bucket = consent_bucket(state, timed_out=timed_out, on_timeout=on_timeout)
        if bucket is ConsentBucket.APPOINTED:
            assert appointment is not None
            out.appointed.setdefault(appointment, []).append(device_id)
        else:
            getattr(out, bucket.value).append(device_id)
    return out


def count_declines_as_failures(counts: Counts, declined: int) -> Counts:
    """``counts`` with the declined devices moved from skipped to failed (the spec's
    ``consent.declines_count: true``)."""
    moved = min(declined, counts.skipped)
    return replace(counts, failed=counts.failed + moved, skipped=counts.skipped - moved)


def evaluate_decline_limit(
    *,
    declined: int,
    answered: int,
    max_declined_rate: float | None,
    min_answered: int = 1,
    on_trip: Verdict = Verdict.HALT,
    scope: str = "campaign",
) -> Decision:
    """Trip (``on_trip``) when declined / answered devices passes the declines' own limit
    (``consent.max_declined_percent``), once ``min_answered`` owners answered; a rate equal
    to the limit does not trip it."""
    rate = declined / answered if answered else 0.0
    inputs = {
        "scope": scope,
        "declined": declined,
        "answered": answered,
        "decline_rate": round(rate, 6),
        "max_declined_rate": max_declined_rate,
        "min_answered": min_answered,
    }
    if max_declined_rate is None:
        return Decision("decline_limit", Verdict.CONTINUE, f"no decline limit in {scope}", inputs)
    if answered < max(min_answered, 1):
        return Decision(
            "decline_limit",
            Verdict.WAIT,
            f"{answered} of at least {min_answered} owners answered in {scope}",
            inputs,
        )
    if rate > max_declined_rate:
        return Decision(
            "decline_limit",
            on_trip,
            f"{declined} of {answered} answering owners declined in {scope} "
            f"({rate:.1%}), above the limit {max_declined_rate:.1%}",
            inputs,
        )
    return Decision(
        "decline_limit",
        Verdict.CONTINUE,
        f"{declined} of {answered} answering owners declined in {scope} ({rate:.1%})",
        inputs,
    )


def app_result(
    run: DeviceRunStatus,
    app_status: str | None,
    *,
    since: pendulum.DateTime,
    now: pendulum.DateTime,
    timeout_seconds: float,
) -> DeviceRunStatus | None:
    """Where an app-delivered device's run moves after its app's last report (None: stays).

    ``succeeded``/``failed`` settle it (also after a timeout: a late result counts, once);
    ``downloading``/``installing`` start it; no final report ``timeout_seconds`` after it
    was handed over or last moved (``since``) times it out, as a platform task would.
    """
    if app_status == "succeeded":
        return None if run is DeviceRunStatus.SUCCEEDED else DeviceRunStatus.SUCCEEDED
    if app_status == "failed":
        return None if run is DeviceRunStatus.FAILED else DeviceRunStatus.FAILED
    if run is DeviceRunStatus.TIMED_OUT:
        return None
    if run is DeviceRunStatus.SUBMITTED and app_status in ("downloading", "installing"):
        return DeviceRunStatus.IN_PROGRESS
    if (now - since).total_seconds() >= timeout_seconds:
        return DeviceRunStatus.TIMED_OUT
    return None


def tasks_to_cancel(
    *, can_cancel: bool, tasks: Sequence[tuple[str, Mapping[str, int] | None]]
) -> Decision:
    """On a halt: which live tasks to cancel (their operationIds in ``inputs["cancel"]``).

    ``tasks`` are (operationId, the per-outcome counts of its last progress read, or None
    when never read). A task none of whose devices had started or finished at that read
    (or never read) is cancelled; the platform refuses one that started meanwhile, so a
    stale read costs one refused call, never a stopped upgrade. Nothing is cancelled on a
    platform without a cancel call (CONTINUE: its tasks run to their end).
    """
    if not can_cancel:
        return Decision(
            "cancel_on_halt",
            Verdict.CONTINUE,
            "the platform cannot cancel tasks; the live ones run to their end",
            {"cancel": [], "live": len(tasks)},
        )
    chosen = [
        op
        for op, stats in tasks
        if stats is None
        or sum(v for k, v in stats.items() if k not in ("total", DeviceOutcome.PENDING.value)) == 0
    ]
    verdict = Verdict.HALT if chosen else Verdict.CONTINUE
    reason = (
        f"cancelling {len(chosen)} of {len(tasks)} live tasks that have not started"
        if chosen
        else "every live task has started; none is cancelled"
    )
    return Decision("cancel_on_halt", verdict, reason, {"cancel": chosen, "live": len(tasks)})

"""Builds the task and result value types of ``platforms.base`` from neutral values.

``PlatformTask`` and ``SubtaskResult`` are changing shape while the seam lands (IoDM's
``TaskStatus``/``TaskStats`` give way to ``TaskState``/``OutcomeCounts``/``DeviceOutcome``).
This module fills whichever fields the types have, so the in-memory platform works on
either side of that change; once only the neutral fields remain, replace both functions
by direct construction.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pendulum

from fleetwave.platforms import base
from fleetwave.platforms.base import (
    DeviceOutcome,
    OutcomeCounts,
    PackageKind,
    PlatformTask,
    SubtaskResult,
    TaskPolicy,
    TaskState,
)

__all__ = ["legacy_status_matches", "outcome_of", "platform_task", "subtask_result"]

_TASK_FIELDS = {f.name for f in dataclasses.fields(PlatformTask)}
_RESULT_FIELDS = {f.name for f in dataclasses.fields(SubtaskResult)}
_TaskStatus: Any = getattr(base, "TaskStatus", None)
_TaskStats: Any = getattr(base, "TaskStats", None)

_LEGACY_OUTCOME = {
    DeviceOutcome.PENDING: "wait",
    DeviceOutcome.RUNNING: "processing",
    DeviceOutcome.SUCCEEDED: "success",
    DeviceOutcome.FAILED: "fail",
    DeviceOutcome.CANCELLED: "stop",
    DeviceOutcome.TIMED_OUT: "timeout",
}


def _legacy_task_status(state: TaskState, counts: OutcomeCounts) -> str:
    if state is TaskState.PENDING:
        return "wait"
    if state is TaskState.RUNNING:
        return "processing"
    if counts.succeeded == counts.total:
        return "success"
    return "fail" if counts.failed else "stop"


def legacy_status_matches(status: Any, state: TaskState, counts: OutcomeCounts) -> bool:
    """Whether a task in ``state`` passes a legacy ``status`` filter (``TaskStatus``)."""
    return str(getattr(status, "value", status)) == _legacy_task_status(state, counts)


def platform_task(
    *,
    operation_id: str,
    kind: PackageKind,
    state: TaskState,
    counts: OutcomeCounts,
    device_ids: tuple[str, ...],
    created_at: pendulum.DateTime,
    started_at: pendulum.DateTime | None,
    stopped_at: pendulum.DateTime | None,
    file_version: str,
    policy: TaskPolicy,
) -> PlatformTask:
    """A PlatformTask with whichever status fields the type has."""
    kw: dict[str, Any] = {
        "operation_id": operation_id,
        "kind": kind,
        "device_ids": device_ids,
        "created_at": created_at,
        "started_at": started_at,
        "stopped_at": stopped_at,
        "file_version": file_version,
        "policy": policy,
    }
    if "state" in _TASK_FIELDS:
        kw["state"] = state
    if "counts" in _TASK_FIELDS:
        kw["counts"] = counts
    if "status" in _TASK_FIELDS and _TaskStatus is not None:
        kw["status"] = _TaskStatus(_legacy_task_status(state, counts))
    if "stats" in _TASK_FIELDS and _TaskStats is not None:
        kw["stats"] = _TaskStats(
            total=counts.total,
            wait=counts.pending,
            processing=counts.running,
            success=counts.succeeded,
            fail=counts.failed,
            stop=counts.cancelled,
            timeout=counts.timed_out,
        )
    return PlatformTask(**{k: v for k, v in kw.items() if k in _TASK_FIELDS})


def subtask_result(
    *,
    device_id: str,
    outcome: DeviceOutcome,
    detail: str | None,
    started_at: pendulum.DateTime | None,
    stopped_at: pendulum.DateTime | None,
    source_version: str | None,
    target_version: str | None,
    current_version: str | None,
) -> SubtaskResult:
    """A SubtaskResult carrying ``outcome`` in whichever field the type has."""
    kw: dict[str, Any] = {
        "device_id": device_id,
        "detail": detail,
        "started_at": started_at,
        "stopped_at": stopped_at,
        "source_version": source_version,
        "target_version": target_version,
        "current_version": current_version,
    }
    if "outcome" in _RESULT_FIELDS:
        kw["outcome"] = outcome
    if "status" in _RESULT_FIELDS and _TaskStatus is not None:
        kw["status"] = _TaskStatus(_LEGACY_OUTCOME[outcome])
    return SubtaskResult(**{k: v for k, v in kw.items() if k in _RESULT_FIELDS})


def outcome_of(result: SubtaskResult) -> DeviceOutcome:
    """The neutral outcome of a result, from ``outcome`` or the legacy ``status``."""
    outcome = getattr(result, "outcome", None)
    if isinstance(outcome, DeviceOutcome):
        return outcome
    legacy = str(getattr(getattr(result, "status", None), "value", ""))
    for neutral, name in _LEGACY_OUTCOME.items():
        if name == legacy:
            return neutral
    raise ValueError(f"result of {result.device_id} has no outcome")

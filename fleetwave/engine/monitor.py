"""Budget-aware monitoring: one round reads the progress of every active task and the
per-device results of each task that finished, each task's results exactly once.

Progress comes from the platform's ``task_progress``: the adapter chooses the cheapest
read (list pages, single reads) from what it said about each task last round (the memo,
stored on the chunk as ``platform_status`` and handed back). A task absent from its
answer, or read as finished, has finished: only then are its results read. A task past
its timeout is read once more and closed: devices without a final result count as timed
out, and it is not polled again.

With a push channel (``ctx.push``), a chunk whose devices all have a final result from
notifications is finished without any call; while push is healthy progress is read
only every :data:`PUSH_POLL_FACTOR` poll intervals, as a safety net for lost
notifications, and never when push already accounts for every active chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import pendulum

from fleetwave import store
from fleetwave.engine.context import RunContext, to_pendulum
from fleetwave.engine.decide import Verdict, classify_failure, task_timed_out
from fleetwave.engine.submit import policy_from_json
from fleetwave.platforms.base import (
    DeviceOutcome,
    PackageKind,
    TaskProgress,
    TaskRef,
)
from fleetwave.platforms.errors import TaskNotFound
from fleetwave.store import Chunk, ChunkKind, DeviceResult, DeviceRunStatus

__all__ = ["PUSH_POLL_FACTOR", "RoundReport", "monitor_round", "read_results"]

log = logging.getLogger(__name__)

#: With healthy push, progress is read every this many poll intervals (safety net).
PUSH_POLL_FACTOR = 10


@dataclass(slots=True)
class RoundReport:
    """What one monitoring round saw."""

    active: int = 0
    finished: int = 0
    timed_out: int = 0
    results: int = 0
    polled: bool = False  # the platform's task progress was read (list pages or task reads)
    by_push: int = 0  # chunks finished from push results alone, without reading subtasks


def _result(
    chunk: Chunk, device_id: str, outcome: DeviceOutcome, detail: str | None, version: str | None
) -> DeviceResult | None:
    kind = classify_failure(outcome)
    rollback = chunk.kind is ChunkKind.ROLLBACK
    if outcome is DeviceOutcome.SUCCEEDED:
        target = DeviceRunStatus.ROLLED_BACK if rollback else DeviceRunStatus.SUCCEEDED
        return DeviceResult(device_id, target, current_version=version)
    if kind is None:
        return None if rollback else DeviceResult(device_id, DeviceRunStatus.IN_PROGRESS)
    if rollback:
        target = DeviceRunStatus.ROLLBACK_FAILED
    elif outcome is DeviceOutcome.TIMED_OUT:
        target = DeviceRunStatus.TIMED_OUT
    else:
        target = DeviceRunStatus.FAILED
    return DeviceResult(device_id, target, kind.value, detail, version)


async def read_results(ctx: RunContext, chunk: Chunk, *, timed_out: bool) -> bool:
    """Read a task's device results (all pages) and store them.

    Returns whether the chunk is now finished: every device final, or ``timed_out``
    (then devices without a final result become timed out). A task that turns out to be
    still running is left active with its devices marked in progress.
    """
    assert chunk.id is not None and chunk.operation_id is not None
    results: list[DeviceResult] = []
    running = 0
    seen: set[str] = set()
    try:
        async for sub in ctx.platform.task_results(chunk.operation_id):
            seen.add(sub.device_id)
            if not sub.outcome.is_final:
                running += 1
            r = _result(chunk, sub.device_id, sub.outcome, sub.detail, sub.current_version)
            if r is not None:
                results.append(r)
    except TaskNotFound:
        log.warning("%s: task %s of chunk %s vanished", ctx.name, chunk.operation_id, chunk.id)
        timed_out = True
    done = timed_out or running == 0
    now = ctx.now()
    missing = [d for d in chunk.device_ids if d not in seen]
    with ctx.tx() as s:
        store.record_device_results(
            s, campaign_id=ctx.campaign_id, results=results, now=now, chunk_id=chunk.id
        )
        if done:
            leftover = [r.device_id for r in results if r.status is DeviceRunStatus.IN_PROGRESS]
            leftover += missing
            if leftover:
                rollback = chunk.kind is ChunkKind.ROLLBACK
                store.set_device_status(
                    s,
                    campaign_id=ctx.campaign_id,
                    device_ids=leftover,
                    status=(
                        DeviceRunStatus.ROLLBACK_FAILED if rollback else DeviceRunStatus.TIMED_OUT
                    ),
                    failure_kind="timeout",
                    failure_detail=(
                        "no final result before the task timeout"
                        if timed_out
                        else "the platform reported no result for the device"
                    ),
                    now=now,
                )
            store.finish_chunk(
                s,
                chunk_id=chunk.id,
                now=now,
                platform_status="timeout" if timed_out else None,
            )
    return done


def _task_ref(chunk: Chunk) -> TaskRef:
    assert chunk.operation_id is not None
    return TaskRef(
        operation_id=chunk.operation_id,
        kind=PackageKind(chunk.package_kind),
        submitted_at=to_pendulum(chunk.submitted_at),
        memo=chunk.platform_status,
        file_id=chunk.file_id,
    )


async def _poll(ctx: RunContext, active: list[Chunk]) -> Mapping[str, TaskProgress]:
    """The platform's view of the active tasks; a task missing from the answer has finished
    (or vanished)."""
    return await ctx.platform.task_progress([_task_ref(c) for c in active if c.operation_id])


def _finish_by_push(ctx: RunContext, active: list[Chunk]) -> list[Chunk]:
    """Finish the chunks whose devices all have a final result from push; return the rest."""
    left: list[Chunk] = []
    now = ctx.now()
    with ctx.tx() as s:
        for chunk in active:
            assert chunk.id is not None
            if chunk.operation_id and store.count_unfinished_devices(s, chunk_id=chunk.id) == 0:
                store.finish_chunk(s, chunk_id=chunk.id, now=now, platform_status="push")
            else:
                left.append(chunk)
    return left


def _timeout_start(chunk: Chunk, submitted: pendulum.DateTime) -> pendulum.DateTime:
    """When the chunk's task timeout starts counting: at submission, or when its platform
    window opens if that is later (a task booked ahead for an owner's appointment)."""
    opens = policy_from_json(chunk.policy).start_time if chunk.policy else None
    return opens if opens is not None and opens > submitted else submitted


def _push_poll_due(ctx: RunContext, active: list[Chunk], now: pendulum.DateTime) -> bool:
    """With healthy push, poll only every PUSH_POLL_FACTOR intervals (and at task timeouts)."""
    push = ctx.push
    if push is None:
        return True
    interval = ctx.spec.policy.poll_interval.total_seconds()
    slow = interval * PUSH_POLL_FACTOR
    timeout = ctx.spec.policy.task_timeout.total_seconds()
    # Silence alone is weak evidence (devices may simply be slow: a quiet tail of sleepers),
    # so push counts as down after a task timeout of silence, or at once when the receiver
    # is down or a safety-net poll found a finished task push had not fully reported.
    if not push.healthy(now, ctx.campaign_id, quiet_after=max(slow + interval, timeout)):
        return True
    missed = ctx.push_missed_at
    if missed is not None and (now - missed).total_seconds() < slow:
        return True
    last = None
    for chunk in active:
        submitted = to_pendulum(chunk.submitted_at) or now
        if (now - _timeout_start(chunk, submitted)).total_seconds() >= timeout:
            return True  # a timeout must be read and closed now
        polled = to_pendulum(chunk.last_polled_at) or submitted
        last = polled if last is None or polled < last else last
    return last is None or (now - last).total_seconds() >= slow


async def monitor_round(ctx: RunContext) -> RoundReport:
    """One round over the campaign's active tasks (see the module docstring)."""
    with ctx.tx() as s:
        active = store.list_active_chunks(s, campaign_id=ctx.campaign_id)
    report = RoundReport(active=len(active))
    if not active:
        return report
    if ctx.push is not None:
        left = _finish_by_push(ctx, active)
        report.by_push = len(active) - len(left)
        report.finished += report.by_push
        active = left
        if not active or not _push_poll_due(ctx, active, ctx.now()):
            return report
    report.polled = True
    seen = await _poll(ctx, active)
    now = ctx.now()
    timeout = ctx.spec.policy.task_timeout.total_seconds()
    to_read: list[tuple[Chunk, bool]] = []
    with ctx.tx() as s:
        for chunk in active:
            assert chunk.id is not None and chunk.operation_id is not None
            task = seen.get(chunk.operation_id)
            if task is not None:
                store.record_chunk_poll(
                    s,
                    chunk_id=chunk.id,
                    platform_status=task.memo,
                    now=now,
                    stats=task.counts.as_dict(),
                )
            # absent from the answer or read as finished: finished
            finished = task is None or task.state.is_final
            if finished:
                to_read.append((chunk, False))
                continue
            submitted = to_pendulum(chunk.submitted_at) or now
            # a task sent ahead of its window (an owner's appointment) cannot run before
            # the window opens: its timeout counts from then
            submitted = _timeout_start(chunk, submitted)
            decision = task_timed_out(chunk.operation_id, submitted, now, timeout)
            if decision.verdict is Verdict.TIMED_OUT:
                to_read.append((chunk, True))
                s.flush()
                store.append_event(
                    s,
                    campaign_id=ctx.campaign_id,
                    kind="decision",
                    subject=f"chunk {chunk.id}",
                    data=decision.as_event(),
                    now=now,
                    actor="engine",
                    flow_run_id=ctx.flow_run_id,
                )
    if ctx.push is not None and any(not timed_out for _, timed_out in to_read):
        ctx.push_missed_at = now  # finished tasks push had not accounted for: poll normally
    for chunk, timed_out in to_read:
        if await read_results(ctx, chunk, timed_out=timed_out):
            report.finished += 1
            report.timed_out += int(timed_out)
    return report

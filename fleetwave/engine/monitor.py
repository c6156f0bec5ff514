"""Budget-aware monitoring: one round reads the progress of every active task and the
per-device results of each task that finished, each task's subtasks exactly once.

Progress comes from task-list pages (100 tasks a call, with per-task statistics),
filtered to the statuses that are still running; a task that no longer shows up there
has finished, and only then are its subtasks read. A task's status only moves forward
(wait, processing, final), so the ``wait`` list is read only while several tasks were
last seen waiting; a new task (or a lone waiting one) missing from the ``processing``
list is read by itself. A round usually costs one page per 100 active tasks. When there
are no more active tasks than lists to read, reading them one by one is cheaper. A task
past its timeout is read once more and closed: devices without a final result count as
timed out, and it is not polled again.

With a push channel (``ctx.push``), a chunk whose devices all have a final result from
notifications is finished without any call; while push is healthy the task list is read
only every :data:`PUSH_POLL_FACTOR` poll intervals, as a safety net for lost
notifications, and never when push already accounts for every active chunk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pendulum

from fleetwave import store
from fleetwave.engine.context import RunContext, to_pendulum
from fleetwave.engine.decide import Verdict, classify_failure, task_timed_out
from fleetwave.platforms.base import PackageKind, PlatformTask, TaskStatus
from fleetwave.platforms.errors import TaskNotFound
from fleetwave.store import Chunk, ChunkKind, DeviceResult, DeviceRunStatus

__all__ = ["GET_TASK_MAX", "PUSH_POLL_FACTOR", "RoundReport", "monitor_round", "read_results"]

log = logging.getLogger(__name__)

#: Up to this many active tasks are read one by one (one call each) instead of listed
#: (fewer when the round needs a single list: one task is read, two are listed).
GET_TASK_MAX = 2

#: With healthy push, the task list is read every this many poll intervals (safety net).
PUSH_POLL_FACTOR = 10

_LIVE = (TaskStatus.WAIT, TaskStatus.PROCESSING)
_WAIT = TaskStatus.WAIT.value


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
    chunk: Chunk, device_id: str, status: TaskStatus, detail: str | None, version: str | None
) -> DeviceResult | None:
    kind = classify_failure(status)
    rollback = chunk.kind is ChunkKind.ROLLBACK
    if status is TaskStatus.SUCCESS:
        target = DeviceRunStatus.ROLLED_BACK if rollback else DeviceRunStatus.SUCCEEDED
        return DeviceResult(device_id, target, current_version=version)
    if kind is None:
        return None if rollback else DeviceResult(device_id, DeviceRunStatus.IN_PROGRESS)
    if rollback:
        target = DeviceRunStatus.ROLLBACK_FAILED
    elif status is TaskStatus.TIMEOUT:
        target = DeviceRunStatus.TIMED_OUT
    else:
        target = DeviceRunStatus.FAILED
    return DeviceResult(device_id, target, kind.value, detail, version)


async def read_results(ctx: RunContext, chunk: Chunk, *, timed_out: bool) -> bool:
    """Read a task's subtasks (all pages) and store the per-device results.

    Returns whether the chunk is now finished: every subtask final, or ``timed_out``
    (then devices without a final result become timed out). A task that turns out to be
    still running is left active with its devices marked in progress.
    """
    assert chunk.id is not None and chunk.operation_id is not None
    results: list[DeviceResult] = []
    running = 0
    seen: set[str] = set()
    try:
        async for sub in ctx.platform.subtasks(chunk.operation_id):
            seen.add(sub.device_id)
            if not sub.status.is_final:
                running += 1
            r = _result(chunk, sub.device_id, sub.status, sub.detail, sub.current_version)
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


def _live_statuses(active: list[Chunk]) -> tuple[TaskStatus, ...]:
    """The live statuses worth listing: ``wait`` only while several tasks were seen waiting
    (a new task, or a single waiting one, absent from the processing list is read alone)."""
    waiting = sum(1 for c in active if c.operation_id and c.platform_status == _WAIT)
    return _LIVE if waiting > 1 else (TaskStatus.PROCESSING,)


def _lists_needed(active: list[Chunk]) -> int:
    kinds = {c.package_kind for c in active}
    return len(kinds) * len(_live_statuses(active))


def _uses_lists(active: list[Chunk]) -> bool:
    """Listing beats reading tasks one by one (the monitor's choice, see the module doc)."""
    ops = sum(1 for c in active if c.operation_id)
    return ops > min(GET_TASK_MAX, _lists_needed(active))


async def _get_tasks(ctx: RunContext, ops: list[str], seen: dict[str, PlatformTask]) -> None:
    for op in ops:
        try:
            seen[op] = await ctx.platform.get_task(op)
        except TaskNotFound:
            log.warning("%s: task %s not found on the platform", ctx.name, op)


async def _poll(ctx: RunContext, active: list[Chunk]) -> dict[str, PlatformTask]:
    """The platform's view of the active tasks; a task missing from the answer has finished
    (or vanished). Tasks in the answer may be final only when they were read one by one."""
    by_op = {c.operation_id: c for c in active if c.operation_id}
    seen: dict[str, PlatformTask] = {}
    if not _uses_lists(active):
        await _get_tasks(ctx, list(by_op), seen)
        return seen
    kinds = sorted({PackageKind(c.package_kind) for c in active}, key=lambda k: k.value)
    statuses = _live_statuses(active)  # wait before processing: a task moving on is not missed
    for kind in kinds:
        for status in statuses:
            async for task in ctx.platform.list_tasks(kind=kind, status=status):
                if task.operation_id in by_op:
                    seen[task.operation_id] = task
    if TaskStatus.WAIT not in statuses:
        # absent from the processing list: finished, unless it may still wait (never
        # polled, or last seen waiting); those few are read one by one
        maybe = [
            op for op, c in by_op.items() if op not in seen and c.platform_status in (None, _WAIT)
        ]
        await _get_tasks(ctx, maybe, seen)
    return seen


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
        if (now - submitted).total_seconds() >= timeout:
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
                st = task.stats
                store.record_chunk_poll(
                    s,
                    chunk_id=chunk.id,
                    platform_status=task.status.value,
                    now=now,
                    stats={
                        "total": st.total,
                        "wait": st.wait,
                        "processing": st.processing,
                        "success": st.success,
                        "fail": st.fail,
                        "stop": st.stop,
                        "timeout": st.timeout,
                    },
                )
            # absent from the answer (the live lists) or read as final: finished
            finished = task is None or task.status.is_final
            if finished:
                to_read.append((chunk, False))
                continue
            submitted = to_pendulum(chunk.submitted_at) or now
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

"""Budget-aware monitoring: one round reads the progress of every active task and the
per-device results of each task that finished, each task's subtasks exactly once.

Progress comes from task-list pages (100 tasks a call, with per-task statistics),
filtered to the statuses that are still running; a task that no longer shows up there
has finished, and only then are its subtasks read. With one or two active tasks, reading
them one by one is cheaper than listing. A task past its timeout is read once more and
closed: devices without a final result count as timed out, and it is not polled again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fleetwave import store
from fleetwave.engine.context import RunContext, to_pendulum
from fleetwave.engine.decide import Verdict, classify_failure, task_timed_out
from fleetwave.platforms.base import PackageKind, PlatformTask, TaskStatus
from fleetwave.platforms.errors import TaskNotFound
from fleetwave.store import Chunk, ChunkKind, DeviceResult, DeviceRunStatus

__all__ = ["GET_TASK_MAX", "RoundReport", "monitor_round", "read_results"]

log = logging.getLogger(__name__)

#: Up to this many active tasks are read one by one (one call each) instead of listed.
GET_TASK_MAX = 2

_LIVE = (TaskStatus.WAIT, TaskStatus.PROCESSING)


@dataclass(slots=True)
class RoundReport:
    """What one monitoring round saw."""

    active: int = 0
    finished: int = 0
    timed_out: int = 0
    results: int = 0


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
        store.record_device_results(s, campaign_id=ctx.campaign_id, results=results, now=now)
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


async def _poll(ctx: RunContext, active: list[Chunk]) -> dict[str, PlatformTask]:
    by_op = {c.operation_id: c for c in active if c.operation_id}
    seen: dict[str, PlatformTask] = {}
    if len(by_op) <= GET_TASK_MAX:
        for op in by_op:
            try:
                seen[op] = await ctx.platform.get_task(op)
            except TaskNotFound:
                log.warning("%s: task %s not found on the platform", ctx.name, op)
        return seen
    kinds = sorted({PackageKind(c.package_kind) for c in active}, key=lambda k: k.value)
    for kind in kinds:
        for status in _LIVE:
            async for task in ctx.platform.list_tasks(kind=kind, status=status):
                if task.operation_id in by_op:
                    seen[task.operation_id] = task
    return seen


async def monitor_round(ctx: RunContext) -> RoundReport:
    """One round over the campaign's active tasks (see the module docstring)."""
    with ctx.tx() as s:
        active = store.list_active_chunks(s, campaign_id=ctx.campaign_id)
    report = RoundReport(active=len(active))
    if not active:
        return report
    seen = await _poll(ctx, active)
    now = ctx.now()
    listed = len(active) > GET_TASK_MAX
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
            # listed: absent from the live lists means finished; read: status says so
            finished = (task is None) if listed else (task is None or task.status.is_final)
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
    for chunk, timed_out in to_read:
        if await read_results(ctx, chunk, timed_out=timed_out):
            report.finished += 1
            report.timed_out += int(timed_out)
    return report

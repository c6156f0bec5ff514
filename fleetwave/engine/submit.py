"""Exactly-once submission: write the chunk intent (commit), create the task, record its id.

An intent without an operationId (a crash between the two commits, or an
:class:`OutcomeUnknown` from the client) is reconciled against the platform's task list
before anything is resubmitted: a task for exactly the chunk's devices and package,
created after the intent and not already known, is adopted; when there is none the intent
is abandoned (its devices go back to the pool) and a later round submits them afresh.
Never two tasks for one chunk.

OperationIds are unique per platform connection (``Platform.connection_key``), and every
lookup by id is scoped to the run's connection. When the platform hands out an id another
chunk of the connection already holds, the intent is kept (marked, devices still queued
on it, never abandoned or resubmitted) and the run stops with
:class:`fleetwave.store.OperationIdCollisionError`; every later run stops on it again.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pendulum

from fleetwave import store
from fleetwave.clock import utc_instant
from fleetwave.engine.context import RunContext, to_pendulum
from fleetwave.engine.resolve import SkipReason
from fleetwave.errors import UserError
from fleetwave.plan.windows import WindowTooShort, to_policy_window
from fleetwave.platforms.base import ExecuteType, PackageKind, TaskPolicy
from fleetwave.platforms.errors import (
    DevicesRefused,
    InvalidPolicy,
    OutcomeUnknown,
    RequestRejected,
)
from fleetwave.spec.model import ExecuteMode
from fleetwave.store import Chunk, ChunkKind

__all__ = [
    "RECONCILE_SLACK",
    "SubmitRejected",
    "SubmitResult",
    "create_intents",
    "policy_from_json",
    "policy_to_json",
    "reconcile_intent",
    "reconcile_intents",
    "submit_intent",
    "task_policy",
]

log = logging.getLogger(__name__)

#: How much earlier than its intent a platform task may look created and still be adopted
#: (the platform's clock and timestamps in whole seconds vs the engine's clock).
RECONCILE_SLACK = timedelta(minutes=10)

#: How many tasks a run lets the platform refuse because of single devices (each such
#: device is skipped and the rest resent) before it stops: beyond that the package, not
#: a device, is at fault, and resending one device less each time would cost a call each.
MAX_DEVICE_REFUSALS = 20


class SubmitResult(enum.StrEnum):
    """What became of one intent."""

    SUBMITTED = "submitted"
    ADOPTED = "adopted"
    ABANDONED = "abandoned"


class SubmitRejected(UserError):
    """The platform refused a task in a way no retry fixes (package vs devices, limits)."""


def task_policy(
    ctx: RunContext,
    now: pendulum.DateTime,
    window: tuple[pendulum.DateTime, pendulum.DateTime] | None = None,
) -> TaskPolicy | None:
    """The platform policy for a task created ``now``; None when it cannot be sent now.

    ``execute: window`` sends the allowed ``window`` open now (start = now, end = its
    close), so the platform itself stops at the window's end; None when no window is
    open or less of it is left than the platform's shortest window (its capabilities).
    """
    pol = ctx.spec.policy
    retries = pol.platform_retries
    if pol.execute is ExecuteMode.WINDOW:
        if window is None or window[0] > now:
            return None
        try:
            caps = ctx.platform.capabilities
            start, end = to_policy_window(
                window[0],
                window[1],
                now=now,
                min_window=caps.min_window,
                granularity=caps.window_granularity,
            )
        except WindowTooShort:
            return None
        install = ctx.spec.windows.install if ctx.spec.windows is not None else None
        if install is None or ctx.spec.windows is None:
            return TaskPolicy(ExecuteType.CUSTOM, start, end, retries)
        i_start, i_end = install.occurrence(start, ctx.spec.windows.timezone)
        return TaskPolicy(
            ExecuteType.CUSTOM,
            start,
            end,
            retries,
            install_start=utc_instant(i_start),
            install_end=utc_instant(i_end),
        )
    return TaskPolicy(pol.execute.execute_type, retry_times=retries)


def policy_to_json(policy: TaskPolicy) -> dict[str, Any]:
    return {
        "execute_type": policy.execute_type.value,
        "start_time": policy.start_time.isoformat() if policy.start_time else None,
        "end_time": policy.end_time.isoformat() if policy.end_time else None,
        "retry_times": policy.retry_times,
        **(
            {
                "install_start": policy.install_start.isoformat(),
                "install_end": policy.install_end.isoformat(),
            }
            if policy.install_start is not None and policy.install_end is not None
            else {}
        ),
    }


def policy_from_json(data: dict[str, Any]) -> TaskPolicy:
    def _t(v: Any) -> pendulum.DateTime | None:
        if not v:
            return None
        parsed = pendulum.parse(v)
        assert isinstance(parsed, pendulum.DateTime)
        return parsed.in_tz("UTC")

    return TaskPolicy(
        ExecuteType(data.get("execute_type", "now")),
        _t(data.get("start_time")),
        _t(data.get("end_time")),
        data.get("retry_times"),
        _t(data.get("install_start")),
        _t(data.get("install_end")),
    )


def create_intents(
    ctx: RunContext,
    *,
    kind: ChunkKind,
    wave_index: int,
    round: int,
    batches: Sequence[Sequence[str]],
    file_id: str,
    policy: TaskPolicy,
) -> list[Chunk]:
    """Write one intent per batch of devices, all in one committed transaction."""
    if not batches:
        return []
    now = ctx.now()
    with ctx.tx() as s:
        taken = [
            c.seq
            for c in store.list_chunks(
                s, campaign_id=ctx.campaign_id, wave_index=wave_index, kind=kind
            )
            if c.round == round
        ]
        seq = max(taken, default=-1) + 1
        chunks = []
        for batch in batches:
            chunks.append(
                store.create_chunk_intent(
                    s,
                    campaign_id=ctx.campaign_id,
                    wave_index=wave_index,
                    round=round,
                    seq=seq,
                    kind=kind,
                    package_kind=ctx.spec.kind.value,
                    file_id=file_id,
                    policy=policy_to_json(policy),
                    device_ids=list(batch),
                    now=now,
                    connection_key=ctx.platform.connection_key,
                )
            )
            seq += 1
    return chunks


async def submit_intent(ctx: RunContext, chunk: Chunk) -> SubmitResult:
    """Create the platform task of one committed intent and record its operationId."""
    assert chunk.id is not None
    try:
        operation_id = await ctx.platform.create_upgrade_task(
            kind=PackageKind(chunk.package_kind),
            file_id=chunk.file_id,
            device_ids=list(chunk.device_ids),
            policy=policy_from_json(chunk.policy),
        )
    except OutcomeUnknown as exc:
        log.warning("%s: chunk %s: outcome unknown (%s); reconciling", ctx.name, chunk.id, exc)
        ctx.event("outcome_unknown", subject=f"chunk {chunk.id}", data={"error": str(exc)})
        return await reconcile_intent(ctx, chunk)
    except InvalidPolicy as exc:
        # e.g. the window start passed between planning and the call: try again later
        _abandon(ctx, chunk, f"platform refused the policy: {exc}")
        return SubmitResult.ABANDONED
    except DevicesRefused as exc:
        if chunk.kind is ChunkKind.UPGRADE and ctx.device_refusals < MAX_DEVICE_REFUSALS:
            ctx.device_refusals += 1
            _drop_refused(ctx, chunk, exc)
            return SubmitResult.ABANDONED
        _abandon(ctx, chunk, f"platform refused the task: {exc}")
        raise SubmitRejected(
            f"campaign {ctx.name}: the platform refused the task for chunk {chunk.id} "
            f"(wave {chunk.wave_index + 1}, {chunk.device_count} devices): {exc}",
            hint=(
                f"{ctx.device_refusals} tasks of this run were already refused because of "
                "single devices: check the package against the devices (fleetwave plan)"
                if chunk.kind is ChunkKind.UPGRADE
                else "check the rollback package against the devices"
            ),
        ) from exc
    except RequestRejected as exc:
        _abandon(ctx, chunk, f"platform refused the task: {exc}")
        raise SubmitRejected(
            f"campaign {ctx.name}: the platform refused the task for chunk {chunk.id} "
            f"(wave {chunk.wave_index + 1}, {chunk.device_count} devices): {exc}",
            hint="check the package against the devices' type/model/manufacturer",
        ) from exc
    _record(ctx, chunk, operation_id)
    ctx.submitted_tasks += 1
    return SubmitResult.SUBMITTED


def _drop_refused(ctx: RunContext, chunk: Chunk, exc: DevicesRefused) -> None:
    """A task refused because of the devices it names: nothing was created, so abandon the
    intent (its devices go back to pending), skip the named ones with the platform's
    words, and let the next round send the rest (each device still at most once)."""
    assert chunk.id is not None
    named = [d for d in exc.device_ids if d in set(chunk.device_ids)]
    skip = SkipReason.REFUSED
    said = exc.description or exc.message
    _abandon(ctx, chunk, f"platform refused the task because of {', '.join(named)}")
    with ctx.tx() as s:
        changed = store.skip_pending_devices(
            s,
            campaign_id=ctx.campaign_id,
            device_ids=named,
            reason=f"{skip.value}: {skip.text} ({said})",
            now=ctx.now(),
        )
    ctx.event(
        "devices_dropped",
        subject=f"chunk {chunk.id}",
        data={
            "reason": skip.value,
            "why": f"the platform refused the task because of them: {said}",
            "count": len(changed),
            "devices": sorted(changed),
            "status": store.DeviceRunStatus.SKIPPED.value,
            "resent": chunk.device_count - len(changed),
        },
    )
    log.warning(
        "%s: chunk %s refused because of %s (%s); skipped, the other %d devices go in the "
        "next round",
        ctx.name,
        chunk.id,
        ", ".join(named),
        said,
        chunk.device_count - len(changed),
    )


def _record(ctx: RunContext, chunk: Chunk, operation_id: str, *, reconciled: bool = False) -> None:
    """Store the chunk's operationId; on a collision keep the intent, mark it, and raise."""
    assert chunk.id is not None
    try:
        with ctx.tx() as s:
            store.record_operation_id(
                s,
                chunk_id=chunk.id,
                operation_id=operation_id,
                now=ctx.now(),
                reconciled=reconciled,
            )
    except store.OperationIdCollisionError as exc:
        if chunk.collided_operation_id != operation_id:
            with ctx.tx() as s:
                store.mark_operation_id_collision(
                    s,
                    chunk_id=chunk.id,
                    operation_id=operation_id,
                    other_chunk_id=exc.other_chunk_id,
                    now=ctx.now(),
                )
        raise


def _abandon(ctx: RunContext, chunk: Chunk, reason: str) -> None:
    assert chunk.id is not None
    with ctx.tx() as s:
        store.abandon_chunk(s, chunk_id=chunk.id, reason=reason, now=ctx.now())


async def reconcile_intent(ctx: RunContext, chunk: Chunk) -> SubmitResult:
    """Adopt the platform task created for this intent, or abandon the intent if there is none.

    Lists the tasks of the chunk's first device (sorted) and operation type; a match has
    exactly the chunk's devices, the package's version, was created after the intent
    (minus :data:`RECONCILE_SLACK`) and is not the operationId of another chunk of the same
    platform connection with the same devices (an earlier round's task). A match whose id
    another chunk with other devices holds is an operationId collision: the intent is kept
    and :class:`~fleetwave.store.OperationIdCollisionError` raised, as it is for an intent
    already marked with a collision (unless its id has been freed meanwhile: then it is
    recorded).
    """
    assert chunk.id is not None
    if chunk.collided_operation_id is not None:
        _record(ctx, chunk, chunk.collided_operation_id, reconciled=True)
        ctx.event(
            "chunk_reconciled",
            subject=f"chunk {chunk.id}",
            data={"operation_id": chunk.collided_operation_id, "after_collision": True},
        )
        ctx.submitted_tasks += 1
        return SubmitResult.ADOPTED
    devices = set(chunk.device_ids)
    probe = min(devices)
    version = ctx.version_of(chunk.file_id)
    created = to_pendulum(chunk.created_at)
    assert created is not None
    floor = created.replace(microsecond=0) - RECONCILE_SLACK
    seen = 0
    async for task in ctx.platform.list_tasks(
        kind=PackageKind(chunk.package_kind), device_id=probe
    ):
        seen += 1
        if task.created_at is not None and task.created_at < floor:
            continue
        if set(task.device_ids) != devices:
            continue
        if version is not None and task.file_version not in (None, version):
            continue
        with ctx.tx() as s:
            holder = store.get_chunk_by_operation_id(
                s, operation_id=task.operation_id, connection_key=chunk.connection_key
            )
        if holder is not None and holder.id != chunk.id and set(holder.device_ids) == devices:
            continue  # an earlier round's task for the same devices
        _record(ctx, chunk, task.operation_id, reconciled=True)
        ctx.event(
            "chunk_reconciled",
            subject=f"chunk {chunk.id}",
            data={"operation_id": task.operation_id, "probe_device": probe, "tasks_seen": seen},
        )
        ctx.submitted_tasks += 1
        return SubmitResult.ADOPTED
    _abandon(ctx, chunk, f"no platform task found for it ({seen} tasks of {probe} checked)")
    return SubmitResult.ABANDONED


async def reconcile_intents(ctx: RunContext) -> dict[str, int]:
    """Reconcile every intent of the campaign that has no operationId (start of every run).

    First gives the campaign's chunks written before connection keys existed the run's
    platform connection, so lookups by operationId find them.
    """
    with ctx.tx() as s:
        keyed = store.assign_unkeyed_chunks(
            s,
            campaign_id=ctx.campaign_id,
            connection_key=ctx.platform.connection_key,
            now=ctx.now(),
        )
        intents = store.list_intents(s, campaign_id=ctx.campaign_id)
    if keyed:
        ctx.event(
            "chunks_keyed",
            data={"chunks": keyed, "connection_key": ctx.platform.connection_key},
        )
    results: dict[str, int] = {}
    for chunk in intents:
        r = await reconcile_intent(ctx, chunk)
        results[r.value] = results.get(r.value, 0) + 1
    if intents:
        ctx.event("intents_reconciled", data={"intents": len(intents), **results})
    return results

"""The platform's side of exactly-once: before a campaign's first task on a platform
connection, make sure none of its devices already sits in a live task of the same package.

A new, moved or replaced store knows nothing of the tasks an earlier store sent; the
platform does. So when the store holds no chunk of the campaign for this connection, the
engine lists the platform's live (pending or running) tasks of the campaign's kind,
keeps those of the target version, and looks their devices up among the campaign's
devices that may still be sent. The cost is task-list pages (one per 100 live tasks and
state, at least two), never a call per device; the store is asked in batches of the
tasks' device IDs, never for the campaign's whole fleet.

Any overlap refuses the run with :class:`DevicesInLiveTasks`, naming devices and
operationIds. A campaign that never sent a task also forgets its plan then, so the next
run plans afresh and skips the devices those tasks brought to the target version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from fleetwave import store
from fleetwave.engine.context import RunContext
from fleetwave.errors import UserError
from fleetwave.platforms.base import PackageKind, Platform, TaskState
from fleetwave.store import DeviceRunStatus, allowed_sources

__all__ = ["DevicesInLiveTasks", "LiveTaskCheck", "check_live_tasks", "find_devices_in_live_tasks"]

#: States a platform task is live in (listed one filter at a time).
LIVE_STATES = (TaskState.PENDING, TaskState.RUNNING)

#: Device IDs collected from task pages before the store is asked about them.
LOOKUP_BATCH = 5000

#: How many device IDs and operationIds an error message names.
SHOWN = 5

# devices a campaign may still put into a new upgrade task
_SENDABLE = allowed_sources(DeviceRunStatus.QUEUED)


@dataclass(frozen=True, slots=True)
class LiveTaskCheck:
    """What the check saw: live tasks listed, those of the target version, the overlap."""

    tasks_listed: int = 0
    tasks_of_version: int = 0
    overlap: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # operationId -> devices
    api_calls: int = 0

    @property
    def devices(self) -> list[str]:
        """The campaign's devices found in live tasks, sorted."""
        return sorted({d for ids in self.overlap.values() for d in ids})

    def as_event(self) -> dict[str, object]:
        devices = self.devices
        return {
            "tasks_listed": self.tasks_listed,
            "tasks_of_version": self.tasks_of_version,
            "devices_in_live_tasks": len(devices),
            "devices": devices[:50],
            "operation_ids": sorted(self.overlap)[:50],
            "api_calls": self.api_calls,
        }


class DevicesInLiveTasks(UserError):
    """Devices of a campaign that has not sent a task yet already sit in live platform tasks."""

    def __init__(self, *, campaign: str, connection_key: str, version: str, check: LiveTaskCheck):
        self.campaign, self.check = campaign, check
        devices, ops = check.devices, sorted(check.overlap)
        super().__init__(
            f"campaign {campaign!r}: {len(devices)} of its devices are already in "
            f"{len(ops)} live task(s) of version {version} on {connection_key}: devices "
            f"{_first(devices)}; tasks {_first(ops)}",
            hint=(
                "another store or tool sent them; check that this is the store the campaign "
                "ran with (`fleetwave db current`). Wait for those tasks to finish (the next "
                "run plans afresh and skips the devices then on the target version), or "
                "exclude the devices"
            ),
        )


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else "")


def _calls(platform: Platform) -> int:
    try:
        return sum(platform.call_counts().values())
    except Exception:  # a platform without counters still runs campaigns
        return 0


async def find_devices_in_live_tasks(
    platform: Platform,
    db: sa.Engine,
    *,
    campaign_id: int,
    kind: PackageKind,
    version: str,
) -> LiveTaskCheck:
    """List the platform's live tasks of ``kind`` and ``version`` (a task that does not say
    its version counts) and find the campaign's sendable devices among their targets."""
    before = _calls(platform)
    listed = of_version = 0
    overlap: dict[str, list[str]] = {}
    pending: dict[str, str] = {}  # device -> operationId, not yet looked up

    def lookup() -> None:
        with store.session_scope(db, read_only=True) as s:
            found = store.campaign_devices_among(
                s, campaign_id=campaign_id, device_ids=pending, statuses=_SENDABLE
            )
        for device in sorted(found):
            overlap.setdefault(pending[device], []).append(device)
        pending.clear()

    seen: set[str] = set()
    for state in LIVE_STATES:
        async for task in platform.list_tasks(kind=kind, state=state):
            if task.operation_id in seen:  # moved from pending to running between pages
                continue
            seen.add(task.operation_id)
            listed += 1
            if task.file_version not in (None, version):
                continue
            of_version += 1
            for device in task.device_ids:
                pending[device] = task.operation_id
            if len(pending) >= LOOKUP_BATCH:
                lookup()
    if pending:
        lookup()
    return LiveTaskCheck(
        tasks_listed=listed,
        tasks_of_version=of_version,
        overlap={op: tuple(ids) for op, ids in sorted(overlap.items())},
        api_calls=_calls(platform) - before,
    )


async def check_live_tasks(ctx: RunContext) -> LiveTaskCheck | None:
    """Before the campaign's first task on this connection: refuse if its devices are in
    live tasks (:class:`DevicesInLiveTasks`). None when the store already holds a chunk of
    the campaign for this connection (its own record is then the truth)."""
    key = ctx.platform.connection_key
    with ctx.tx() as s:
        if store.has_chunks_on_connection(s, campaign_id=ctx.campaign_id, connection_key=key):
            return None
    version = ctx.package.version
    check = await find_devices_in_live_tasks(
        ctx.platform,
        ctx.db,
        campaign_id=ctx.campaign_id,
        kind=PackageKind(ctx.spec.kind.value),
        version=version,
    )
    data: dict[str, object] = {"connection_key": key, "version": version, **check.as_event()}
    if not check.overlap:
        ctx.event("live_task_check", data={"result": "clear", **data})
        return check
    with ctx.tx() as s:
        try:
            data["plan_discarded_devices"] = store.discard_unsent_plan(
                s, campaign_id=ctx.campaign_id
            )
        except store.ConflictError:
            data["plan_discarded_devices"] = 0  # tasks on another connection: keep the plan
    ctx.event("live_task_check", data={"result": "refused", **data})
    raise DevicesInLiveTasks(campaign=ctx.name, connection_key=key, version=version, check=check)

"""The rollback phase: the rollback package to every device that took the new version.

Entered when a breach rolls the campaign back (``on_breach: rollback`` with a rollback
package), or by a run that finds the campaign ROLLING_BACK. Devices never sent a task are
cancelled, unfinished waves end, then rollback tasks go out (never waiting for a window)
and are monitored until no upgraded device is left: the whole phase is one stage (one
Prefect task run), its submissions stages inside it, its monitoring rounds steps.
"""

from __future__ import annotations

from fleetwave import store
from fleetwave.engine.context import carried
from fleetwave.engine.loop import Loop
from fleetwave.engine.monitor import monitor_round
from fleetwave.engine.outcome import Outcome, OutcomeKind, Stop
from fleetwave.engine.progress import plural
from fleetwave.engine.submit import create_intents, submit_intent, task_policy
from fleetwave.platforms.base import ExecuteType, TaskPolicy
from fleetwave.store import CampaignStatus, ChunkKind, DeviceRunStatus, WaveStatus

__all__ = ["roll_back"]

D = DeviceRunStatus


async def roll_back(loop: Loop) -> Outcome:
    """Send the rollback package to every device that took the new version."""
    ctx = loop.ctx
    ctx.phase = "rollback"
    pkg = ctx.rollback_package
    if pkg is None:
        loop.set_status(CampaignStatus.HALTED, "rollback needs a rollback package")
        return loop.outcome(OutcomeKind.HALTED, "no rollback package to roll back with")
    now = ctx.now()
    with ctx.tx() as s:
        # only devices never sent a task: failures and timeouts keep their history
        cancelled = store.cancel_unsent_devices(s, campaign_id=ctx.campaign_id, now=now)
        for w in store.get_waves(s, campaign_id=ctx.campaign_id):
            if w.status in (
                WaveStatus.PENDING,
                WaveStatus.WAITING_APPROVAL,
                WaveStatus.HALTED,
                WaveStatus.RUNNING,
                WaveStatus.SOAKING,
            ):
                target = (
                    WaveStatus.CANCELLED
                    if w.status is not WaveStatus.RUNNING
                    else WaveStatus.FAILED
                )
                store.set_wave_status(
                    s,
                    campaign_id=ctx.campaign_id,
                    index=w.index,
                    status=target,
                    now=now,
                    reason="rolling back",
                    flow_run_id=ctx.flow_run_id,
                )
    if cancelled:
        ctx.event("devices_cancelled", data={"devices": cancelled, "why": "rolling back"})
    ctx.emit("stage", stage="rollback", message=f"rolling back to {pkg.version}")
    pol = loop.spec.policy

    async def _rounds() -> Outcome:
        while True:
            loop.renew()
            if loop.status() is CampaignStatus.HALTED:
                return loop.outcome(OutcomeKind.HALTED, "halted by an operator during rollback")
            loop.tick()
            with ctx.tx() as s:
                active = store.list_active_chunks(s, campaign_id=ctx.campaign_id)
                # a device whose upgrade task is still active waits for that task's final
                # read, which would otherwise land on its rollback (a halt may come early)
                busy = {c.id for c in active if c.kind is ChunkKind.UPGRADE}
                todo: dict[int, list[str]] = {}
                budget = ctx.chunk_size * max(0, pol.max_inflight_tasks - len(active))
                for run in store.iter_device_runs(
                    s, campaign_id=ctx.campaign_id, statuses=[D.SUCCEEDED]
                ):
                    if budget <= 0:
                        break
                    if run.chunk_id in busy:
                        continue
                    todo.setdefault(run.wave_index, []).append(run.device_id)
                    budget -= 1
            policy = task_policy(ctx, ctx.now())
            if policy is None:
                # a rollback does not wait for a window
                policy = TaskPolicy(ExecuteType.NOW, retry_times=pol.platform_retries)
            for w_idx, ids in sorted(todo.items()):
                batches = [ids[i : i + ctx.chunk_size] for i in range(0, len(ids), ctx.chunk_size)]

                async def _go(
                    w_idx: int = w_idx,
                    batches: list[list[str]] = batches,
                    policy: TaskPolicy = policy,
                ) -> int:
                    chunks = create_intents(
                        ctx,
                        kind=ChunkKind.ROLLBACK,
                        wave_index=w_idx,
                        round=1,
                        batches=batches,
                        file_id=pkg.file_id,
                        policy=policy,
                    )
                    for chunk in chunks:
                        await submit_intent(ctx, chunk)
                    return len(chunks)

                n = await ctx.stage(
                    f"rollback wave {w_idx + 1} ({plural(len(batches), 'task')})", _go
                )
                if n and ctx.push is not None:
                    ctx.push.expect(ctx.campaign_id, ctx.now())
                ctx.emit("submitted", message=f"rollback wave {w_idx + 1}: {plural(n, 'task')}")
            with ctx.tx() as s:
                active = store.list_active_chunks(s, campaign_id=ctx.campaign_id)
            if active:
                await ctx.step(f"monitor round {ctx.rounds}", lambda: monitor_round(ctx))
            loop.progress()
            with ctx.tx() as s:
                active = store.list_active_chunks(s, campaign_id=ctx.campaign_id)
                left = store.device_status_counts(s, campaign_id=ctx.campaign_id).get(
                    D.SUCCEEDED, 0
                )
            if not active and not left:
                with ctx.tx() as s:
                    st = store.device_status_counts(s, campaign_id=ctx.campaign_id)
                reason = (
                    f"{st.get(D.ROLLED_BACK, 0)} devices rolled back to {pkg.version}, "
                    f"{st.get(D.ROLLBACK_FAILED, 0)} failed"
                )
                loop.set_status(CampaignStatus.ROLLED_BACK, reason)
                return loop.outcome(OutcomeKind.ROLLED_BACK, reason)
            if active:
                await loop.sleep(loop.poll)

    return await carried(ctx.stage, f"roll back to {pkg.version}", _rounds, carry=(Stop,))

"""The "resolve and plan" stage: targets resolved once, waves planned, device rows written."""

from __future__ import annotations

import logging

from fleetwave import store
from fleetwave.engine.consent import open_plan
from fleetwave.engine.context import RunContext
from fleetwave.engine.resolve import no_eligible_devices, resolve_targets
from fleetwave.plan.waves import plan_waves

__all__ = ["plan_campaign"]

log = logging.getLogger(__name__)


async def plan_campaign(ctx: RunContext) -> None:
    """Resolve the campaign's targets and write its waves, device runs (SKIPPED ones with
    their reason) and a ``planned`` event, in one transaction.

    Raises the ``UserError`` of :func:`no_eligible_devices` when nothing is eligible: a
    campaign that targets nothing is never planned (and so never "completed").
    """
    ctx.emit("stage", stage="resolve targets")
    res = await resolve_targets(ctx.platform, ctx.spec, ctx.package)
    empty = no_eligible_devices(ctx.spec, res)
    if empty is not None:  # never plan (and so "complete") a campaign that targets nothing
        raise empty
    plan = plan_waves(
        res.device_ids,
        ctx.spec.wave_targets(),
        seed=ctx.spec.shuffle_seed,
        max_devices_per_task=ctx.chunk_size,
        buckets=res.buckets,
    )
    now = ctx.now()
    with ctx.tx() as s:
        store.create_waves(
            s,
            campaign_id=ctx.campaign_id,
            waves=[store.WavePlan(w.index, w.name, w.device_count) for w in plan.waves],
            now=now,
        )
        rows = (
            store.NewDeviceRun(d, w.index, None, ctx.package.version)
            for w in plan.waves
            for d in w.iter_devices()
        )
        store.add_device_runs(s, campaign_id=ctx.campaign_id, devices=rows, now=now)
        if ctx.spec.consent is not None:
            offered = open_plan(ctx, s, (d for w in plan.waves for d in w.iter_devices()), now)
            log.info("%s: upgrade offered to the owners of %d devices", ctx.spec.name, offered)
        # devices left out at resolve time: SKIPPED rows with the reason, so status and
        # report can say which were skipped and why (never claimed)
        store.add_skipped_device_runs(
            s,
            campaign_id=ctx.campaign_id,
            devices=(
                (d, res.skip_text(reason, d)) for reason, ids in res.skipped.items() for d in ids
            ),
            target_version=ctx.package.version,
            now=now,
        )
        store.append_event(
            s,
            campaign_id=ctx.campaign_id,
            kind="planned",
            now=now,
            actor="engine",
            flow_run_id=ctx.flow_run_id,
            data={
                "package": {"file_id": ctx.package.file_id, "version": ctx.package.version},
                "rollback": (
                    {
                        "file_id": ctx.rollback_package.file_id,
                        "version": ctx.rollback_package.version,
                    }
                    if ctx.rollback_package
                    else None
                ),
                "devices": plan.device_count,
                "chunks": plan.chunk_count,
                "waves": [
                    {
                        "index": w.index,
                        "name": w.name,
                        "devices": w.device_count,
                        "chunks": len(w.chunks),
                    }
                    for w in plan.waves
                ],
                "groups": [
                    {"group": g.label, "members": g.members, "eligible": g.eligible}
                    for g in res.groups
                ],
                "skipped": res.skip_counts(),
            },
        )
    log.info(
        "%s: planned %d devices in %d waves", ctx.spec.name, plan.device_count, len(plan.waves)
    )

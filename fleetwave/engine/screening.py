"""The target lists as they read now, applied to a running campaign.

Before every submission the wave driver re-reads ``exclude``/``exclude_file`` and the
explicit device list: pending devices they no longer allow are SKIPPED, failed ones are
not resubmitted, and devices added after planning are reported (never added).
"""

from __future__ import annotations

import logging

from fleetwave import store
from fleetwave.engine.context import RunContext
from fleetwave.engine.decide import screen_targets
from fleetwave.engine.loop import last_event
from fleetwave.engine.resolve import SkipReason
from fleetwave.engine.targeting import SHOWN, Targeting, TargetingReader, explicit_ids
from fleetwave.store import DeviceRunStatus

__all__ = ["TargetScreen"]

log = logging.getLogger(__name__)

D = DeviceRunStatus

_DROP_WHY = {
    SkipReason.EXCLUDED: "listed in targets.exclude / exclude_file now",
    SkipReason.REMOVED: "no longer in targets.devices / devices_file",
}


class TargetScreen:
    """The campaign's target lists for one run: the last reading and what was reported."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.spec = ctx.spec
        self.targets = TargetingReader(ctx.spec)
        self.targeting: Targeting | None = None
        self._not_retried: set[str] = set()  # reported in this run

    def refresh_targeting(self) -> Targeting:
        """Re-read the exclusions and explicit device list (before every submission).

        Devices added to ``devices``/``devices_file`` after planning are not added (the
        device list is fixed at planning); when that list changed (an accepted spec
        change, or an edit during this run) an event says which were left out.
        """
        first = self.targeting is None
        targeting = self.targets.read()
        changed = not first and (
            self.targeting is not None and targeting.explicit_key != self.targeting.explicit_key
        )
        self.targeting = targeting
        if changed or (first and self._explicit_change_accepted()):
            self.report_not_added(targeting)
        return targeting

    def _explicit_change_accepted(self) -> bool:
        last = last_event(self.ctx, ["spec_change_accepted", "targets_not_added"])
        if last is None or last.kind != "spec_change_accepted":
            return False
        fields = {str(c.get("field")) for c in (last.data or {}).get("changes", [])}
        return bool(fields & {"targets.devices", "targets.devices_file"})

    def report_not_added(self, targeting: Targeting) -> None:
        ctx = self.ctx
        shown: list[str] = []
        count = 0
        with ctx.tx() as s:
            for device_id in store.unknown_device_ids(
                s, campaign_id=ctx.campaign_id, device_ids=explicit_ids(self.spec)
            ):
                count += 1
                if len(shown) < SHOWN:
                    shown.append(device_id)
        ctx.event(
            "targets_not_added",
            data={
                "count": count,
                "devices": shown,
                "devices_file": targeting.explicit_key,
                "why": "added to targets.devices / devices_file after the campaign was "
                "planned; its devices are fixed at planning: start a new campaign for them",
            },
        )
        if count:
            log.warning(
                "%s: %d devices added to the target list after planning are not added",
                self.spec.name,
                count,
            )

    def drop_pending(
        self, wave_index: int, pending: dict[int, list[str]], targeting: Targeting
    ) -> dict[int, list[str]]:
        """Pending devices the target lists no longer allow: SKIPPED (with the reason)
        and named in a ``devices_dropped`` event; returns the rest."""
        ctx = self.ctx
        kept: dict[int, list[str]] = {}
        dropped: dict[str, list[str]] = {}
        for attempt, ids in pending.items():
            keep, gone = screen_targets(
                ids, excluded=targeting.excluded, targeted=targeting.targeted
            )
            if keep:
                kept[attempt] = keep
            for reason, dev in gone.items():
                dropped.setdefault(reason, []).extend(dev)
        for reason, ids in dropped.items():
            skip = SkipReason(reason)
            with ctx.tx() as s:
                changed = store.skip_pending_devices(
                    s,
                    campaign_id=ctx.campaign_id,
                    device_ids=ids,
                    reason=f"{skip.value}: {skip.text}",
                    now=ctx.now(),
                )
            if changed:
                ctx.event(
                    "devices_dropped",
                    subject=f"wave {wave_index}",
                    data={
                        "reason": skip.value,
                        "why": _DROP_WHY[skip],
                        "count": len(changed),
                        "devices": sorted(changed)[:SHOWN],
                        "status": D.SKIPPED.value,
                    },
                )
                log.warning(
                    "%s: wave %d: %d devices dropped (%s)",
                    self.spec.name,
                    wave_index,
                    len(changed),
                    _DROP_WHY[skip],
                )
        return kept

    def report_not_retried(self, wave_index: int, dropped: dict[str, list[str]]) -> None:
        """Failed devices that will not be resubmitted because the lists dropped them
        (they keep their failure), once per run."""
        for reason, ids in dropped.items():
            new = sorted(set(ids) - self._not_retried)
            if not new:
                continue
            self._not_retried.update(new)
            skip = SkipReason(reason)
            self.ctx.event(
                "devices_dropped",
                subject=f"wave {wave_index}",
                data={
                    "reason": skip.value,
                    "why": f"{_DROP_WHY[skip]}; not resubmitted, the failure stays",
                    "count": len(new),
                    "devices": new[:SHOWN],
                    "status": "not retried",
                },
            )

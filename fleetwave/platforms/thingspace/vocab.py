"""ThingSpace's statuses mapped onto fleetwave's task states and device outcomes.

FOTA v1 upgrades move RequestPending -> Queued -> InProgress -> Finished, or end in
RequestFailed / UpgradeFailed (or Cancelled when cancelled before they start); FOTA v2
campaigns move CampaignRequestPending -> CampaignRequestQueued -> CampaignScheduled ->
CampaignEnded, or end Cancelled / Aborted / Failed / RequestFailed. A device's status is
per upgrade or campaign: pending (RequestPending, Queued, Accepted ...), running
(InProgress, Downloading ...), and final (UpgradeSuccess, UpgradeFailed, DeviceRejected,
Cancelled ...). Unknown statuses count as running, never as final, so nothing is
decided on a word the adapter does not know.
"""

from __future__ import annotations

from collections.abc import Iterable

from fleetwave.platforms.base import DeviceOutcome, OutcomeCounts, TaskState

__all__ = [
    "V1_LIVE",
    "V2_LIVE",
    "counts_of",
    "device_outcome",
    "final_statuses",
    "is_final_task_status",
    "live_statuses",
    "task_state",
]

V1_LIVE = ("RequestPending", "Queued", "InProgress")
V1_FINAL = ("Finished", "RequestFailed", "UpgradeFailed", "Cancelled")
V2_LIVE = ("CampaignRequestPending", "CampaignRequestQueued", "CampaignScheduled")
V2_FINAL = (
    "CampaignEnded",
    "CampaignCancelled",
    "CampaignAborted",
    "CampaignFailed",
    "CampaignRequestFailed",
)

_DEVICE: dict[str, DeviceOutcome] = {
    # waiting for the schedule or the device
    "requestpending": DeviceOutcome.PENDING,
    "queued": DeviceOutcome.PENDING,
    "pending": DeviceOutcome.PENDING,
    "accepted": DeviceOutcome.PENDING,
    "scheduled": DeviceOutcome.PENDING,
    # on its way
    "inprogress": DeviceOutcome.RUNNING,
    "started": DeviceOutcome.RUNNING,
    "downloading": DeviceOutcome.RUNNING,
    "downloaded": DeviceOutcome.RUNNING,
    "downloadsuccess": DeviceOutcome.RUNNING,
    "installing": DeviceOutcome.RUNNING,
    "installed": DeviceOutcome.RUNNING,
    # final
    "upgradesuccess": DeviceOutcome.SUCCEEDED,
    "success": DeviceOutcome.SUCCEEDED,
    "succeeded": DeviceOutcome.SUCCEEDED,
    "finished": DeviceOutcome.SUCCEEDED,
    "completed": DeviceOutcome.SUCCEEDED,
    "upgradefailed": DeviceOutcome.FAILED,
    "requestfailed": DeviceOutcome.FAILED,
    "devicerejected": DeviceOutcome.FAILED,
    "downloadfailed": DeviceOutcome.FAILED,
    "installfailed": DeviceOutcome.FAILED,
    "failed": DeviceOutcome.FAILED,
    "cancelled": DeviceOutcome.CANCELLED,
    "canceled": DeviceOutcome.CANCELLED,
    "removed": DeviceOutcome.CANCELLED,
    "aborted": DeviceOutcome.CANCELLED,
    "expired": DeviceOutcome.TIMED_OUT,
    "timeout": DeviceOutcome.TIMED_OUT,
    "timedout": DeviceOutcome.TIMED_OUT,
}


def device_outcome(
    status: str | None, *, task_final: bool = False, reason: str | None = None
) -> DeviceOutcome:
    """The neutral outcome of a device status. A device rejected because its upgrade was
    cancelled is CANCELLED; one still pending or running when its upgrade or campaign has
    ended did not finish in time: TIMED_OUT."""
    outcome = _DEVICE.get((status or "").replace(" ", "").replace("_", "").lower())
    if outcome is None:
        outcome = DeviceOutcome.RUNNING
    if outcome is DeviceOutcome.FAILED and "cancel" in (reason or "").lower():
        return DeviceOutcome.CANCELLED
    if task_final and not outcome.is_final:
        return DeviceOutcome.TIMED_OUT
    return outcome


def is_final_task_status(status: str | None) -> bool:
    """Whether an upgrade's or campaign's own status is final."""
    return (status or "") in V1_FINAL or (status or "") in V2_FINAL


def final_statuses(version: int) -> tuple[str, ...]:
    """The statuses of upgrades (v1) or campaigns (v2) that have ended."""
    return V1_FINAL if version == 1 else V2_FINAL


def live_statuses(version: int) -> tuple[str, ...]:
    """The statuses of upgrades (v1) or campaigns (v2) that may still start devices."""
    return V1_LIVE if version == 1 else V2_LIVE


def counts_of(outcomes: Iterable[DeviceOutcome]) -> OutcomeCounts:
    """Devices per outcome."""
    tally = dict.fromkeys(DeviceOutcome, 0)
    total = 0
    for o in outcomes:
        tally[o] += 1
        total += 1
    return OutcomeCounts(
        total=total,
        pending=tally[DeviceOutcome.PENDING],
        running=tally[DeviceOutcome.RUNNING],
        succeeded=tally[DeviceOutcome.SUCCEEDED],
        failed=tally[DeviceOutcome.FAILED],
        cancelled=tally[DeviceOutcome.CANCELLED],
        timed_out=tally[DeviceOutcome.TIMED_OUT],
    )


def task_state(status: str | None, counts: OutcomeCounts) -> TaskState:
    """The neutral state of an upgrade or campaign from its status and its devices."""
    if is_final_task_status(status):
        return TaskState.FINISHED
    if counts.total and counts.finished == counts.total:
        return TaskState.FINISHED
    if counts.running or counts.finished:
        return TaskState.RUNNING
    return TaskState.PENDING

"""Applying neutral upgrade events to device runs: what each event asks of a device run."""

from __future__ import annotations

import pendulum
import pytest

from fleetwave.notify.apply import to_device_result
from fleetwave.platforms.base import (
    DeviceOutcome,
    PackageKind,
    UpgradeEvent,
    UpgradeEventKind,
    UpgradeStep,
)
from fleetwave.store import ChunkKind, DeviceRunStatus

NOW = pendulum.datetime(2026, 1, 5, tz="UTC")


def step(s: UpgradeStep) -> UpgradeEvent:
    return UpgradeEvent(UpgradeEventKind.STEP, PackageKind.SOFTWARE, "dev-1", "op-1", NOW, step=s)


def result(o: DeviceOutcome) -> UpgradeEvent:
    return UpgradeEvent(
        UpgradeEventKind.RESULT, PackageKind.FIRMWARE, "dev-1", "op-1", NOW, outcome=o
    )


@pytest.mark.parametrize(
    ("event", "chunk", "status", "kind"),
    [
        (step(UpgradeStep.DOWNLOADING), ChunkKind.UPGRADE, DeviceRunStatus.IN_PROGRESS, None),
        (step(UpgradeStep.DOWNLOADING), ChunkKind.ROLLBACK, None, None),
        (step(UpgradeStep.IDLE), ChunkKind.UPGRADE, None, None),
        (result(DeviceOutcome.SUCCEEDED), ChunkKind.UPGRADE, DeviceRunStatus.SUCCEEDED, None),
        (result(DeviceOutcome.SUCCEEDED), ChunkKind.ROLLBACK, DeviceRunStatus.ROLLED_BACK, None),
        (result(DeviceOutcome.FAILED), ChunkKind.UPGRADE, DeviceRunStatus.FAILED, "fail"),
        (result(DeviceOutcome.FAILED), ChunkKind.ROLLBACK, DeviceRunStatus.ROLLBACK_FAILED, "fail"),
        (result(DeviceOutcome.CANCELLED), ChunkKind.UPGRADE, DeviceRunStatus.FAILED, "stop"),
        (result(DeviceOutcome.TIMED_OUT), ChunkKind.UPGRADE, DeviceRunStatus.TIMED_OUT, "timeout"),
    ],
)
def test_device_result_mapping(
    event: UpgradeEvent, chunk: ChunkKind, status: DeviceRunStatus | None, kind: str | None
) -> None:
    r = to_device_result(event, chunk)
    assert (r.status if r else None) == status
    assert (r.failure_kind if r else None) == kind

"""fleetwave.notify: push notifications from the platform, applied to device runs.

:class:`PushChannel` is the one object the engine uses: ``start()``, ``callback_url``,
``await subscribe_all(platform)``, ``healthy(now, campaign_id)``, ``expect(...)``,
``stop()``. :class:`PushHealth` is the slice of it the monitor needs (fakes implement it).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pendulum

from fleetwave.notify.apply import (
    ApplyOutcome,
    apply_events,
    to_device_result,
)
from fleetwave.notify.channel import PushChannel, PushStats
from fleetwave.notify.events import (
    PushParseError,
    PushParser,
    UpgradeEvent,
    UpgradeEventKind,
    UpgradeStep,
)
from fleetwave.notify.settings import NotifySettings

__all__ = [
    "ApplyOutcome",
    "NotifySettings",
    "PushChannel",
    "PushHealth",
    "PushParseError",
    "PushParser",
    "PushStats",
    "UpgradeEvent",
    "UpgradeEventKind",
    "UpgradeStep",
    "apply_events",
    "to_device_result",
]


@runtime_checkable
class PushHealth(Protocol):
    """What the monitor asks of push: may it poll slowly now, and when was push last heard?"""

    def healthy(
        self,
        now: pendulum.DateTime,
        campaign_id: int | None = None,
        *,
        quiet_after: float | None = None,
    ) -> bool: ...

    def last_seen(self, campaign_id: int | None = None) -> pendulum.DateTime | None: ...

    def expect(self, campaign_id: int, now: pendulum.DateTime) -> None: ...

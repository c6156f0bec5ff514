"""Liveness of the push channel: when a notification was last heard, overall and per campaign.

The engine's monitor asks :meth:`Liveness.healthy` before each round: healthy means push
is subscribed and something arrived within ``quiet_after`` seconds (or the grace period
since subscribing or since the engine last said it expects notifications has not run out),
so polling can slow down; otherwise polling takes over at its normal pace.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pendulum

__all__ = ["Liveness"]


class Liveness:
    """Thread-safe timestamps (campaign time, from the channel's clock)."""

    def __init__(self, quiet_after: float) -> None:
        if quiet_after <= 0:
            raise ValueError(f"quiet_after must be positive seconds, not {quiet_after}")
        self.quiet_after = quiet_after
        self._lock = threading.Lock()
        self._subscribed_at: pendulum.DateTime | None = None
        self._last_any: pendulum.DateTime | None = None
        self._last: dict[int, pendulum.DateTime] = {}
        self._expected: dict[int, pendulum.DateTime] = {}
        self._running = False

    def set_running(self, running: bool) -> None:
        with self._lock:
            self._running = running

    def mark_subscribed(self, now: pendulum.DateTime) -> None:
        with self._lock:
            self._subscribed_at = now

    def mark_received(self, at: pendulum.DateTime) -> None:
        with self._lock:
            if self._last_any is None or at > self._last_any:
                self._last_any = at

    def mark_campaigns(self, seen: Mapping[int, pendulum.DateTime]) -> None:
        with self._lock:
            for campaign_id, at in seen.items():
                prev = self._last.get(campaign_id)
                if prev is None or at > prev:
                    self._last[campaign_id] = at

    def expect(self, campaign_id: int, now: pendulum.DateTime) -> None:
        """Start a grace period for a campaign (e.g. it just submitted tasks)."""
        with self._lock:
            self._expected[campaign_id] = now

    def last_seen(self, campaign_id: int | None = None) -> pendulum.DateTime | None:
        """The last notification that was applied to ``campaign_id`` (any, if None)."""
        with self._lock:
            return self._last_any if campaign_id is None else self._last.get(campaign_id)

    def healthy(
        self,
        now: pendulum.DateTime,
        campaign_id: int | None = None,
        *,
        quiet_after: float | None = None,
    ) -> bool:
        """Whether push may be trusted right now (see the module docstring)."""
        window = self.quiet_after if quiet_after is None else quiet_after
        with self._lock:
            if not self._running or self._subscribed_at is None:
                return False
            marks: list[pendulum.DateTime | None] = [self._subscribed_at]
            if campaign_id is None:
                marks.append(self._last_any)
            else:
                marks += [self._last.get(campaign_id), self._expected.get(campaign_id)]
        latest = max(m for m in marks if m is not None)  # subscribed_at is set
        return (now - latest).total_seconds() <= window

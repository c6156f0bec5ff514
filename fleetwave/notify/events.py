"""Pushed upgrade events in fleetwave's words.

Each platform parses its own notification bodies (``Platform.parse_push``) into
:class:`~fleetwave.platforms.base.UpgradeEvent` values and raises
:class:`~fleetwave.platforms.base.PushParseError` for a body it cannot understand; the
receiver, the writer and :mod:`fleetwave.notify.apply` see only those.
"""

from __future__ import annotations

from collections.abc import Callable

from fleetwave.platforms.base import (
    PushParseError,
    UpgradeEvent,
    UpgradeEventKind,
    UpgradeStep,
)

__all__ = ["PushParseError", "PushParser", "UpgradeEvent", "UpgradeEventKind", "UpgradeStep"]

PushParser = Callable[[bytes], list[UpgradeEvent]]
"""A platform's ``parse_push``: the events of one pushed body, or PushParseError."""

"""Errors of the campaign state store, each with a stable ``code``.

::

    UserError
    └── StoreError                  code "store"
        ├── DatabaseConfigError     "db_config"        bad FLEETWAVE_DB_URL / unreachable database
        ├── SchemaOutOfDateError    "schema_out_of_date"  run `fleetwave db upgrade`
        ├── NotFoundError           "not_found"        no such campaign / wave / chunk
        ├── IllegalTransitionError  "illegal_transition"  a status change the state machine forbids
        ├── SpecChangedError        "spec_changed"     a started campaign's spec changed
        ├── DeviceClaimedError      "device_claimed"   a device is active in another campaign
        ├── LeaseLostError          "lease_lost"       another flow run holds the campaign's lease
        └── ConflictError           "conflict"         the stored row disagrees (e.g. operationId)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fleetwave.errors import UserError

__all__ = [
    "ConflictError",
    "DatabaseConfigError",
    "DeviceClaimedError",
    "IllegalTransitionError",
    "LeaseLostError",
    "NotFoundError",
    "SchemaOutOfDateError",
    "SpecChangedError",
    "StoreError",
]


class StoreError(UserError):
    """Base of the store's errors; ``code`` is stable for scripts and tests."""

    code: str = "store"


class DatabaseConfigError(StoreError):
    """The database URL is malformed, its driver missing, or the database unreachable."""

    code = "db_config"


class SchemaOutOfDateError(StoreError):
    """The database schema is not at the revision this fleetwave needs."""

    code = "schema_out_of_date"

    def __init__(self, *, url: str, current: str | None, head: str) -> None:
        self.url, self.current, self.head = url, current, head
        super().__init__(
            f"the database at {url} is at schema revision {current or 'none (empty)'}, "
            f"this fleetwave needs {head}",
            hint="run `fleetwave db upgrade`",
        )


class NotFoundError(StoreError):
    """A campaign, wave or chunk named by the caller does not exist."""

    code = "not_found"


class IllegalTransitionError(StoreError):
    """A status change the state machine does not allow (see ``models.TRANSITIONS``)."""

    code = "illegal_transition"

    def __init__(
        self, *, entity: str, subject: str, current: str, target: str, count: int | None = None
    ) -> None:
        self.entity, self.subject, self.current, self.target = entity, subject, current, target
        self.count = count
        what = f"{count} device(s) of {subject}" if count is not None else subject
        super().__init__(
            f"{what}: {entity} may not go from {current!r} to {target!r}",
            hint="see fleetwave.store.models.TRANSITIONS for the allowed moves",
        )


class SpecChangedError(StoreError):
    """A campaign that already started was given a different spec."""

    code = "spec_changed"

    def __init__(self, *, name: str, status: str, stored_hash: str, new_hash: str) -> None:
        self.name, self.stored_hash, self.new_hash = name, stored_hash, new_hash
        super().__init__(
            f"campaign {name!r} ({status}) was started with spec {stored_hash[:12]}, "
            f"the file now gives spec {new_hash[:12]}",
            hint="revert the file, give the campaign a new name, or allow the change explicitly",
        )


class DeviceClaimedError(StoreError):
    """Devices are active in another running campaign (the database refused the claim)."""

    code = "device_claimed"

    def __init__(
        self, *, campaign: str, conflicts: Mapping[str, Sequence[str]], total: int
    ) -> None:
        # conflicts: other campaign name -> a few of the device IDs it holds
        self.campaign, self.conflicts, self.total = campaign, dict(conflicts), total
        parts = [
            f"{', '.join(ids)} held by campaign {other!r}" for other, ids in self.conflicts.items()
        ]
        super().__init__(
            f"campaign {campaign!r}: {total} device(s) are active in another campaign: "
            + "; ".join(parts),
            hint=(
                "wait for that campaign to end, halt it with `fleetwave halt "
                f"{next(iter(self.conflicts), 'NAME')}` to release its devices, or exclude "
                "them in targets.exclude or targets.exclude_file"
            ),
        )


class LeaseLostError(StoreError):
    """This flow run does not (or no longer) hold the campaign's lease."""

    code = "lease_lost"


class ConflictError(StoreError):
    """The stored row contradicts the request (e.g. a chunk already has another operationId)."""

    code = "conflict"

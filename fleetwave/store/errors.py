"""Errors of the campaign state store, each with a stable ``code``.

::

    UserError
    └── StoreError                  code "store"
        ├── DatabaseConfigError     "db_config"        bad URL / unreachable / not a database
        ├── DatabaseReadOnlyError   "db_read_only"     the database file or directory is read-only
        ├── NoStoreError            "no_store"         no store there (missing, empty, in-memory)
        ├── SchemaOutOfDateError    "schema_out_of_date"  run `fleetwave db upgrade`
        ├── NotFoundError           "not_found"        no such campaign / wave / chunk
        ├── IllegalTransitionError  "illegal_transition"  a status change the state machine forbids
        ├── SpecChangedError        "spec_changed"     a started campaign's immutable fields changed
        ├── DeviceClaimedError      "device_claimed"   a device is active in another campaign
        ├── LeaseLostError          "lease_lost"       another flow run holds the campaign's lease
        └── ConflictError           "conflict"         the stored row disagrees (e.g. operationId)
            └── OperationIdCollisionError "operation_id_collision"  a platform reused an id
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fleetwave.errors import UserError

__all__ = [
    "ConflictError",
    "DatabaseConfigError",
    "DatabaseReadOnlyError",
    "DeviceClaimedError",
    "IllegalTransitionError",
    "LeaseLostError",
    "NoStoreError",
    "NotFoundError",
    "OperationIdCollisionError",
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


class DatabaseReadOnlyError(StoreError):
    """The database (a SQLite file or its directory) cannot be written by this user."""

    code = "db_read_only"


class NoStoreError(StoreError):
    """No fleetwave store where one was expected: a missing file, an empty database, or an
    in-memory one whose state a run would lose (``fleetwave db upgrade`` or ``--new-store``)."""

    code = "no_store"


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
    """A campaign that already started was given a spec that changes what it may not."""

    code = "spec_changed"

    #: The command that accepts the change; the CLI puts the real file name in.
    ACCEPT = "fleetwave run FILE --accept-spec-change"

    def __init__(
        self,
        *,
        name: str,
        status: str,
        stored_hash: str,
        new_hash: str,
        fields: Sequence[str] | None = None,
        accept: str = ACCEPT,
    ) -> None:
        self.name, self.status = name, status
        self.stored_hash, self.new_hash = stored_hash, new_hash
        self.fields = list(fields or [])
        if self.fields:
            shown = ", ".join(self.fields[:6])
            more = f" and {len(self.fields) - 6} more" if len(self.fields) > 6 else ""
            what = (
                f"the file changes {shown}{more}, which may not change once a campaign has started"
            )
        else:
            what = (
                f"it was started with spec {stored_hash[:12]}, the file now gives spec "
                f"{new_hash[:12]}"
            )
        super().__init__(
            f"campaign {name!r} ({status}): {what}",
            hint=f"revert the file, give the campaign a new name, or accept it: `{accept}`",
        )

    def with_command(self, accept: str) -> SpecChangedError:
        """The same error with the accepting command spelt out (e.g. the real file name)."""
        return SpecChangedError(
            name=self.name,
            status=self.status,
            stored_hash=self.stored_hash,
            new_hash=self.new_hash,
            fields=self.fields,
            accept=accept,
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


class OperationIdCollisionError(ConflictError):
    """The platform gave a new task an operationId another chunk of the same connection holds.

    The new task's intent is kept (never abandoned, its devices never resubmitted): the
    operator must look at the platform before the campaign goes on.
    """

    code = "operation_id_collision"

    def __init__(
        self,
        *,
        operation_id: str,
        connection_key: str,
        chunk_id: int,
        campaign: str,
        devices: int,
        other_chunk_id: int,
        other_campaign: str,
    ) -> None:
        self.operation_id, self.connection_key = operation_id, connection_key
        self.chunk_id, self.campaign = chunk_id, campaign
        self.other_chunk_id, self.other_campaign = other_chunk_id, other_campaign
        super().__init__(
            f"the platform {connection_key or '(unnamed connection)'} gave operationId "
            f"{operation_id} to the task of chunk {chunk_id} (campaign {campaign!r}, "
            f"{devices} devices), but the store already holds {operation_id} for chunk "
            f"{other_chunk_id} (campaign {other_campaign!r})",
            hint=(
                "operationIds must be unique per platform connection: was the platform reset "
                f"or replaced? Check task {operation_id} on the platform; fleetwave keeps "
                f"chunk {chunk_id}'s devices out of new tasks and stops each run here "
                f"(`fleetwave halt {campaign}` stops the campaign)"
            ),
        )

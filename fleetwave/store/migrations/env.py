"""Alembic environment: runs on the connection ``fleetwave.store.db`` passes (no alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import fleetwave.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "fleetwave's migrations run through `fleetwave db upgrade` "
        "(fleetwave.store.db.upgrade_schema), not the alembic command"
    )

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

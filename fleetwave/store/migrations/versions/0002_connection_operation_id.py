"""operationId unique per platform connection: chunk.connection_key, chunk.collided_operation_id.

``chunk.operation_id`` was unique across the whole store, so a platform that hands out an
id the store has seen (a second platform, a restarted one) crashed the run. Now
``(connection_key, operation_id)`` is unique; chunks written before get the empty key
(the engine assigns a campaign's unkeyed chunks to its connection on its next run).

Revision ID: 0002_connection_operation_id
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_connection_operation_id"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

# SQLite keeps 0001's unique constraint on operation_id unnamed: batch mode names it by this
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _operation_id_unique_name(bind: sa.Connection) -> str | None:
    for uc in sa.inspect(bind).get_unique_constraints("chunk"):
        if uc["column_names"] == ["operation_id"]:
            return uc["name"] or "uq_chunk_operation_id"
    return None


def upgrade() -> None:
    bind = op.get_bind()
    old_unique = _operation_id_unique_name(bind)
    with op.batch_alter_table("chunk", naming_convention=_NAMING) as batch:
        batch.add_column(
            sa.Column("connection_key", sa.String(200), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("collided_operation_id", sa.String(200), nullable=True))
        if old_unique is not None:
            batch.drop_constraint(old_unique, type_="unique")
        batch.create_unique_constraint(
            "uq_chunk_connection_operation", ["connection_key", "operation_id"]
        )
        batch.create_index("ix_chunk_operation_id", ["operation_id"])


def downgrade() -> None:
    # fails (IntegrityError) while two connections hold the same operationId: by design
    with op.batch_alter_table("chunk", naming_convention=_NAMING) as batch:
        batch.drop_index("ix_chunk_operation_id")
        batch.drop_constraint("uq_chunk_connection_operation", type_="unique")
        batch.drop_column("collided_operation_id")
        batch.drop_column("connection_key")
        batch.create_unique_constraint("uq_chunk_operation_id", ["operation_id"])

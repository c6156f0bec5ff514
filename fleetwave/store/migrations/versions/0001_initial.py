"""Initial schema: campaign, wave, chunk, device_run, device_claim, event.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from fleetwave.store.models import UTCDateTime

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _status() -> sa.types.TypeEngine:
    return sa.String(24)


def _ts() -> UTCDateTime:
    return UTCDateTime()


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("status", _status(), nullable=False),
        sa.Column("status_reason", sa.Text),
        sa.Column("flow_run_id", sa.String(64)),
        sa.Column("lease_holder", sa.String(200)),
        sa.Column("lease_expires_at", _ts()),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("started_at", _ts()),
        sa.Column("finished_at", _ts()),
    )
    op.create_index("ix_campaign_status", "campaign", ["status"])

    op.create_table(
        "wave",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "campaign_id",
            sa.Integer,
            sa.ForeignKey("campaign.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("planned_size", sa.Integer, nullable=False),
        sa.Column("status", _status(), nullable=False),
        sa.Column("status_reason", sa.Text),
        sa.Column("approval_decision", sa.String(24)),
        sa.Column("approval_by", sa.String(200)),
        sa.Column("approval_comment", sa.Text),
        sa.Column("approval_at", _ts()),
        sa.Column("appointment_at", _ts()),
        sa.Column("soak_until", _ts()),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("started_at", _ts()),
        sa.Column("finished_at", _ts()),
        sa.UniqueConstraint("campaign_id", "index", name="uq_wave_campaign_index"),
    )

    op.create_table(
        "chunk",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "campaign_id",
            sa.Integer,
            sa.ForeignKey("campaign.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("wave_index", sa.Integer, nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", _status(), nullable=False),
        sa.Column("package_kind", sa.String(24), nullable=False),
        sa.Column("file_id", sa.String(200), nullable=False),
        sa.Column("policy", JSON, nullable=False),
        sa.Column("device_ids", JSON, nullable=False),
        sa.Column("device_count", sa.Integer, nullable=False),
        sa.Column("status", _status(), nullable=False),
        sa.Column("operation_id", sa.String(200), unique=True),
        sa.Column("reconciled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("note", sa.Text),
        sa.Column("platform_status", sa.String(24)),
        sa.Column("stats", JSON),
        sa.Column("last_polled_at", _ts()),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("submitted_at", _ts()),
        sa.Column("finished_at", _ts()),
        sa.UniqueConstraint(
            "campaign_id", "kind", "wave_index", "round", "seq", name="uq_chunk_slot"
        ),
    )
    op.create_index("ix_chunk_campaign_status", "chunk", ["campaign_id", "status"])

    op.create_table(
        "device_run",
        sa.Column(
            "campaign_id",
            sa.Integer,
            sa.ForeignKey("campaign.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("device_id", sa.String(128), primary_key=True),
        sa.Column("wave_index", sa.Integer, nullable=False),
        sa.Column("chunk_id", sa.Integer, sa.ForeignKey("chunk.id", ondelete="SET NULL")),
        sa.Column("status", _status(), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failure_kind", sa.String(64)),
        sa.Column("failure_detail", sa.Text),
        sa.Column("source_version", sa.String(100)),
        sa.Column("target_version", sa.String(100)),
        sa.Column("current_version", sa.String(100)),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts()),
    )
    op.create_index(
        "ix_device_run_wave_status",
        "device_run",
        ["campaign_id", "wave_index", "status", "device_id"],
    )
    op.create_index("ix_device_run_status", "device_run", ["campaign_id", "status", "device_id"])
    op.create_index("ix_device_run_chunk", "device_run", ["chunk_id"])

    op.create_table(
        "device_claim",
        sa.Column("device_id", sa.String(128), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.Integer,
            sa.ForeignKey("campaign.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("claimed_at", _ts(), nullable=False),
    )
    op.create_index("ix_device_claim_campaign", "device_claim", ["campaign_id"])

    op.create_table(
        "event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaign.id", ondelete="CASCADE")),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200)),
        sa.Column("data", JSON, nullable=False),
        sa.Column("actor", sa.String(200)),
        sa.Column("flow_run_id", sa.String(64)),
        sa.Column("at", _ts(), nullable=False),
    )
    op.create_index("ix_event_campaign_id", "event", ["campaign_id", "id"])


def downgrade() -> None:
    for table in ("event", "device_claim", "device_run", "chunk", "wave", "campaign"):
        op.drop_table(table)

"""Consent campaigns: consent_plan, device_consent, consent_owner, device_owner,
device_auto_upgrade (end users confirm, appoint or cancel; the auto-confirm switch).

Revision ID: 0003_consent
Revises: 0002_connection_operation_id
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from fleetwave.store.models import UTCDateTime

revision = "0003_consent"
down_revision = "0002_connection_operation_id"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _campaign_fk() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "campaign_id",
        sa.Integer,
        sa.ForeignKey("campaign.id", ondelete="CASCADE"),
        primary_key=True,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "consent_plan",
        _campaign_fk(),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.Column("windows", JSON, nullable=False),
        sa.Column("delivery", sa.String(24), nullable=False),
        sa.Column("target_version", sa.String(100), nullable=False),
        sa.Column("package_url", sa.Text),
        sa.Column("package_sha256", sa.String(64)),
        sa.Column("package_size", sa.BigInteger),
        sa.Column("description", sa.Text),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "device_consent",
        _campaign_fk(),
        sa.Column("device_id", sa.String(128), primary_key=True, nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("appoint_start", UTCDateTime()),
        sa.Column("appoint_end", UTCDateTime()),
        sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("answered_by", sa.String(200)),
        sa.Column("answered_at", UTCDateTime()),
        sa.Column("app_status", sa.String(24)),
        sa.Column("app_detail", sa.Text),
        sa.Column("app_version", sa.String(100)),
        sa.Column("app_reported_at", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_device_consent_device", "device_consent", ["device_id"])
    op.create_index("ix_device_consent_state", "device_consent", ["campaign_id", "state"])
    op.create_table(
        "consent_owner",
        sa.Column("owner_id", sa.String(200), primary_key=True, nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=True, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("token_issued_at", UTCDateTime()),
    )
    op.create_table(
        "device_owner",
        sa.Column("device_id", sa.String(128), primary_key=True, nullable=False),
        sa.Column(
            "owner_id",
            sa.String(200),
            sa.ForeignKey("consent_owner.owner_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("imported_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_device_owner_owner", "device_owner", ["owner_id"])
    op.create_table(
        "device_auto_upgrade",
        sa.Column("device_id", sa.String(128), primary_key=True, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("set_by", sa.String(200)),
        sa.Column("set_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "device_auto_upgrade",
        "device_owner",
        "consent_owner",
        "device_consent",
        "consent_plan",
    ):
        op.drop_table(table)

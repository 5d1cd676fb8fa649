"""Call control: applications, routes, media, recordings, the webhook outbox, signing keys.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Plain SQLAlchemy types only, as in 0001. ``DateTime(timezone=True)`` is the column type behind
``callbridge.store.schema.UTCDateTime``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _instant(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "call_control_applications",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("application_name", sa.String(255), nullable=False),
        sa.Column("webhook_event_url", sa.String(2048), nullable=False),
        sa.Column("webhook_event_failover_url", sa.String(2048), nullable=True),
        sa.Column("webhook_api_version", sa.String(8), nullable=False),
        sa.Column("webhook_timeout_secs", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("signing_secret", sa.String(128), nullable=True),
        _instant("created_at"),
        _instant("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_call_control_applications"),
    )
    op.create_index(
        "ix_call_control_applications_created_at", "call_control_applications", ["created_at"]
    )
    op.create_table(
        "routes",
        sa.Column("destination", sa.String(16), nullable=False),
        sa.Column("application_id", sa.String(64), nullable=False),
        _instant("created_at"),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["call_control_applications.id"],
            name="fk_routes_application_id_call_control_applications",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("destination", name="pk_routes"),
    )
    op.create_index("ix_routes_application_id", "routes", ["application_id"])
    op.create_table(
        "media",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("media_name", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        _instant("created_at"),
        _instant("updated_at"),
        _instant("expires_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_media"),
        sa.UniqueConstraint("media_name", name="uq_media_media_name"),
    )
    op.create_index("ix_media_expires_at", "media", ["expires_at"])
    op.create_table(
        "recordings",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("call_control_id", sa.String(128), nullable=True),
        sa.Column("call_leg_id", sa.String(128), nullable=True),
        sa.Column("call_session_id", sa.String(128), nullable=True),
        sa.Column("conference_id", sa.String(64), nullable=True),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("channels", sa.String(8), nullable=False),
        sa.Column("duration_millis", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _instant("recording_started_at"),
        _instant("recording_ended_at"),
        _instant("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_recordings"),
    )
    op.create_index("ix_recordings_call_control_id", "recordings", ["call_control_id"])
    op.create_index("ix_recordings_conference_id", "recordings", ["conference_id"])
    op.create_index("ix_recordings_created_at", "recordings", ["created_at"])
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("ordering_key", sa.String(128), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("failover_url", sa.String(2048), nullable=True),
        sa.Column("data_json", sa.Text(), nullable=False),
        sa.Column("application_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _instant("next_attempt_at"),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        _instant("lease_expires_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _instant("created_at"),
        _instant("delivered_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_outbox"),
        sa.UniqueConstraint("message_id", name="uq_webhook_outbox_message_id"),
    )
    op.create_index(
        "ix_webhook_outbox_status_ordering_key_id",
        "webhook_outbox",
        ["status", "ordering_key", "id"],
    )
    op.create_index(
        "ix_webhook_outbox_status_next_attempt_at", "webhook_outbox", ["status", "next_attempt_at"]
    )
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("private_key", sa.String(64), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        _instant("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_signing_keys"),
        sa.UniqueConstraint("purpose", name="uq_signing_keys_purpose"),
    )


def downgrade() -> None:
    op.drop_table("signing_keys")
    op.drop_index("ix_webhook_outbox_status_next_attempt_at", table_name="webhook_outbox")
    op.drop_index("ix_webhook_outbox_status_ordering_key_id", table_name="webhook_outbox")
    op.drop_table("webhook_outbox")
    op.drop_index("ix_recordings_created_at", table_name="recordings")
    op.drop_index("ix_recordings_conference_id", table_name="recordings")
    op.drop_index("ix_recordings_call_control_id", table_name="recordings")
    op.drop_table("recordings")
    op.drop_index("ix_media_expires_at", table_name="media")
    op.drop_table("media")
    op.drop_index("ix_routes_application_id", table_name="routes")
    op.drop_table("routes")
    op.drop_index("ix_call_control_applications_created_at", table_name="call_control_applications")
    op.drop_table("call_control_applications")

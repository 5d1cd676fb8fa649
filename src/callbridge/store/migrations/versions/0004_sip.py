"""SIP (issue 11): users' digest credentials, registered contacts (bindings), SIP secrets.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Only new tables: nothing existing changes. Credentials and bindings go with their user
(``ON DELETE CASCADE``); constraint names follow ``schema.NAMING_CONVENTION``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _instant(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "sip_credentials",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("realm", sa.String(255), nullable=False),
        sa.Column("ha1_md5", sa.String(32), nullable=False),
        sa.Column("ha1_sha256", sa.String(64), nullable=False),
        _instant("updated_at"),
        _user_fk("sip_credentials"),
        sa.PrimaryKeyConstraint("user_id", name="pk_sip_credentials"),
    )
    op.create_table(
        "sip_bindings",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("binding_key", sa.String(64), nullable=False),
        sa.Column("contact", sa.String(2048), nullable=False),
        _instant("expires_at"),
        sa.Column("call_id", sa.String(255), nullable=False),
        sa.Column("cseq", sa.BigInteger(), nullable=False),
        sa.Column("q", sa.Float(), nullable=True),
        sa.Column("source_host", sa.String(64), nullable=False),
        sa.Column("source_port", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("connection_id", sa.String(128), nullable=True),
        sa.Column("instance_id", sa.String(255), nullable=True),
        sa.Column("reg_id", sa.Integer(), nullable=True),
        sa.Column("user_agent", sa.String(255), nullable=True),
        sa.Column("node_id", sa.String(64), nullable=True),
        _instant("created_at"),
        _instant("updated_at"),
        _user_fk("sip_bindings"),
        sa.PrimaryKeyConstraint("id", name="pk_sip_bindings"),
        sa.UniqueConstraint("user_id", "binding_key", name="uq_sip_bindings_user_id"),
    )
    op.create_index("ix_sip_bindings_user_id", "sip_bindings", ["user_id"])
    op.create_index("ix_sip_bindings_expires_at", "sip_bindings", ["expires_at"])
    op.create_index("ix_sip_bindings_node_id", "sip_bindings", ["node_id"])
    op.create_table(
        "sip_secrets",
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        _instant("created_at"),
        sa.PrimaryKeyConstraint("purpose", name="pk_sip_secrets"),
    )


def downgrade() -> None:
    op.drop_table("sip_secrets")
    op.drop_index("ix_sip_bindings_node_id", table_name="sip_bindings")
    op.drop_index("ix_sip_bindings_expires_at", table_name="sip_bindings")
    op.drop_index("ix_sip_bindings_user_id", table_name="sip_bindings")
    op.drop_table("sip_bindings")
    op.drop_table("sip_credentials")

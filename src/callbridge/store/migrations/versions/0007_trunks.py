"""SIP trunks, outbound routes, dial policies and number routing (issue 12).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

New tables ``trunks``, ``outbound_routes`` and ``dial_policies`` (each goes with its account,
``ON DELETE CASCADE``), and three columns on ``numbers``: ``target_kind`` and ``target_id``
(where an inbound call to the number goes; NULL for the numbers owned before, which keep
serving as caller ID only) and ``allow_outbound`` (false).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

DEFAULT = "default"


def _instant(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _account(table: str, *, primary: bool = False) -> list[Any]:
    column = sa.Column("account_id", sa.String(64), nullable=False, server_default=DEFAULT)
    if primary:
        column = sa.Column("account_id", sa.String(64), nullable=False)
    return [
        column,
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=f"fk_{table}_account_id_accounts",
            ondelete="CASCADE",
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "trunks",
        sa.Column("id", sa.String(64), nullable=False),
        *_account("trunks"),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("outbound_proxy", sa.String(255), nullable=True),
        sa.Column("username", sa.String(255), nullable=True),
        sa.Column("auth_username", sa.String(255), nullable=True),
        sa.Column("password", sa.String(255), nullable=True),
        sa.Column("register", sa.Boolean(), nullable=False),
        sa.Column("register_expires", sa.Integer(), nullable=False),
        sa.Column("inbound_acl", sa.Text(), nullable=False),
        sa.Column("inbound_username", sa.String(255), nullable=True),
        sa.Column("inbound_password", sa.String(255), nullable=True),
        sa.Column("codecs", sa.String(255), nullable=False),
        sa.Column("options_interval", sa.Integer(), nullable=False),
        sa.Column("max_calls", sa.Integer(), nullable=True),
        sa.Column("calls_per_minute", sa.Integer(), nullable=True),
        sa.Column("send_pai", sa.Boolean(), nullable=False),
        sa.Column("privacy", sa.String(16), nullable=False),
        sa.Column("registration_state", sa.String(16), nullable=False),
        sa.Column("registration_detail", sa.String(255), nullable=False),
        _instant("registration_updated_at", nullable=True),
        sa.Column("health", sa.String(16), nullable=False),
        sa.Column("health_detail", sa.String(255), nullable=False),
        _instant("health_updated_at", nullable=True),
        _instant("created_at"),
        _instant("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_trunks"),
        sa.UniqueConstraint("account_id", "name", name="uq_trunks_account_id"),
    )
    op.create_index("ix_trunks_account_id", "trunks", ["account_id"])
    op.create_table(
        "outbound_routes",
        sa.Column("id", sa.String(64), nullable=False),
        *_account("outbound_routes"),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("trunk_ids", sa.Text(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        _instant("created_at"),
        _instant("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_outbound_routes"),
        sa.UniqueConstraint("account_id", "prefix", name="uq_outbound_routes_account_id"),
    )
    op.create_index("ix_outbound_routes_account_id", "outbound_routes", ["account_id"])
    op.create_table(
        "dial_policies",
        *_account("dial_policies", primary=True),
        sa.Column("allow_prefixes", sa.Text(), nullable=True),
        sa.Column("deny_prefixes", sa.Text(), nullable=False),
        sa.Column("user_max_calls", sa.Integer(), nullable=False),
        sa.Column("user_calls_per_minute", sa.Integer(), nullable=False),
        _instant("updated_at"),
        sa.PrimaryKeyConstraint("account_id", name="pk_dial_policies"),
    )
    with op.batch_alter_table("numbers") as batch:
        batch.add_column(sa.Column("target_kind", sa.String(16), nullable=True))
        batch.add_column(sa.Column("target_id", sa.String(255), nullable=True))
        batch.add_column(
            sa.Column("allow_outbound", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("numbers") as batch:
        batch.drop_column("allow_outbound")
        batch.drop_column("target_id")
        batch.drop_column("target_kind")
    op.drop_table("dial_policies")
    op.drop_index("ix_outbound_routes_account_id", table_name="outbound_routes")
    op.drop_table("outbound_routes")
    op.drop_index("ix_trunks_account_id", table_name="trunks")
    op.drop_table("trunks")

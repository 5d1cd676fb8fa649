"""Accounts (tenants), scoped API keys, owned numbers; open CDRs, live calls and queues in the
database (issue 10).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Every existing row goes to the ``default`` account, so a single-account install looks exactly
as before. Extensions, media names and routes become unique within an account; login names
and numbers stay global. CDRs may now be ``open`` (written at a call's start; their end
fields are empty until it ends). SQLite runs the table changes in batch mode (env.py), which
rebuilds each table; constraint names follow ``schema.NAMING_CONVENTION``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

DEFAULT = "default"
# Tables whose rows belong to an account through a foreign key.
_OWNED = ("users", "api_keys", "call_control_applications", "media", "recordings")


def _instant(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _account_column() -> sa.Column[object]:
    return sa.Column("account_id", sa.String(64), nullable=False, server_default=DEFAULT)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("recording_notice", sa.Boolean(), nullable=False, server_default=sa.true()),
        _instant("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("name", name="uq_accounts_name"),
    )
    op.execute(
        sa.text(
            "INSERT INTO accounts (id, name, recording_notice, created_at) "
            f"VALUES ('{DEFAULT}', 'default', true, CURRENT_TIMESTAMP)"
        )
    )

    for table in _OWNED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(_account_column())
            batch.create_index(f"ix_{table}_account_id", ["account_id"])
            batch.create_foreign_key(
                f"fk_{table}_account_id_accounts",
                "accounts",
                ["account_id"],
                ["id"],
                ondelete="CASCADE",
            )
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_extension", type_="unique")
        batch.create_unique_constraint("uq_users_account_id", ["account_id", "extension"])
    with op.batch_alter_table("media") as batch:
        batch.drop_constraint("uq_media_media_name", type_="unique")
        batch.create_unique_constraint("uq_media_account_id", ["account_id", "media_name"])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("scope", sa.String(16), nullable=False, server_default="write"))
        batch.add_column(
            sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    # Routes: the destination is unique within an account (primary key account + destination).
    op.create_table(
        "routes_0003",
        sa.Column("account_id", sa.String(64), nullable=False, server_default=DEFAULT),
        sa.Column("destination", sa.String(16), nullable=False),
        sa.Column("application_id", sa.String(64), nullable=False),
        _instant("created_at"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_routes_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["call_control_applications.id"],
            name="fk_routes_application_id_call_control_applications_0003",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "destination", name="pk_routes_0003"),
    )
    op.execute(
        sa.text(
            "INSERT INTO routes_0003 (account_id, destination, application_id, created_at) "
            f"SELECT '{DEFAULT}', destination, application_id, created_at FROM routes"
        )
    )
    op.drop_index("ix_routes_application_id", table_name="routes")
    op.drop_table("routes")
    op.rename_table("routes_0003", "routes")
    op.create_index("ix_routes_application_id", "routes", ["application_id"])

    with op.batch_alter_table("cdrs") as batch:
        batch.add_column(_account_column())
        batch.create_index("ix_cdrs_account_id", ["account_id"])
        batch.add_column(sa.Column("state", sa.String(16), nullable=False, server_default="ended"))
        batch.add_column(sa.Column("node_id", sa.String(64), nullable=True))
        batch.create_index("ix_cdrs_node_id", ["node_id"])
        batch.alter_column("ended_at", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch.alter_column("duration_seconds", existing_type=sa.Float(), nullable=True)
        batch.alter_column("end_reason", existing_type=sa.String(32), nullable=True)

    op.create_table(
        "numbers",
        sa.Column("number", sa.String(16), nullable=False),
        _account_column(),
        _instant("created_at"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_numbers_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("number", name="pk_numbers"),
    )
    op.create_index("ix_numbers_account_id", "numbers", ["account_id"])

    op.create_table(
        "live_calls",
        sa.Column("call_control_id", sa.String(128), nullable=False),
        _account_column(),
        sa.Column("application_id", sa.String(64), nullable=True),
        sa.Column("node_id", sa.String(64), nullable=True),
        sa.Column("data_json", sa.Text(), nullable=False),
        _instant("created_at"),
        _instant("updated_at"),
        sa.PrimaryKeyConstraint("call_control_id", name="pk_live_calls"),
    )
    op.create_index("ix_live_calls_account_id", "live_calls", ["account_id"])
    op.create_index("ix_live_calls_node_id", "live_calls", ["node_id"])

    op.create_table(
        "queues",
        sa.Column("id", sa.Integer(), nullable=False),
        _account_column(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("max_size", sa.Integer(), nullable=True),
        _instant("created_at"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_queues_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_queues"),
        sa.UniqueConstraint("account_id", "name", name="uq_queues_account_id"),
    )
    op.create_index("ix_queues_account_id", "queues", ["account_id"])
    op.create_table(
        "queue_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("queue_id", sa.Integer(), nullable=False),
        sa.Column("call_control_id", sa.String(128), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=True),
        _instant("enqueued_at"),
        sa.ForeignKeyConstraint(
            ["queue_id"],
            ["queues.id"],
            name="fk_queue_entries_queue_id_queues",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_queue_entries"),
        sa.UniqueConstraint("call_control_id", name="uq_queue_entries_call_control_id"),
    )
    op.create_index("ix_queue_entries_queue_id_id", "queue_entries", ["queue_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_queue_entries_queue_id_id", table_name="queue_entries")
    op.drop_table("queue_entries")
    op.drop_index("ix_queues_account_id", table_name="queues")
    op.drop_table("queues")
    op.drop_index("ix_live_calls_node_id", table_name="live_calls")
    op.drop_index("ix_live_calls_account_id", table_name="live_calls")
    op.drop_table("live_calls")
    op.drop_index("ix_numbers_account_id", table_name="numbers")
    op.drop_table("numbers")
    # Open CDRs cannot go back to the old NOT NULL columns: close them first.
    op.execute(
        sa.text(
            "UPDATE cdrs SET ended_at = started_at, duration_seconds = 0, "
            "end_reason = 'failed' WHERE ended_at IS NULL"
        )
    )
    with op.batch_alter_table("cdrs") as batch:
        batch.alter_column("end_reason", existing_type=sa.String(32), nullable=False)
        batch.alter_column("duration_seconds", existing_type=sa.Float(), nullable=False)
        batch.alter_column("ended_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.drop_index("ix_cdrs_node_id")
        batch.drop_column("node_id")
        batch.drop_column("state")
        batch.drop_index("ix_cdrs_account_id")
        batch.drop_column("account_id")
    op.create_table(
        "routes_0002",
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
    op.execute(
        sa.text(
            "INSERT INTO routes_0002 (destination, application_id, created_at) "
            f"SELECT destination, application_id, created_at FROM routes "
            f"WHERE account_id = '{DEFAULT}'"
        )
    )
    op.drop_index("ix_routes_application_id", table_name="routes")
    op.drop_table("routes")
    op.rename_table("routes_0002", "routes")
    op.create_index("ix_routes_application_id", "routes", ["application_id"])
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("admin")
        batch.drop_column("scope")
    with op.batch_alter_table("media") as batch:
        batch.drop_constraint("uq_media_account_id", type_="unique")
        batch.create_unique_constraint("uq_media_media_name", ["media_name"])
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_account_id", type_="unique")
        batch.create_unique_constraint("uq_users_extension", ["extension"])
    for table in reversed(_OWNED):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_account_id_accounts", type_="foreignkey")
            batch.drop_index(f"ix_{table}_account_id")
            batch.drop_column("account_id")
    op.drop_table("accounts")

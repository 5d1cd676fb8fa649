"""A version number of the routing configuration (issue 15: call setup CPU).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

``routing_version`` holds one row whose ``version`` every writer of what routes a call (dial
rules and settings, application routes, forwarding rules, account deletion) raises in its own
transaction. A server caches those reads (store.readcache) and checks this one number at the
start of each call's routing: a change made by any process sharing the database applies to
the next call.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    table = op.create_table(
        "routing_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_routing_version"),
    )
    op.bulk_insert(table, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("routing_version")

"""Identities over REST (issue 14): credential fields on users, token and API key lifecycles.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Only nullable columns are added, so existing rows stay valid as they are:

- ``users``: ``tag`` (Telnyx's credential tag, a listing filter), ``expires_at`` (the
  credential's own expiry: after it the user cannot sign in; empty means never) and
  ``updated_at``.
- ``tokens``: ``revoked_at`` (when a revoke happened, next to the existing flag) and
  ``issued_by`` (``cli`` or ``api_key:<id>``: who minted it, for the audit trail).
- ``api_keys``: ``last_used_at`` (written at most once a minute per key, see the store) and
  ``revoked_at``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def _instant(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("tag", sa.String(255), nullable=True))
        batch.add_column(_instant("expires_at"))
        batch.add_column(_instant("updated_at"))
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(_instant("revoked_at"))
        batch.add_column(sa.Column("issued_by", sa.String(64), nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(_instant("last_used_at"))
        batch.add_column(_instant("revoked_at"))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("last_used_at")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("issued_by")
        batch.drop_column("revoked_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("expires_at")
        batch.drop_column("tag")

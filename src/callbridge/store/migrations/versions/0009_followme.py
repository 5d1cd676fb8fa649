"""Per-user forwarding rules: find-me/follow-me and do-not-disturb (issue 16).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Two tables, each going with its user (``ON DELETE CASCADE``):

- ``followme_rules``: one row per user who has rules (no row: today's ring-all for the
  server's ``--ring-timeout``): ``ring_seconds`` (NULL: the server's ring timeout), ``dnd``,
  and what happens when a step ends on busy, no answer, every target offline, or DND:
  ``next`` (the next step), ``end`` or ``end:<reason>`` (a seed end reason), or a destination
  (``user:NAME``, ``number:+E164``, ``queue:NAME``, ``application:ID``, ``conference:NAME``).
- ``followme_steps``: the ordered steps; each rings a set of targets at once (``targets``, a
  JSON list of ``{"type", "value", "screening"}``; ``screening`` only on outside numbers) for
  ``seconds`` (NULL: ``ring_seconds``).

And one nullable column on ``cdrs``: ``forwarding_json``, the steps a call to a user with rules
went through (``callbridge.core.followme.StepRecord``: targets, seconds, outcome, who answered).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def _user(table: str) -> list[Any]:
    return [
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "followme_rules",
        *_user("followme_rules"),
        sa.Column("ring_seconds", sa.Integer(), nullable=True),
        sa.Column("dnd", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("on_busy", sa.String(255), nullable=False, server_default="next"),
        sa.Column("on_no_answer", sa.String(255), nullable=False, server_default="next"),
        sa.Column("on_offline", sa.String(255), nullable=False, server_default="next"),
        sa.Column("on_dnd", sa.String(255), nullable=False, server_default="next"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_followme_rules"),
    )
    op.create_table(
        "followme_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        *_user("followme_steps"),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=True),
        sa.Column("targets", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_followme_steps"),
        sa.UniqueConstraint("user_id", "position", name="uq_followme_steps_user_id"),
    )
    op.create_index("ix_followme_steps_user_id", "followme_steps", ["user_id"])
    with op.batch_alter_table("cdrs") as batch:
        batch.add_column(sa.Column("forwarding_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cdrs") as batch:
        batch.drop_column("forwarding_json")
    op.drop_index("ix_followme_steps_user_id", table_name="followme_steps")
    op.drop_table("followme_steps")
    op.drop_table("followme_rules")

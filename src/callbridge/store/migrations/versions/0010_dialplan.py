"""Account dial plans: rules, ring groups and dial settings (issue 16).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Three tables, each going with its account (``ON DELETE CASCADE``):

- ``dial_rules``: an account's patterns (``2000-2099``, ``9XXX``, ``+44*``, exact numbers or
  names), tried by ``position``, each sending a matching destination to a target
  (``target_kind``: user, ring_group, queue, conference, application, trunk; ``target`` its
  name or id), rewritten by ``strip`` and ``prepend``, optionally only inside hours (``days``,
  ``start_time``, ``end_time``);
- ``ring_groups``: several users rung ``simultaneous``, ``sequential`` or ``round_robin``
  (``members``: a JSON list of ``{"user", "seconds"}``), and where an unanswered call goes
  (``no_answer_kind``, ``no_answer_target``); the name is unique in the account;
- ``dial_settings``: the account's time zone and holidays (no row: UTC, none).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

DEFAULT = "default"


def _instant(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


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
        "dial_rules",
        sa.Column("id", sa.String(64), nullable=False),
        *_account("dial_rules"),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("pattern", sa.String(64), nullable=False),
        sa.Column("target_kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(64), nullable=True),
        sa.Column("strip", sa.Integer(), nullable=False),
        sa.Column("prepend", sa.String(16), nullable=False),
        sa.Column("days", sa.String(16), nullable=False),
        sa.Column("start_time", sa.String(5), nullable=True),
        sa.Column("end_time", sa.String(5), nullable=True),
        sa.Column("description", sa.String(255), nullable=False),
        _instant("created_at"),
        _instant("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_dial_rules"),
    )
    op.create_index("ix_dial_rules_account_id", "dial_rules", ["account_id"])
    op.create_table(
        "ring_groups",
        sa.Column("id", sa.String(64), nullable=False),
        *_account("ring_groups"),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("members", sa.Text(), nullable=False),
        sa.Column("no_answer_kind", sa.String(16), nullable=False),
        sa.Column("no_answer_target", sa.String(64), nullable=True),
        _instant("created_at"),
        _instant("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_ring_groups"),
        sa.UniqueConstraint("account_id", "name", name="uq_ring_groups_account_id"),
    )
    op.create_index("ix_ring_groups_account_id", "ring_groups", ["account_id"])
    op.create_table(
        "dial_settings",
        *_account("dial_settings", primary=True),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("holidays", sa.Text(), nullable=False),
        _instant("updated_at"),
        sa.PrimaryKeyConstraint("account_id", name="pk_dial_settings"),
    )


def downgrade() -> None:
    op.drop_table("dial_settings")
    op.drop_index("ix_ring_groups_account_id", table_name="ring_groups")
    op.drop_table("ring_groups")
    op.drop_index("ix_dial_rules_account_id", table_name="dial_rules")
    op.drop_table("dial_rules")

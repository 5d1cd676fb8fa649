"""The SIP cause of a call through a trunk (issue 12).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

One nullable column on ``cdrs``: ``sip_cause``, the SIP status that ended the call's carrier
leg (486, 503, 487 for a CANCEL, 200 once answered; ``callbridge.sip.trunk_calls``). Records
written before, and calls that used no trunk, have none. It is what ``call.hangup`` webhooks
carry as ``sip_hangup_cause``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("cdrs") as batch:
        batch.add_column(sa.Column("sip_cause", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cdrs") as batch:
        batch.drop_column("sip_cause")

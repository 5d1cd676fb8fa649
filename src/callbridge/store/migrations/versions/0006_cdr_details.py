"""CDR details (issue 14): who answered, the queue and its wait, the conference, the transfer,
what ended the call, and per-leg media quality.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Only nullable columns are added to ``cdrs``, so the records written before stay valid (their
details are simply unknown):

- ``answered_device`` (the device that answered: a ``/ws`` session or a SIP contact id) and
  ``answered_user`` (its user: the agent who took a queued call);
- ``queue_name`` and ``queue_wait_secs`` (the call waited there that long before an agent
  got it);
- ``conference_id`` (the last conference the call joined);
- ``transferred_to`` (the call id of the record the call goes on as, when it ended
  ``transferred``);
- ``hangup_source`` (``caller``, ``callee``, ``application`` or ``unknown``: which side ended
  the call);
- ``quality_json`` (per-leg RTCP figures: packets, loss, jitter, estimated MOS; JSON, see
  ``callbridge.cdr_details``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_TEXTS = (
    ("answered_device", 128),
    ("answered_user", 255),
    ("queue_name", 255),
    ("conference_id", 64),
    ("transferred_to", 64),
    ("hangup_source", 16),
)


def upgrade() -> None:
    with op.batch_alter_table("cdrs") as batch:
        for name, length in _TEXTS:
            batch.add_column(sa.Column(name, sa.String(length), nullable=True))
        batch.add_column(sa.Column("queue_wait_secs", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("quality_json", sa.Text(), nullable=True))
        # The agent's view ("which calls did Alice take?") filters on this.
        batch.create_index("ix_cdrs_answered_user", ["answered_user"])


def downgrade() -> None:
    with op.batch_alter_table("cdrs") as batch:
        batch.drop_index("ix_cdrs_answered_user")
        batch.drop_column("quality_json")
        batch.drop_column("queue_wait_secs")
        for name, _ in reversed(_TEXTS):
            batch.drop_column(name)

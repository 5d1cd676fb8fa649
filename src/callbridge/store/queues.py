"""Call queues in the database: their definitions and their waiting order.

A queue (``queues``) is named uniquely within its account and survives restarts. Its waiting
callers (``queue_entries``) are kept in order (``id`` order = enqueue order) with the node
whose call it is; the calls themselves live on that node only, so a node that starts removes
the entries its crash left behind (``remove_queue_entries_of_node``).

Writes are idempotent (see ``callbridge.store.calls``): the spool may retry them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.exc import IntegrityError

from callbridge.store.repository import Repository, check_aware, now
from callbridge.store.schema import DEFAULT_ACCOUNT_ID, QueueEntryRow, QueueRow

__all__ = ["QueueEntryRecord", "QueueRecord", "QueueRepository"]


@dataclass(frozen=True, slots=True)
class QueueRecord:
    """A queue as the database keeps it (``max_size`` None: the server's default)."""

    account_id: str
    name: str
    max_size: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class QueueEntryRecord:
    """A call waiting in a queue, on ``node_id``."""

    account_id: str
    queue_name: str
    call_control_id: str
    node_id: str | None
    enqueued_at: datetime


class QueueRepository(Repository):
    async def save_queue(
        self,
        name: str,
        max_size: int | None,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        created_at: datetime | None = None,
    ) -> None:
        """Create the account's queue ``name``, or set its ``max_size`` if it exists."""
        check_aware("created_at", created_at)
        try:
            async with self._write.begin() as session:
                row = await session.scalar(_queue(account_id, name))
                if row is None:
                    session.add(
                        QueueRow(
                            account_id=account_id,
                            name=name,
                            max_size=max_size,
                            created_at=created_at or now(),
                        )
                    )
                else:
                    row.max_size = max_size
        except IntegrityError:
            # Another server made it at the same moment: set the size on that one.
            async with self._write.begin() as session:
                row = await session.scalar(_queue(account_id, name))
                if row is None:
                    raise
                row.max_size = max_size

    async def delete_queue(self, name: str, *, account_id: str = DEFAULT_ACCOUNT_ID) -> bool:
        """Delete the queue (and any entries left in it). False if there was none."""
        async with self._write.begin() as session:
            result = await session.execute(
                delete(QueueRow).where(QueueRow.account_id == account_id, QueueRow.name == name),
                execution_options={"synchronize_session": False},
            )
        return int(getattr(result, "rowcount", 0)) == 1

    async def list_queues(self, *, account_id: str | None = None) -> list[QueueRecord]:
        """Every queue (of the account, if given), oldest first."""
        statement = select(QueueRow).order_by(QueueRow.id)
        if account_id is not None:
            statement = statement.where(QueueRow.account_id == account_id)
        async with self._read() as session:
            return [
                QueueRecord(row.account_id, row.name, row.max_size, row.created_at)
                for row in await session.scalars(statement)
            ]

    async def add_queue_entry(
        self,
        queue_name: str,
        call_control_id: str,
        *,
        enqueued_at: datetime,
        node_id: str | None,
        account_id: str = DEFAULT_ACCOUNT_ID,
        max_size: int | None = None,
    ) -> None:
        """The call waits at the end of the queue (made with ``max_size`` if it does not
        exist). A call already waiting (anywhere) stays where it is."""
        check_aware("enqueued_at", enqueued_at)
        async with self._write.begin() as session:
            queue_id = await session.scalar(
                select(QueueRow.id).where(
                    QueueRow.account_id == account_id, QueueRow.name == queue_name
                )
            )
            if queue_id is None:
                row = QueueRow(
                    account_id=account_id, name=queue_name, max_size=max_size, created_at=now()
                )
                session.add(row)
                await session.flush()
                queue_id = row.id
            waiting = await session.scalar(
                select(QueueEntryRow.id).where(QueueEntryRow.call_control_id == call_control_id)
            )
            if waiting is None:
                session.add(
                    QueueEntryRow(
                        queue_id=queue_id,
                        call_control_id=call_control_id,
                        node_id=node_id,
                        enqueued_at=enqueued_at,
                    )
                )

    async def remove_queue_entry(self, call_control_id: str) -> bool:
        """The call left its queue. False if it was in none."""
        async with self._write.begin() as session:
            result = await session.execute(
                delete(QueueEntryRow).where(QueueEntryRow.call_control_id == call_control_id),
                execution_options={"synchronize_session": False},
            )
        return int(getattr(result, "rowcount", 0)) == 1

    async def list_queue_entries(
        self, name: str | None = None, *, account_id: str = DEFAULT_ACCOUNT_ID
    ) -> list[QueueEntryRecord]:
        """The calls waiting (in one queue of the account, if named), in waiting order."""
        statement = (
            select(QueueEntryRow, QueueRow)
            .join(QueueRow, QueueEntryRow.queue_id == QueueRow.id)
            .where(QueueRow.account_id == account_id)
            .order_by(QueueEntryRow.id)
        )
        if name is not None:
            statement = statement.where(QueueRow.name == name)
        async with self._read() as session:
            rows = (await session.execute(statement)).all()
        return [
            QueueEntryRecord(q.account_id, q.name, e.call_control_id, e.node_id, e.enqueued_at)
            for e, q in rows
        ]

    async def remove_queue_entries_of_node(self, node_id: str | None) -> int:
        """Remove the entries of ``node_id``'s calls (gone with its crash); how many."""
        async with self._write.begin() as session:
            result = await session.execute(
                delete(QueueEntryRow).where(QueueEntryRow.node_id == node_id),
                execution_options={"synchronize_session": False},
            )
        return int(getattr(result, "rowcount", 0))


def _queue(account_id: str, name: str) -> Select[Any]:
    return select(QueueRow).where(QueueRow.account_id == account_id, QueueRow.name == name)

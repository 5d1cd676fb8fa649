"""The webhook outbox's rows and the webhook signing key; ``callbridge.webhooks`` drives them.

A message is written once (``enqueue_webhook``) and then moves ``pending → delivered`` or
``pending → failed``. Messages are named by ``message_id`` (the ``webhook-id`` string) where
callers look them up, and by their row ``id`` (an integer) where a worker reports on one it
holds. A worker takes due messages with ``claim_webhooks``: that counts the
attempt and gives the worker a lease until a deadline; the worker then reports the outcome
(``webhook_delivered`` / ``webhook_retry`` / ``webhook_failed``), which ends the lease. Each
report applies only while the reporting worker still holds the lease, so a worker that lost it
(it stalled past the deadline and another took over) changes nothing. Several servers can thus
share one database; a crashed server's messages are taken over when its leases run out, and
``release_webhooks`` hands them back at once on an orderly stop.

Order: messages with the same non-empty ``ordering_key`` go one at a time in enqueue (id)
order — only the pending message with the lowest id of its key (its *head*) can be claimed, so
a message waits until every earlier one of its key is delivered or failed. "" orders nothing.
Ids follow commit order for enqueues that finish one after another, which is how one call's
events are enqueued; concurrent enqueues on one key have no order to keep.

Batches: ``settle_and_claim_webhooks`` reports many outcomes (one ``UPDATE`` for all the
delivered ones) and claims the next due heads in one transaction, so that a busy worker pays
one database round trip per batch, not four per message. A key's next message becomes its head
when its predecessor's outcome commits, so order is the same as one message at a time.

The signing key is one row per purpose ("webhooks"); the first server to need it stores the key
it generated, every other one (later, or racing it) gets the stored one.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import aliased

from callbridge.store.records import WEBHOOK_STATUSES, OutboxMessage, SigningKey, WebhookStatus
from callbridge.store.repository import Repository, check_aware, now
from callbridge.store.schema import SigningKeyRow, UTCDateTime, WebhookOutboxRow

__all__ = ["WEBHOOK_CHANNEL", "OutboxRepository", "WebhookOutcome"]

_Row = WebhookOutboxRow
_MAX_ERROR = 1000  # characters of last_error kept
# PostgreSQL: every enqueue transaction sends NOTIFY on this channel (delivered at commit),
# which wakes the dispatchers of every server sharing the database (store.outbox_pg).
WEBHOOK_CHANNEL = "callbridge_webhooks"


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """How one claimed message's attempt ended: delivered (``error`` None), to be retried at
    ``retry_at``, or failed for good (``error`` set, ``retry_at`` None)."""

    row_id: int
    error: str | None = None
    retry_at: datetime | None = None


class OutboxRepository(Repository):
    async def enqueue_webhook(
        self,
        *,
        message_id: str,
        event_type: str,
        data_json: str,
        url: str,
        failover_url: str | None = None,
        ordering_key: str = "",
        application_id: str | None = None,
        not_before: datetime | None = None,
    ) -> OutboxMessage:
        """Store a new pending message (``not_before``: its first attempt's time, else now)."""
        check_aware("not_before", not_before)
        if len(ordering_key) > 128:
            raise ValueError("an ordering key is at most 128 characters")
        at = now()
        values: dict[str, Any] = {
            "message_id": message_id,
            "event_type": event_type,
            "ordering_key": ordering_key,
            "url": url,
            "failover_url": failover_url,
            "data_json": data_json,
            "application_id": application_id,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": not_before or at,
            "created_at": at,
        }
        # A Core INSERT on a Core connection, not the ORM's unit of work: enqueue is on every
        # event's path.
        async with self._write_engine().begin() as conn:
            row_id = (await conn.execute(_insert(conn), values)).scalar_one()
        return _from_mapping({**values, "id": row_id, "last_error": None, "delivered_at": None})

    async def enqueue_webhooks(self, messages: Sequence[Mapping[str, Any]]) -> list[OutboxMessage]:
        """Store many new pending messages in one transaction, ids in the given order; each
        item has ``enqueue_webhook``'s keyword arguments (``not_before`` excepted)."""
        at = now()
        rows: list[dict[str, Any]] = []
        for item in messages:
            if len(item.get("ordering_key", "")) > 128:
                raise ValueError("an ordering key is at most 128 characters")
            rows.append(
                {
                    "message_id": item["message_id"],
                    "event_type": item["event_type"],
                    "ordering_key": item.get("ordering_key", ""),
                    "url": item["url"],
                    "failover_url": item.get("failover_url"),
                    "data_json": item["data_json"],
                    "application_id": item.get("application_id"),
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": at,
                    "created_at": at,
                }
            )
        stored = []
        # A Core connection, not an ORM session: its transaction costs ~25 % less CPU (0.7
        # against 0.9 ms for two rows on PostgreSQL).
        async with self._write_engine().begin() as conn:
            # One INSERT per row, in order: ids then follow the list (a multi-row INSERT ...
            # RETURNING does not promise the order of what it returns). The statement is built
            # once, with the row as its parameters: building one per row cost more than it.
            statement = _insert(conn)
            for row in rows:
                result = await conn.execute(statement, row)
                stored.append({**row, "id": result.scalar_one(), "last_error": None})
        return [_from_mapping({**row, "delivered_at": None}) for row in stored]

    def _write_engine(self) -> AsyncEngine:
        """The engine behind ``_write`` (its transactions write: BEGIN IMMEDIATE on SQLite)."""
        return cast(AsyncEngine, self._write.kw["bind"])

    async def get_webhook(self, message_id: str) -> OutboxMessage | None:
        async with self._read() as session:
            row = await session.scalar(select(_Row).where(_Row.message_id == message_id))
        return None if row is None else _message(row)

    async def list_webhooks(
        self,
        *,
        status: WebhookStatus | None = None,
        ordering_key: str | None = None,
        limit: int = 100,
    ) -> list[OutboxMessage]:
        """Up to ``limit`` messages, oldest first."""
        statement = select(_Row).order_by(_Row.id).limit(limit)
        if status is not None:
            statement = statement.where(_Row.status == status)
        if ordering_key is not None:
            statement = statement.where(_Row.ordering_key == ordering_key)
        async with self._read() as session:
            return [_message(row) for row in await session.scalars(statement)]

    async def claim_webhooks(
        self, owner: str, *, limit: int, lease: timedelta
    ) -> list[OutboxMessage]:
        """Take up to ``limit`` due head messages for ``owner`` until ``now + lease``.

        Each claimed message's ``attempts`` grows by one: the attempt counts from here, so
        one cut short by a crash still counts. Returned earliest-due first.
        """
        if limit < 1:
            return []
        async with self._write.begin() as session:
            return await _claim(session, owner, limit, lease, ())

    async def settle_and_claim_webhooks(
        self,
        owner: str,
        outcomes: Sequence[WebhookOutcome],
        *,
        limit: int,
        lease: timedelta,
        skip_urls: Collection[str] = (),
    ) -> tuple[int, list[OutboxMessage]]:
        """Record ``outcomes`` of attempts ``owner`` made, then claim up to ``limit`` due heads
        (not those whose ``url`` is in ``skip_urls``), in one transaction. How many outcomes
        applied (those of messages ``owner`` still held), and the claimed messages."""
        at = now()
        delivered = [o.row_id for o in outcomes if o.error is None]
        applied = 0
        async with self._write.begin() as session:
            if delivered:
                result = await session.execute(
                    update(_Row)
                    .where(_Row.id.in_(delivered), _Row.lease_owner == owner, _still_pending())
                    .values(
                        status="delivered",
                        delivered_at=at,
                        last_error=None,
                        lease_owner=None,
                        lease_expires_at=None,
                    ),
                    execution_options={"synchronize_session": False},
                )
                applied += int(getattr(result, "rowcount", 0))
            for outcome in outcomes:  # failures: few, one statement each
                if outcome.error is None:
                    continue
                error = outcome.error[:_MAX_ERROR]
                if outcome.retry_at is None:
                    changes: dict[str, object] = {"status": "failed", "last_error": error}
                else:
                    check_aware("retry_at", outcome.retry_at)
                    changes = {"next_attempt_at": outcome.retry_at, "last_error": error}
                applied += await _finish_in(session, outcome.row_id, owner, changes)
            claimed = [] if limit < 1 else await _claim(session, owner, limit, lease, skip_urls)
        return applied, claimed

    async def next_webhook_due(self) -> datetime | None:
        """When a head message next becomes claimable (due and its lease over), if any."""
        async with self._read() as session:
            rows = await session.scalars(_next_due())
            return rows.first()

    async def webhook_delivered(self, row_id: int, owner: str) -> bool:
        """The attempt succeeded. False if ``owner`` no longer held the message."""
        return await self._finish(
            row_id, owner, status="delivered", delivered_at=now(), last_error=None
        )

    async def webhook_retry(
        self, row_id: int, owner: str, *, error: str, next_attempt_at: datetime
    ) -> bool:
        """The attempt failed; try again at ``next_attempt_at``."""
        check_aware("next_attempt_at", next_attempt_at)
        return await self._finish(
            row_id, owner, next_attempt_at=next_attempt_at, last_error=error[:_MAX_ERROR]
        )

    async def webhook_failed(self, row_id: int, owner: str, *, error: str) -> bool:
        """The attempt failed and no more will be made."""
        return await self._finish(row_id, owner, status="failed", last_error=error[:_MAX_ERROR])

    async def release_webhooks(self, owner: str) -> int:
        """End every lease ``owner`` holds (its attempts stay counted); how many there were."""
        async with self._write.begin() as session:
            result = await session.execute(
                update(_Row)
                .where(_Row.lease_owner == owner, _Row.status == "pending")
                .values(lease_owner=None, lease_expires_at=None),
                execution_options={"synchronize_session": False},
            )
        return int(getattr(result, "rowcount", 0))

    async def release_webhooks_of(self, prefix: str, *, but: str) -> int:
        """End every lease whose owner starts with ``prefix``, except ``but``'s (a restarted
        node takes back what its crashed instance held); how many there were."""
        async with self._write.begin() as session:
            result = await session.execute(
                update(_Row)
                .where(
                    _Row.lease_owner.startswith(prefix, autoescape=True),
                    _Row.lease_owner != but,
                    _Row.status == "pending",
                )
                .values(lease_owner=None, lease_expires_at=None),
                execution_options={"synchronize_session": False},
            )
        return int(getattr(result, "rowcount", 0))

    async def delete_finished_webhooks(self, before: datetime) -> int:
        """Delete delivered and failed messages enqueued before ``before``; how many."""
        check_aware("before", before)
        async with self._write.begin() as session:
            result = await session.execute(
                delete(_Row).where(_Row.status != "pending", _Row.created_at < before),
                execution_options={"synchronize_session": False},
            )
        return int(getattr(result, "rowcount", 0))

    async def webhook_backlog(self) -> tuple[int, datetime | None]:
        """Pending messages (every server's): how many, and when the oldest was enqueued
        (``/metrics``: outbox depth and lag)."""
        oldest = type_coerce(func.min(_Row.created_at), UTCDateTime())  # aware on SQLite too
        async with self._read() as session:
            result = await session.execute(
                select(func.count(), oldest).where(_Row.status == "pending")
            )
            count, first = result.one()
        return int(count), first

    async def _finish(self, row_id: int, owner: str, **values: object) -> bool:
        async with self._write.begin() as session:
            return await _finish_in(session, row_id, owner, values) == 1

    # the signing key ------------------------------------------------------------------------
    async def get_signing_key(self, purpose: str = "webhooks") -> SigningKey | None:
        async with self._read() as session:
            row = await session.scalar(
                select(SigningKeyRow).where(SigningKeyRow.purpose == purpose)
            )
        return None if row is None else _key(row)

    async def ensure_signing_key(
        self, private_key: str, public_key: str, purpose: str = "webhooks"
    ) -> SigningKey:
        """The stored key for ``purpose``; the given one is stored first if there is none.

        Whoever stores first wins: compare the result with what you passed.
        """
        existing = await self.get_signing_key(purpose)
        if existing is not None:
            return existing
        row = SigningKeyRow(
            purpose=purpose, private_key=private_key, public_key=public_key, created_at=now()
        )
        try:
            async with self._write.begin() as session:
                session.add(row)
        except IntegrityError:
            stored = await self.get_signing_key(purpose)  # another server stored one first
            if stored is None:
                raise
            return stored
        return _key(row)


async def _finish_in(
    session: AsyncSession, row_id: int, owner: str, values: Mapping[str, object]
) -> int:
    result = await session.execute(
        update(_Row)
        .where(_Row.id == row_id, _Row.lease_owner == owner, _still_pending())
        .values(lease_owner=None, lease_expires_at=None, **values),
        execution_options={"synchronize_session": False},
    )
    return int(getattr(result, "rowcount", 0))


_TABLE = cast(Table, WebhookOutboxRow.__table__)
_INSERT = insert(_TABLE).returning(_TABLE.c.id)  # Core: the ORM's insert costs more per row
# PostgreSQL: the insert also sends NOTIFY (at commit; one per transaction, as PostgreSQL folds
# equal notifications), which wakes every server's dispatcher (store.outbox_pg). Part of the
# INSERT, not a statement of its own: a round trip costs more than the notification.
_INSERT_NOTIFY = insert(_TABLE).returning(_TABLE.c.id, func.pg_notify(WEBHOOK_CHANNEL, ""))


def _insert(conn: AsyncConnection) -> Any:
    return _INSERT_NOTIFY if conn.dialect.name == "postgresql" else _INSERT


_COLUMNS = tuple(
    c for c in _Row.__table__.columns if c.name not in ("lease_owner", "lease_expires_at")
)


async def _claim(
    session: AsyncSession, owner: str, limit: int, lease: timedelta, skip_urls: Collection[str]
) -> list[OutboxMessage]:
    at = now()
    picks: list[tuple[datetime, int]] = []
    # SQLite: two statements, each using its index (its planner scans for an OR of them).
    # PostgreSQL: one, so that SKIP LOCKED locks only the rows this claim takes; rows locked
    # by a statement but then left out would be skipped by concurrent claims for nothing.
    sqlite = session.get_bind().dialect.name == "sqlite"
    for due in _DUE[:2] if sqlite else _DUE[2:]:
        if skip_urls:
            due = due.where(_Row.url.not_in(list(skip_urls)))
        result = await session.execute(
            due.limit(limit)
            # PostgreSQL: two servers claiming at once skip each other's rows instead
            # of queueing on them (SQLite's write lock serialises claims already).
            .with_for_update(skip_locked=True),
            {"at": at},
        )
        picks.extend((row[0], row[1]) for row in result)
    ids = [row_id for _, row_id in sorted(picks)[:limit]]
    if not ids:
        return []
    result = await session.execute(
        update(_Row)
        .where(_Row.id.in_(ids), _still_pending(), _lease_free(at))
        .values(lease_owner=owner, lease_expires_at=at + lease, attempts=_Row.attempts + 1)
        # Plain columns, not ORM rows: building entities costs more than the statement.
        .returning(*_COLUMNS),
        execution_options={"synchronize_session": False},
    )
    claimed = [_from_mapping(row) for row in result.mappings()]
    return sorted(claimed, key=lambda m: (m.next_attempt_at, m.id))


def _still_pending() -> ColumnElement[bool]:
    """``status = 'pending'`` for statements that pick rows by id: written so that SQLite
    cannot use the status index for it (with a few ids in ``IN``, its planner preferred
    scanning every pending row through that index to looking the ids up: milliseconds per
    statement with thousands pending)."""
    return (_Row.status + "") == "pending"


@functools.cache
def _next_due() -> Select[Any]:
    """``next_webhook_due``'s query, built once: the dispatcher asks it on every poll, and an
    idle server spent more CPU building and hashing the statement than running it."""
    ready = type_coerce(
        case(
            (
                _Row.lease_expires_at.is_not(None) & (_Row.lease_expires_at > _Row.next_attempt_at),
                _Row.lease_expires_at,
            ),
            else_=_Row.next_attempt_at,
        ),
        UTCDateTime(),  # read back as an aware datetime on SQLite too
    )
    heads = or_(_Row.id.in_(_head_ids()), (_Row.status == "pending") & (_Row.ordering_key == ""))
    return select(ready).where(heads).order_by(ready).limit(1)


def _head_ids() -> Select[Any]:  # its type parameters differ between SQLAlchemy 2.0 and 2.1
    """The id of each non-empty ordering key's head (its pending message with the lowest id).

    A loose index scan over ``(status, ordering_key, id)``: a recursive query steps from one
    pending key to the next, then takes each key's lowest id, so it costs a few index seeks
    per key, however many messages wait behind the heads. (Before, each pending row in due
    order was checked for being its key's head: with thousands pending and keys progressing
    unevenly, a claim walked thousands of rows, milliseconds each time.)"""
    step = aliased(WebhookOutboxRow)
    first = (
        select(func.min(step.ordering_key).label("key"))
        .where(step.status == "pending", step.ordering_key > "")
        .cte("pending_keys", recursive=True)
    )
    after = aliased(WebhookOutboxRow)
    keys = first.union_all(
        select(
            select(func.min(after.ordering_key))
            .where(after.status == "pending", after.ordering_key > first.c.key)
            .scalar_subquery()
        ).where(first.c.key.is_not(None))
    )
    head = aliased(WebhookOutboxRow)
    return select(
        select(func.min(head.id))
        .where(head.status == "pending", head.ordering_key == keys.c.key)
        .scalar_subquery()
    ).where(keys.c.key.is_not(None))


def _lease_free(at: datetime) -> ColumnElement[bool]:
    return or_(_Row.lease_expires_at.is_(None), _Row.lease_expires_at <= at)


def _due_statements() -> tuple[Any, Any, Any]:  # Selects (see _head_ids)
    """The claim's queries, built once (building them cost more than running them): the due
    keyed heads, the due unordered messages, and both; ``:at`` is the time of the claim.

    Each uses its index. The unordered ones are taken by id, their due time hidden from
    SQLite's planner (``coalesce``): else it walks every pending row by due time to find them."""
    at = bindparam("at", type_=UTCDateTime())
    lease_free = or_(_Row.lease_expires_at.is_(None), _Row.lease_expires_at <= at)
    keyed = (
        select(_Row.next_attempt_at, _Row.id)
        .where(_Row.id.in_(_head_ids()), _Row.next_attempt_at <= at, lease_free)
        .order_by(_Row.next_attempt_at, _Row.id)
    )
    unordered = (
        select(_Row.next_attempt_at, _Row.id)
        .where(
            _Row.status == "pending",
            _Row.ordering_key == "",
            func.coalesce(_Row.next_attempt_at, _Row.next_attempt_at) <= at,
            lease_free,
        )
        .order_by(_Row.id)
    )
    either = (
        select(_Row.next_attempt_at, _Row.id)
        .where(or_(keyed.whereclause, unordered.whereclause))  # type: ignore[arg-type]
        .order_by(_Row.next_attempt_at, _Row.id)
    )
    return keyed, unordered, either


_DUE = _due_statements()


def due_statements() -> tuple[Any, Any, Any]:
    """The claim's queries (see ``_due_statements``), for ``store.outbox_pg``."""
    return _DUE


def _status(value: str) -> WebhookStatus:
    for status in WEBHOOK_STATUSES:
        if status == value:
            return status
    raise ValueError(f"unknown webhook status {value!r} in the database")


def _message(row: WebhookOutboxRow) -> OutboxMessage:
    return OutboxMessage(
        id=row.id,
        message_id=row.message_id,
        event_type=row.event_type,
        ordering_key=row.ordering_key,
        url=row.url,
        failover_url=row.failover_url,
        data_json=row.data_json,
        application_id=row.application_id,
        status=_status(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


def _from_mapping(row: Mapping[Any, Any]) -> OutboxMessage:
    return OutboxMessage(
        id=row["id"],
        message_id=row["message_id"],
        event_type=row["event_type"],
        ordering_key=row["ordering_key"],
        url=row["url"],
        failover_url=row["failover_url"],
        data_json=row["data_json"],
        application_id=row["application_id"],
        status=_status(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
    )


message_from_mapping = _from_mapping  # for store.outbox_pg


def _key(row: SigningKeyRow) -> SigningKey:
    return SigningKey(row.private_key, row.public_key, row.created_at)

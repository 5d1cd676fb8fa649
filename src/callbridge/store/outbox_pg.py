"""The webhook outbox on PostgreSQL: a dispatcher's own connection, and its wake-up by NOTIFY.

``callbridge.store.outbox`` works on every database through the store's pooled sessions. On
PostgreSQL a dispatcher (``callbridge.webhooks.WebhookOutbox``) does better with two
connections of its own, outside the store's pool:

* ``PgDispatchConnection``: settles outcomes and claims due heads in autocommit, two
  statements per batch (the delivered ``UPDATE``, then one ``UPDATE … RETURNING`` that picks
  the due heads ``FOR UPDATE SKIP LOCKED`` and leases them). Through the pool a batch cost
  eight round trips (the pool's ping is ``BEGIN; ;ROLLBACK``, then ``BEGIN``, three statements,
  ``COMMIT``). No transaction spans the two: each statement is atomic, and the claim, which
  runs after the settle committed, sees the heads that the settle advanced.
* ``NotifyListener``: ``LISTEN callbridge_webhooks`` on a dedicated connection. Every enqueue
  transaction sends ``NOTIFY callbridge_webhooks`` (delivered at commit, so a woken
  dispatcher finds the rows), so every server sharing the database wakes for new work, not
  only the one that enqueued it. If the connection drops, the dispatcher falls back on its
  timer (``RetryPolicy.poll_interval``) while the listener reconnects, and looks once when it
  is back (a notification sent meanwhile is lost).

Order and exclusivity under ``SKIP LOCKED``, as in ``callbridge.store.outbox``: only a key's
head (its pending message with the lowest id) with no live lease can be picked. The heads come
from the statement's snapshot: a message whose predecessor's outcome committed after that
snapshot is not a head for it (it waits for the next claim), and a row another dispatcher has
settled or leased meanwhile is locked and then re-checked on its newest version by the
``UPDATE``'s own condition (still pending, lease free), so it is left alone. Rows another claim
has locked are skipped, not waited for: several servers claim at once without queueing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import BigInteger, Table, all_, any_, bindparam, or_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from callbridge.store.outbox import (
    WEBHOOK_CHANNEL,
    WebhookOutcome,
    due_statements,
    message_from_mapping,
)
from callbridge.store.records import OutboxMessage
from callbridge.store.repository import check_aware, now
from callbridge.store.schema import UTCDateTime, WebhookOutboxRow

__all__ = ["WEBHOOK_CHANNEL", "NotifyListener", "PgDispatchConnection", "dispatch_engine"]

log = logging.getLogger(__name__)

_MAX_ERROR = 1000

_T = cast(Table, WebhookOutboxRow.__table__)
_COLUMNS = tuple(c for c in _T.columns if c.name not in ("lease_owner", "lease_expires_at"))


def dispatch_engine(engine: AsyncEngine) -> AsyncEngine:
    """An engine for the dispatcher's own connections: the store's URL, no pool (they are
    held for the dispatcher's life, and must not take the store's pooled connections)."""
    return create_async_engine(engine.url, poolclass=NullPool)


def _statements() -> tuple[Any, Any, Any]:
    at = bindparam("at", type_=UTCDateTime())
    lease_free = or_(_T.c.lease_expires_at.is_(None), _T.c.lease_expires_at <= at)
    pending = (_T.c.status + "") == "pending"  # see outbox._still_pending
    delivered = (
        update(_T)
        .where(
            _T.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger()))),
            _T.c.lease_owner == bindparam("owner"),
            pending,
        )
        .values(
            status="delivered",
            delivered_at=at,
            last_error=None,
            lease_owner=None,
            lease_expires_at=None,
        )
    )

    def claim(skip_urls: bool) -> Any:
        due = due_statements()[2]
        if skip_urls:
            due = due.where(_T.c.url != all_(bindparam("skip", type_=ARRAY(_T.c.url.type))))
        picked = (
            due.with_only_columns(_T.c.id)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
            .cte("picked")
            .prefix_with("MATERIALIZED")  # evaluated once, before the UPDATE, whatever the plan
        )
        return (
            update(_T)
            .where(_T.c.id == picked.c.id, pending, lease_free)
            .values(
                lease_owner=bindparam("owner"),
                lease_expires_at=bindparam("until", type_=UTCDateTime()),
                attempts=_T.c.attempts + 1,
            )
            .returning(*_COLUMNS)
        )

    return delivered, claim(False), claim(True)


_DELIVERED, _CLAIM, _CLAIM_SKIPPING = _statements()


class PgDispatchConnection:
    """One dispatcher's autocommit connection for settling and claiming (see the module
    docstring). Opened on first use; a failed statement drops it, and the next use opens a
    new one (the dispatcher retries after its poll interval)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine  # dispose() it after close() when done
        self._conn: AsyncConnection | None = None

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            conn = await self.engine.connect()
            self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    async def settle_and_claim(
        self,
        owner: str,
        outcomes: Sequence[WebhookOutcome],
        *,
        limit: int,
        lease: timedelta,
        skip_urls: Collection[str] = (),
    ) -> tuple[int, list[OutboxMessage]]:
        """As ``OutboxRepository.settle_and_claim_webhooks``, with the settle and the claim as
        separate autocommit statements."""
        try:
            return await self._settle_and_claim(owner, outcomes, limit, lease, skip_urls)
        except BaseException:
            await self.close()  # a broken connection is not used again
            raise

    async def _settle_and_claim(
        self,
        owner: str,
        outcomes: Sequence[WebhookOutcome],
        limit: int,
        lease: timedelta,
        skip_urls: Collection[str],
    ) -> tuple[int, list[OutboxMessage]]:
        conn = await self._connection()
        at = now()
        applied = 0
        delivered = [o.row_id for o in outcomes if o.error is None]
        if delivered:
            result = await conn.execute(_DELIVERED, {"ids": delivered, "owner": owner, "at": at})
            applied += int(getattr(result, "rowcount", 0))
        for outcome in outcomes:  # failures: few, one statement each
            if outcome.error is None:
                continue
            changes: dict[str, object] = {"last_error": outcome.error[:_MAX_ERROR]}
            if outcome.retry_at is None:
                changes["status"] = "failed"
            else:
                check_aware("retry_at", outcome.retry_at)
                changes["next_attempt_at"] = outcome.retry_at
            result = await conn.execute(
                update(_T)
                .where(
                    _T.c.id == outcome.row_id,
                    _T.c.lease_owner == owner,
                    (_T.c.status + "") == "pending",
                )
                .values(lease_owner=None, lease_expires_at=None, **changes)
            )
            applied += int(getattr(result, "rowcount", 0))
        claimed: list[OutboxMessage] = []
        if limit >= 1:
            params: dict[str, Any] = {"owner": owner, "at": at, "until": at + lease}
            params["limit"] = limit
            if skip_urls:
                params["skip"] = list(skip_urls)
            result = await conn.execute(_CLAIM_SKIPPING if skip_urls else _CLAIM, params)
            claimed = [message_from_mapping(row) for row in result.mappings()]
            claimed.sort(key=lambda m: (m.next_attempt_at, m.id))
        await conn.commit()  # autocommit: ends SQLAlchemy's transaction, sends nothing
        return applied, claimed

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except (SQLAlchemyError, OSError) as exc:
                log.debug("webhook dispatch connection: closing failed: %s", exc)


class NotifyListener:
    """``LISTEN callbridge_webhooks`` on a connection of its own; ``wake()`` on every
    notification, and once on each (re)connection (work may have arrived while it was away).

    ``retry``: the longest wait between reconnection attempts (it starts at 0.1 s and
    doubles). ``listening`` says whether the connection is up now."""

    def __init__(self, engine: AsyncEngine, wake: Callable[[], None], retry: float) -> None:
        self._engine = engine
        self._wake = wake
        self._retry = retry
        self._task: asyncio.Task[None] | None = None
        self.listening = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="webhook-listen")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.listening = False

    def _notified(self, *_: object) -> None:
        self._wake()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            lost = asyncio.Event()
            conn: AsyncConnection | None = None
            try:
                conn = await self._engine.connect()
                raw = (await conn.get_raw_connection()).driver_connection
                if raw is None:
                    raise RuntimeError("no driver connection to listen on")
                raw.add_termination_listener(lambda _c, lost=lost: lost.set())
                await raw.add_listener(WEBHOOK_CHANNEL, self._notified)
                self.listening = True
                delay = 0.1
                self._wake()
                # A dropped connection is noticed by the termination listener; checking now
                # and then covers a drop that asyncpg only sees when it next reads.
                while not lost.is_set() and not raw.is_closed():
                    try:
                        await asyncio.wait_for(lost.wait(), self._retry)
                    except TimeoutError:
                        pass
                log.warning(
                    "webhook outbox: the LISTEN connection was lost; polling every %g s "
                    "until it is back",
                    self._retry,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: poll, try again later
                log.warning("webhook outbox: cannot LISTEN (%s); polling until it works", exc)
            finally:
                self.listening = False
                if conn is not None:
                    await _close_quietly(conn)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry)


async def _close_quietly(conn: AsyncConnection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 1.0)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # it is gone either way
        log.debug("webhook outbox: closing the LISTEN connection: %s", exc)

"""What the store's repositories share: their sessions, the clock, new ids, and paging.

``Store`` is assembled from one repository class per concept (``applications``, ``media``,
``recordings``, ``outbox``; users, tokens, keys and CDRs live in ``store`` itself). Each is a
mixin over ``Repository``, which only declares the two session factories that ``Store`` sets
up: ``_read`` for transactions that only read, ``_write`` for those that write (on SQLite these
begin with ``BEGIN IMMEDIATE``, see ``engine``). Every public method is its own short
transaction.

Paging is page-number based, as the REST API's (and the ``telnyx`` SDK's) ``page[number]`` and
``page[size]``: a list method returns one page of records and the total count of records that
match. The count and the page are two statements in one transaction; on PostgreSQL (read
committed) a write landing between them can make the total off by that write, which a paging
client tolerates anyway.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callbridge.store.readcache import ReadCache

__all__ = ["MAX_PAGE_SIZE", "Repository", "check_aware", "check_page", "new_id", "now", "page"]

MAX_PAGE_SIZE = 250  # the largest page[size] Telnyx's API accepts

# Ids are time-ordered decimal strings, like Telnyx's ("1293384261075731499"): milliseconds
# since 2020-01-01 in the high bits, 22 random bits below (a collision needs two ids made in
# the same millisecond with the same 22 random bits). Fits a signed 64-bit integer until 2089.
_ID_EPOCH_MS = 1_577_836_800_000
_ID_RANDOM_BITS = 22


class Repository:
    """Base of the repository mixins that make up ``Store``."""

    _read: async_sessionmaker[AsyncSession]
    _write: async_sessionmaker[AsyncSession]
    # Routing reads (dial rules and settings, application routes, forwarding rules): their
    # writers clear it (store.readcache).
    _cache: ReadCache


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A new time-ordered id, as a decimal string."""
    millis = time.time_ns() // 1_000_000 - _ID_EPOCH_MS
    return str(millis << _ID_RANDOM_BITS | secrets.randbits(_ID_RANDOM_BITS))


def check_aware(what: str, value: datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{what} is a naive datetime: pass a timezone-aware one")


def check_page(page_number: int, page_size: int) -> None:
    if page_number < 1:
        raise ValueError(f"page number must be 1 or more, not {page_number}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page size must be 1 to {MAX_PAGE_SIZE}, not {page_size}")


async def page(
    session: AsyncSession, statement: Select[Any], page_number: int, page_size: int
) -> tuple[Sequence[Any], int]:
    """One page of ``statement``'s rows (it must be ordered) and how many rows it has in all.

    Typed loosely on purpose: ``Select``'s type parameters differ between SQLAlchemy 2.0 and
    2.1; the callers turn each row into a typed record at once.
    """
    check_page(page_number, page_size)
    counted: Select[Any] = select(func.count()).select_from(statement.order_by(None).subquery())
    total = await session.scalar(counted) or 0
    rows = await session.scalars(statement.limit(page_size).offset((page_number - 1) * page_size))
    return rows.all(), total

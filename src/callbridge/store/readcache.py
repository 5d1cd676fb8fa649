"""A cache of routing reads, kept exact by one version number in the database.

Every call's routing reads the account's dial rules, its application routes and the callee's
forwarding rules, almost always to find the same (usually empty) answer: about half the
control process's database time during call setup (issue 15). This cache keeps those reads.

Freshness (docs/routing.md, "Cached routing reads"):

* Every writer of those tables (dial rules and settings, application routes and their
  applications, forwarding rules, account deletion) raises ``routing_version.version`` in its own
  transaction (:func:`bump`), whichever process it runs in: the server's REST API, a
  ``callbridge`` CLI command, another node sharing the database. A writer in this process also
  clears this cache at once.
* Each call's routing starts with :meth:`ReadCache.check`: one small query for that number
  (shared by the calls being routed at that moment); a changed number empties the cache. So a
  change committed before a call is placed applies to that call, on any node.
* A read outside a call's routing (a REST listing, a conference invitation's forwarding limits)
  checks the number itself when the last check is older than ``CHECK_AFTER`` seconds: a change
  made by another process may show there up to that long after it was committed.
* A read that was under way when the cache was emptied is not stored (the generation check):
  a slow read cannot put back what a write replaced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import BigInteger, Integer, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from callbridge.store.schema import Base

__all__ = ["CHECK_AFTER", "ReadCache", "RoutingVersionRow", "bump"]

CHECK_AFTER = 1.0  # seconds: reads outside a call's routing trust a check this recent
_MAX_ENTRIES = 4096  # many accounts/users: emptied rather than grown without bound

T = TypeVar("T")


class RoutingVersionRow(Base):
    """The one row (``id`` 1) whose ``version`` every routing writer raises (migration 0011)."""

    __tablename__ = "routing_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


async def bump(session: AsyncSession) -> None:
    """Raise the routing version, in the writer's transaction (``session``)."""
    await session.execute(
        update(RoutingVersionRow)
        .where(RoutingVersionRow.id == 1)
        .values(version=RoutingVersionRow.version + 1),
        execution_options={"synchronize_session": False},
    )


class ReadCache:
    """Routing reads by key, valid while the database's routing version stays the same."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._entries: dict[Hashable, Any] = {}
        self._generation = 0
        self._version: int | None = None
        self._checked_at = -1e9
        self._checking: asyncio.Future[None] | None = None

    def clear(self) -> None:
        """Forget everything (a routing writer of this process committed)."""
        self._entries.clear()
        self._generation += 1

    async def check(self) -> None:
        """Read the routing version; empty the cache if it changed. Concurrent callers share
        one query."""
        if self._checking is not None:
            await asyncio.shield(self._checking)
            return
        self._checking = asyncio.get_running_loop().create_future()
        try:
            async with self._engine.connect() as conn:
                version = await conn.scalar(
                    select(RoutingVersionRow.version).where(RoutingVersionRow.id == 1)
                )
            if version != self._version:
                self.clear()
                self._version = version
            self._checked_at = time.monotonic()
            self._checking.set_result(None)
        except BaseException as exc:
            self._checking.set_exception(exc)
            self._checking.exception()  # retrieved: the waiters get it too
            raise
        finally:
            self._checking = None

    async def read(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """The cached value of ``key``, else ``load()``'s (stored unless the cache was emptied
        meanwhile; an exception is not stored)."""
        if time.monotonic() - self._checked_at > CHECK_AFTER:
            await self.check()
        if key in self._entries:
            value: T = self._entries[key]
            return value
        generation = self._generation
        value = await load()
        if generation == self._generation:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = value
        return value

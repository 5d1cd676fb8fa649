"""``WriteSpool``: records that must not be lost, written in order, kept in memory while the
database refuses them.

The server writes some records as things happen and cannot redo them later: a call's CDR, what
a live call's end webhooks need, a queue's waiting order, a webhook in the outbox. The
database may refuse a write for a while: SQLite's write lock held by another process (the
busy timeout runs out: "database is locked"), a full disk, a PostgreSQL server restarting.
Dropping the record then breaks the promise of a durable outbox and of a CDR for every call.

So such writes go through a spool::

    spool.submit(lambda: store.record_cdr(cdr), "CDR of call 42")   # a Future

* **In order.** One worker writes the records one at a time in submission order: a call's
  open CDR before its end, a queue entry before its removal.
* **Retried, never dropped.** A write the database refuses (:func:`is_refusal`) is retried,
  with a backoff from 0.1 s doubling up to 5 s, until it succeeds; the records behind it wait.
  A write that fails for another reason (a bug, a constraint) is logged with its traceback and
  skipped: retrying cannot help it.
* **Told.** The first refusal logs a WARNING ("spooling"), the write that ends a refusal
  logs how long it lasted and how many records are left to write.
* **Bounded.** ``limit`` records waiting make the spool ``full``: an ERROR says so, once per
  episode, and the server refuses new calls while it is (their records would have to wait
  too). Records of calls already under way are still taken: nothing is dropped. The spool
  can thus hold more than ``limit`` records, by what the calls in progress write at their end.

The worker is a task that runs only while records wait; ``drain()`` waits until the spool is
empty, ``close()`` ends the worker (records still waiting then are logged as lost).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

__all__ = ["WriteSpool", "is_refusal"]

log = logging.getLogger(__name__)

_FIRST_DELAY = 0.1  # seconds before the first retry
_MAX_DELAY = 5.0  # the backoff's ceiling

Write = Callable[[], Awaitable[object]]


def is_refusal(exc: BaseException) -> bool:
    """True for a database that refuses a write for now (locked, full, unreachable), as
    opposed to a write that is wrong in itself (a constraint, a bug)."""
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


@dataclass(slots=True)
class _Record:
    write: Write
    what: str
    done: asyncio.Future[None]


class WriteSpool:
    """Writes records in order, retrying while the database refuses them (module docstring)."""

    def __init__(self, limit: int = 10_000, *, name: str = "database writes") -> None:
        if limit < 1:
            raise ValueError(f"the spool limit must be 1 or more, not {limit}")
        self.limit = limit
        self.name = name
        self._records: deque[_Record] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._refused_since: float | None = None  # monotonic time of the first refusal
        self._told_full = False
        self.written = 0  # records written, in all
        self.retries = 0  # refused attempts, in all

    @property
    def waiting(self) -> int:
        """Records not written yet (the one being written included)."""
        return len(self._records)

    @property
    def refusing(self) -> bool:
        """True while the database refuses this spool's writes."""
        return self._refused_since is not None

    @property
    def full(self) -> bool:
        """True once ``limit`` records wait: new calls should be refused."""
        return len(self._records) >= self.limit

    def submit(self, write: Write, what: str) -> asyncio.Future[None]:
        """Queue ``write`` (a coroutine function) behind every write submitted before it.

        The future is done once it is written (or skipped for a non-refusal error, which is
        logged); it never raises, so nobody has to await it.
        """
        loop = asyncio.get_running_loop()
        record = _Record(write, what, loop.create_future())
        self._records.append(record)
        if self.full and not self._told_full:
            self._told_full = True
            log.error(
                "%s: the spool is full: %d records wait for the database (limit %d); new calls "
                "are refused until it takes writes again. Nothing is dropped.",
                self.name,
                len(self._records),
                self.limit,
            )
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run(), name=f"spool: {self.name}")
        return record.done

    async def drain(self) -> None:
        """Wait until every record submitted so far is written (or skipped)."""
        if self._records:
            await asyncio.gather(*(r.done for r in list(self._records)))

    async def close(self, grace: float = 5.0) -> None:
        """Give waiting records ``grace`` seconds, then stop; what is left is logged as lost."""
        try:
            async with asyncio.timeout(grace):
                await self.drain()
        except TimeoutError:
            pass
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        if self._records:
            log.error(
                "%s: stopped with %d records the database never took, lost: %s",
                self.name,
                len(self._records),
                ", ".join(r.what for r in list(self._records)[:20]),
            )
        for record in self._records:
            if not record.done.done():
                record.done.set_result(None)
        self._records.clear()

    async def _run(self) -> None:
        delay = _FIRST_DELAY
        while self._records:
            record = self._records[0]
            try:
                await record.write()
            except Exception as exc:
                if is_refusal(exc):
                    self._refused(record, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _MAX_DELAY)
                    continue
                log.exception("%s: could not write %s; skipped", self.name, record.what)
            self._records.popleft()
            self.written += 1
            delay = _FIRST_DELAY
            if not record.done.done():
                record.done.set_result(None)
            self._accepted()

    def _refused(self, record: _Record, exc: BaseException, delay: float) -> None:
        self.retries += 1
        if self._refused_since is None:
            self._refused_since = time.monotonic()
            log.warning(
                "%s: the database refuses writes (%s); spooling in memory: %d records wait, "
                "retrying %s in %.1f s",
                self.name,
                _short(exc),
                len(self._records),
                record.what,
                delay,
            )
        else:
            log.debug("%s: still refused (%s); retry in %.1f s", self.name, _short(exc), delay)

    def _accepted(self) -> None:
        if not self._records:
            self._told_full = False
        if self._refused_since is None:
            return
        log.warning(
            "%s: the database takes writes again after %.1f s; %d spooled records left to write",
            self.name,
            time.monotonic() - self._refused_since,
            len(self._records),
        )
        self._refused_since = None


def _short(exc: BaseException) -> str:
    """The first line of a database error (SQLAlchemy appends the statement and a URL)."""
    text = str(getattr(exc, "orig", None) or exc) or type(exc).__name__
    return text.splitlines()[0][:200]

"""Per-source bounds and their log: connections per address, failed logins, refused requests.

One :class:`SourceGuard` per server is shared by the REST middleware
(:mod:`callbridge.api.limits`) and every ``/ws`` connection (:mod:`callbridge.signalling.ws`);
it is ``app.state.abuse_guard``. A *source* is the client address of the ASGI scope: the peer's
IP address, or the address a trusted proxy put in ``X-Forwarded-For`` (uvicorn's
``--forwarded-allow-ips``, 127.0.0.1 by default). Behind a proxy that does not set it, every
client has the proxy's address, and per-source limits count all clients together
(docs/security.md, "Abuse").

Failed logins (a bad ``/ws`` token, a REST 401 with a key) and refused requests (a limit was
hit) are each logged as one line fail2ban can match, always in this form::

    <time> WARNING callbridge.abuse: login failed from 203.0.113.7: ws: invalid token …
    <time> WARNING callbridge.abuse: refused from 203.0.113.7: rest: 413 body over …

Repeated lines do not flood the log: each (source, kind) gets ``LOG_BURST`` lines a minute;
the rest are counted and summarised in one line (``… 532 more in the last minute``) when the
minute is over. Failures beyond ``login_failures_per_minute`` in a sliding minute block that
source's logins until the oldest failure is a minute old: ``/ws`` logins are refused with
``rate_limited`` and REST answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LOG_BURST", "LogThrottle", "SourceGuard", "source_of"]

log = logging.getLogger(__name__)

WINDOW = 60.0  # seconds: the minute of "per minute"
LOG_BURST = 5  # lines of one kind per source and minute before they are summarised
# Sources tracked at most (failures, log throttles). Past it the oldest are forgotten: an
# attacker rotating addresses cannot grow the server, at worst it forgets an old offender.
MAX_SOURCES = 10_000
UNKNOWN_SOURCE = "unknown"


def source_of(scope: Mapping[str, Any]) -> str:
    """The client address of an ASGI scope (``unknown`` for a Unix socket)."""
    client = scope.get("client")
    if isinstance(client, list | tuple) and client and isinstance(client[0], str):
        return client[0]
    return UNKNOWN_SOURCE


@dataclass
class _Burst:
    started: float  # when the window began (clock seconds)
    level: int
    summary: str
    lines: int = 0  # logged in this window
    suppressed: int = 0  # held back in this window
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class LogThrottle:
    """At most ``burst`` lines per key and ``window`` seconds; the rest are summarised.

    The summary (``… N more in the last minute``) is logged when the window ends, by a timer of
    the running event loop (or with the next line of that key when there is no loop).
    """

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = LOG_BURST,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.window = window
        self.clock = clock
        self._bursts: dict[tuple[str, ...], _Burst] = {}

    def log(
        self,
        level: int,
        key: tuple[str, ...],
        summary: str,
        msg: str,
        *args: object,
        exc_info: bool = False,
    ) -> bool:
        """Log ``msg % args`` unless ``key`` used its burst this window; whether it was.

        ``summary`` starts the line that counts what was held back, e.g. ``login failed from
        203.0.113.7``.
        """
        now = self.clock()
        burst = self._bursts.get(key)
        if burst is not None and now - burst.started >= self.window:
            self._summarise(key)
            burst = None
        if burst is None:
            if len(self._bursts) >= MAX_SOURCES:
                self._forget_oldest()
            burst = self._bursts[key] = _Burst(now, level, summary)
        if burst.lines < self.burst:
            burst.lines += 1
            self.logger.log(level, msg, *args, exc_info=exc_info)
            return True
        burst.suppressed += 1
        if burst.timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop: the next line of this key summarises
                return False
            delay = max(burst.started + self.window - now, 0.0)
            burst.timer = loop.call_later(delay, self._summarise, key)
        return False

    def _summarise(self, key: tuple[str, ...]) -> None:
        burst = self._bursts.pop(key, None)
        if burst is None:
            return
        if burst.timer is not None:
            burst.timer.cancel()
        if burst.suppressed:
            self.logger.log(
                burst.level, "%s: … %d more in the last minute", burst.summary, burst.suppressed
            )

    def _forget_oldest(self) -> None:
        oldest = min(self._bursts, key=lambda k: self._bursts[k].started)
        burst = self._bursts.pop(oldest)
        if burst.timer is not None:
            burst.timer.cancel()

    def close(self) -> None:
        """Cancel the pending summaries (at shutdown)."""
        for burst in self._bursts.values():
            if burst.timer is not None:
                burst.timer.cancel()
        self._bursts.clear()


class SourceGuard:
    """Connections, failed logins and refusals per source address (see the module doc)."""

    def __init__(
        self,
        max_connections_per_source: int,
        login_failures_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections_per_source
        self.max_failures = login_failures_per_minute
        self.clock = clock
        self.lines = LogThrottle(log, clock=clock)
        self._connections: dict[str, int] = {}
        self._failures: dict[str, deque[float]] = {}

    # connections ----------------------------------------------------------------------------
    def connect(self, source: str) -> bool:
        """Count a new connection of ``source``; False (not counted) when it has its maximum."""
        open_now = self._connections.get(source, 0)
        if open_now >= self.max_connections:
            return False
        self._connections[source] = open_now + 1
        return True

    def disconnect(self, source: str) -> None:
        left = self._connections.get(source, 0) - 1
        if left > 0:
            self._connections[source] = left
        else:
            self._connections.pop(source, None)

    def connections(self, source: str) -> int:
        return self._connections.get(source, 0)

    # failed logins --------------------------------------------------------------------------
    def _recent(self, source: str) -> deque[float] | None:
        failures = self._failures.get(source)
        if failures is None:
            return None
        cutoff = self.clock() - WINDOW
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[source]
            return None
        return failures

    def login_failed(self, source: str, where: str, reason: str) -> None:
        """A failed login of ``source`` (``where``: ``ws`` or ``rest``): counted and logged."""
        failures = self._recent(source)
        if failures is None:
            if len(self._failures) >= MAX_SOURCES:
                del self._failures[next(iter(self._failures))]  # the longest tracked
            failures = self._failures[source] = deque()
        failures.append(self.clock())
        if len(failures) > self.max_failures:
            del failures[0]  # the deque needs no more to know the source is blocked
        self.lines.log(
            logging.WARNING,
            ("login failed", source),
            f"login failed from {source}",
            "login failed from %s: %s: %s",
            source,
            where,
            reason,
        )

    def retry_after(self, source: str) -> float:
        """Seconds until ``source`` may try to log in again; 0 when it may now."""
        failures = self._recent(source)
        if failures is None or len(failures) < self.max_failures:
            return 0.0
        return max(failures[0] + WINDOW - self.clock(), 0.0)

    def refused(self, source: str, where: str, reason: str) -> None:
        """Log a request refused by a limit (one line; repeated ones summarised)."""
        self.lines.log(
            logging.WARNING,
            ("refused", source, where),
            f"refused from {source}: {where}",
            "refused from %s: %s: %s",
            source,
            where,
            reason,
        )

    def close(self) -> None:
        self.lines.close()

"""What ``Call.wait_for`` needs: the latest event of each name, and who waits for the next.

``wait_for(name)`` returns at once when the call is already "there" (see :meth:`EventHistory.
settled`), else waits for the next event of that name. Generic over the event type so it does
not depend on the call that keeps it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["EventHistory"]

E = TypeVar("E")

# Events that stay true once they happened, and pairs where the later one wins.
_ONCE = frozenset(
    {"trying", "ringing", "answered", "transferred", "bridged", "moved", "move-failed", "ended"}
)
_OPPOSITE = {"held": "resumed", "resumed": "held", "muted": "unmuted", "unmuted": "muted"}
# Settled while they concern the latest media modification (see settled()).
_MODIFICATION = frozenset({"modification-in-progress", "state-changed"})


class EventHistory(Generic[E]):
    """The events of one call so far (the latest per name) and the waiters for the next."""

    def __init__(self) -> None:
        self._seq = itertools.count()
        self._last: dict[str, tuple[int, E]] = {}
        self._waiters: list[tuple[str, asyncio.Future[E]]] = []
        self._modification_seq = -1  # when the latest media modification started

    def modification_started(self) -> None:
        """A media modification (ours or the far party's) starts: ``modification-in-progress``
        and ``state-changed`` seen before it no longer count."""
        self._modification_seq = next(self._seq)

    def forget(self, name: str) -> None:
        """``name`` has not happened (e.g. ``move-failed`` when a new move starts)."""
        self._last.pop(name, None)

    def record(self, name: str, event: E) -> None:
        """``event`` happened: keep it as the latest ``name`` and wake those waiting for it."""
        self._last[name] = (next(self._seq), event)
        for waiter in [w for w in self._waiters if w[0] == name]:
            self._waiters.remove(waiter)
            if not waiter[1].done():
                waiter[1].set_result(event)

    def settled(self, name: str, modification_pending: bool) -> E | None:
        """The event ``wait_for(name)`` returns at once, if any: ``trying``, ``ringing``,
        ``answered``, ``transferred``, ``moved``, ``move-failed`` and ``ended`` once they
        happened; ``held``/``resumed`` and ``muted``/``unmuted`` when they are the latest of
        their pair; ``media-modification`` while it waits for our answer
        (``modification_pending``); ``modification-in-progress`` and ``state-changed`` when
        they concern the latest modification."""
        seen = self._last.get(name)
        if seen is None:
            return None
        if name == "media-modification":
            return seen[1] if modification_pending else None
        if name in _MODIFICATION:
            return seen[1] if seen[0] > self._modification_seq else None
        if name in _ONCE:
            return seen[1]
        opposite = _OPPOSITE.get(name)
        if opposite is not None:
            later = self._last.get(opposite)
            if later is None or later[0] < seen[0]:
                return seen[1]
        return None

    async def next(self, name: str, timeout: float | None) -> E:  # noqa: ASYNC109
        """Wait for the next ``name`` event. :class:`TimeoutError` after ``timeout`` seconds."""
        future: asyncio.Future[E] = asyncio.get_running_loop().create_future()
        waiter = (name, future)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def fail_waiters(self, error_for: Callable[[str], BaseException]) -> None:
        """Nothing more will happen: every waiter gets ``error_for(name)``."""
        for name, future in self._waiters:
            if not future.done():
                future.set_exception(error_for(name))
        self._waiters.clear()

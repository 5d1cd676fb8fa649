"""How one ``/ws`` connection runs its messages: in order per call, concurrently across calls.

A connection's messages used to be handled one at a time, so a slow one (a ``conference.play``
of a URL that takes seconds to fetch) stalled all its signalling: a hold on another call
waited behind it (issue 10, defect 4). Now each message goes to a *lane*:

===================================  =====================================================
message                              lane
===================================  =====================================================
about one conference (its id)        ``conference:<id>``: in order with that conference's
about one call (``call_id``)         ``call:<id>``: in order with that call's
creating one (``call.create``,       run at once by the reader, in order with whatever the
``conference.start``)                reader runs (nothing else is about it yet)
``session.*``, and messages about    a *barrier*: the reader waits until every lane is idle,
several (``conference.merge``,       then runs it; later messages wait for it
``conference.split``,
``call.complete_transfer``)
===================================  =====================================================

A lane is a task that runs its queue and ends when the queue is empty. Messages of one lane
never overtake each other (an ICE candidate never overtakes the offer or answer it belongs
to); messages of different lanes may. At most ``max_pending`` messages are queued or running
in lanes per connection; past that the reader stops reading the socket until one is done, so a
client cannot queue work without end (the socket's own buffers push back).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Generic, TypeVar

__all__ = ["BARRIER", "INLINE", "Lanes", "Route"]

Job = TypeVar("Job")


class Route(Enum):
    """Where a message runs when it has no lane of its own."""

    INLINE = "inline"  # by the reader, now, whatever the lanes are doing
    BARRIER = "barrier"  # by the reader, once every lane is idle


INLINE = Route.INLINE
BARRIER = Route.BARRIER


class Lanes(Generic[Job]):
    """Ordered lanes of one connection; ``handle`` runs one job and never raises."""

    def __init__(self, handle: Callable[[Job], Awaitable[None]], max_pending: int = 32) -> None:
        self._handle = handle
        self._slots = asyncio.Semaphore(max_pending)
        self._queues: dict[str, deque[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def busy(self) -> int:
        """Lanes with work queued or running."""
        return len(self._tasks)

    async def submit(self, lane: str | Route, job: Job) -> None:
        """Run ``job`` in ``lane``; returns once it is queued (a lane) or done (a route)."""
        if lane is Route.BARRIER:
            await self._idle.wait()
        if isinstance(lane, Route):
            await self._handle(job)
            return
        await self._slots.acquire()
        queue = self._queues.get(lane)
        if queue is None:
            queue = self._queues[lane] = deque()
            self._tasks[lane] = asyncio.create_task(self._run(lane, queue), name=f"lane {lane}")
            self._idle.clear()
        queue.append(job)

    async def _run(self, lane: str, queue: deque[Job]) -> None:
        try:
            while queue:
                job = queue.popleft()
                try:
                    await self._handle(job)
                finally:
                    self._slots.release()
        finally:
            # No await between the last `while queue` and here: a job submitted meanwhile
            # would have found this lane's queue and been run above.
            del self._queues[lane]
            del self._tasks[lane]
            if not self._tasks:
                self._idle.set()

    def drop_queued(self) -> int:
        """Forget the jobs that have not started (the client is gone); how many."""
        dropped = 0
        for queue in self._queues.values():
            dropped += len(queue)
            for _ in range(len(queue)):
                self._slots.release()
            queue.clear()
        return dropped

    async def join(self) -> None:
        """Wait until every lane has run what it has."""
        await self._idle.wait()

"""``phone.events()``: every event of a phone, in order, as async iterators.

The phone's :class:`EventHub` hands each :class:`~callbridge.client.call.Event` to every open
:class:`EventStream`; closing the phone ends them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from callbridge.client.call import Event

__all__ = ["EventHub", "EventStream"]


class EventStream:
    """Every event of a phone, in order, as an async iterator (see :meth:`Phone.events`).

    Subscribed from creation, so nothing between ``phone.events()`` and the first ``async
    for`` step is missed. Ends when the phone closes; :meth:`close` stops it earlier. Events
    queue up until read: close a stream you stop reading.
    """

    def __init__(
        self, queue: asyncio.Queue[Event | None], on_close: Callable[[EventStream], None]
    ) -> None:
        self._queue = queue
        self._on_close = on_close
        self._ended = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self._ended:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            self.close()
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        """Stop receiving events; the iteration ends."""
        self._ended = True
        self._on_close(self)


class EventHub:
    """The open streams of one phone."""

    def __init__(self) -> None:
        self._queues: dict[EventStream, asyncio.Queue[Event | None]] = {}

    def stream(self, *, ended: bool = False) -> EventStream:
        """A new stream of the events published from now on (``ended``: one that ends at
        once, for a phone that is closed)."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        stream = EventStream(queue, self._forget)
        self._queues[stream] = queue
        if ended:
            queue.put_nowait(None)
        return stream

    def _forget(self, stream: EventStream) -> None:
        self._queues.pop(stream, None)

    def publish(self, event: Event) -> None:
        """Queue ``event`` on every open stream."""
        for queue in list(self._queues.values()):
            queue.put_nowait(event)

    def end(self) -> None:
        """The phone closed: every open stream ends once it has delivered what it has."""
        for queue in list(self._queues.values()):
            queue.put_nowait(None)

"""The webhook adapter: application events become outbox messages, in order.

:class:`~callbridge.core.appcalls.AppCalls` publishes each event of an application's call or
conference once, synchronously, while the control plane handles it (``AppEvent``: Telnyx's
``event_type``, its payload, the application and a per-call ``webhook_url``). This adapter
queues it at once (so the order of publication is kept) and a single task writes each one to
the durable outbox (``callbridge.webhooks.WebhookOutbox``), which signs and delivers it with
retries, one call's (or conference's) events in order (ordering key: the call's session or
the conference's id).

Where an event goes: the call's ``webhook_url`` when the application gave one (dial, answer,
transfer), else the application's ``webhook_event_url`` (and its failover URL). An event of a
call that belongs to no application goes nowhere (AppCalls does not publish those).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from callbridge.core.appcalls import AppCalls, AppEvent
from callbridge.webhooks import WebhookOutbox

__all__ = ["WebhookEvents"]

log = logging.getLogger(__name__)


class WebhookEvents:
    """Subscribes to application events and feeds the outbox; ``close()`` flushes it."""

    def __init__(self, appcalls: AppCalls, outbox: WebhookOutbox) -> None:
        self.outbox = outbox
        self._queue: asyncio.Queue[AppEvent | None] = asyncio.Queue()
        self._progress = asyncio.Condition()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-events")
        self.published = 0  # events received
        self.done = 0  # events handled (enqueued, or given up with a logged error)
        appcalls.subscribe(self._publish)

    def _publish(self, event: AppEvent) -> None:
        self.published += 1
        self._queue.put_nowait(event)

    async def _run(self) -> None:
        while (event := await self._queue.get()) is not None:
            try:
                await self._enqueue(event)
            except Exception:
                log.exception("could not enqueue the %s webhook", event.event_type)
            async with self._progress:
                self.done += 1
                self._progress.notify_all()

    async def _enqueue(self, event: AppEvent) -> None:
        app: Any = event.application
        url = event.webhook_url or (app.webhook_event_url if app is not None else None)
        if url is None:
            return
        await self.outbox.enqueue(
            event.event_type,
            event.payload,
            url=url,
            failover_url=None if event.webhook_url else app.webhook_event_failover_url,
            ordering_key=event.ordering_key,
            application_id=app.id if app is not None else None,
            occurred_at=event.occurred_at,
        )

    async def flush(self) -> None:
        """Wait until every event published so far is in the outbox."""
        target = self.published
        async with self._progress:
            await self._progress.wait_for(lambda: self.done >= target or self._task.done())

    async def close(self) -> None:
        self._queue.put_nowait(None)
        await self._task

"""How the SDK runs event handlers: an emitter per object, tasks owned by the phone.

Handlers are called in registration order, on the event loop, when the message is handled. A
plain function runs right there (keep it short). A coroutine function's coroutine runs in a task
owned by a :class:`TaskOwner` (the phone's); the phone awaits those tasks when it closes (and
cancels them if they take longer than a moment). An exception in a handler is logged and does
not stop other handlers or the connection.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["EventEmitter", "Handler", "TaskOwner"]

log = logging.getLogger(__name__)

Handler = Callable[..., object]
N = TypeVar("N", bound=str)


class TaskOwner:
    """Runs handler coroutines in tasks it keeps, so they can be awaited and cancelled."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def shutdown(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the tasks, then cancel the rest and await them."""
        current = asyncio.current_task()
        while tasks := {t for t in self._tasks if t is not current and not t.done()}:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
            grace = 0.0  # tasks spawned meanwhile by the ones above get no more time


class EventEmitter(Generic[N]):
    """Handlers by event name; ``N`` is the ``Literal`` of the allowed names."""

    def __init__(self, tasks: TaskOwner) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._tasks = tasks

    def add(self, name: N, handler: Handler) -> Handler:
        """Call ``handler`` on every ``name`` event; returns it (for :meth:`off`)."""
        self._handlers.setdefault(name, []).append(handler)
        return handler

    def off(self, name: N, handler: Handler) -> None:
        """Remove a handler added with ``on`` (no error if it is not there)."""
        handlers = self._handlers.get(name, [])
        if handler in handlers:
            handlers.remove(handler)

    def emit(self, name: N, *args: object) -> None:
        """Call the handlers of ``name`` with ``args`` (coroutines run in owned tasks)."""
        for handler in list(self._handlers.get(name, ())):
            try:
                result = handler(*args)
            except Exception:
                log.exception("%s handler %r failed", name, handler)
                continue
            if inspect.isawaitable(result):
                self._tasks.spawn(_await(result), name=f"{name} handler")


async def _await(awaitable: Awaitable[object]) -> None:
    await awaitable

"""Timers and background tasks of the control plane, in one place.

Every delayed action (a ring timeout, a move's timeout, the grace a failed media leg gets)
and every task the core starts without awaiting it (a CDR write, a hangup triggered by an
event) goes through one :class:`Scheduler`. It

- keys timers, so re-arming a key replaces the old timer and ``cancel(key)`` is exact;
- runs a timer's callback as an owned task when the callback is a coroutine function;
- keeps a reference to every task (no task is garbage-collected mid-flight, RUF006), logs a
  task's exception instead of losing it;
- lets its owner wait for the running tasks to finish (:meth:`drain`: work that must not be
  lost, such as a CDR write), and cancels and awaits them all in :meth:`close`.

All methods run on the event loop's thread; none blocks.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

Action = Callable[[], Awaitable[Any] | None]


class Scheduler:
    """The timers and owned tasks of one part of the control plane (``name`` labels its logs)."""

    def __init__(self, name: str = "core") -> None:
        self.name = name
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Awaitable[Any], what: str = "background task") -> asyncio.Task[None]:
        """Run ``work`` in a task this scheduler owns; its exception is logged as ``what``."""

        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: %s failed", self.name, what)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def later(self, delay: float, key: Hashable, action: Action, what: str = "timer") -> None:
        """Call ``action`` after ``delay`` seconds, replacing any timer armed under ``key``.

        A coroutine (or a callable returning an awaitable) runs as an owned task."""
        self.cancel(key)

        def fire() -> None:
            self._timers.pop(key, None)
            try:
                result = action()
            except Exception:
                log.exception("%s: %s failed", self.name, what)
                return
            if inspect.isawaitable(result):
                self.spawn(result, what)

        self._timers[key] = asyncio.get_running_loop().call_later(delay, fire)

    def cancel(self, key: Hashable) -> bool:
        """Disarm the timer under ``key``; True if one was armed."""
        timer = self._timers.pop(key, None)
        if timer is None:
            return False
        timer.cancel()
        return True

    def armed(self, key: Hashable) -> bool:
        return key in self._timers

    @property
    def pending(self) -> int:
        """Armed timers plus running tasks (for leak checks)."""
        return len(self._timers) + len(self._tasks)

    async def drain(self) -> None:
        """Wait until no task runs, without cancelling any; tasks started meanwhile (by the
        ones running) are waited for too. Timers stay armed. Never await it from one of this
        scheduler's own tasks: it would wait for itself."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Disarm every timer, cancel every task and wait for them to finish."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

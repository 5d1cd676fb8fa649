"""The control plane's scheduler: keyed timers, owned tasks, draining and closing."""

from __future__ import annotations

import asyncio

from callbridge.core.scheduler import Scheduler


async def test_drain_waits_for_running_tasks_and_the_ones_they_start_without_cancelling() -> None:
    scheduler = Scheduler("test")
    started, release = asyncio.Event(), asyncio.Event()
    done: list[str] = []

    async def second() -> None:
        done.append("second")

    async def first() -> None:
        started.set()
        await release.wait()
        scheduler.spawn(second(), "second")  # started while draining: waited for too
        done.append("first")

    scheduler.spawn(first(), "first")
    scheduler.later(60, "timer", lambda: None)
    draining = asyncio.create_task(scheduler.drain())
    await started.wait()
    assert not draining.done()  # the first task still runs
    release.set()
    async with asyncio.timeout(1):
        await draining
    assert done == ["first", "second"]
    assert scheduler.pending == 1 and scheduler.armed("timer")  # timers stay armed
    await scheduler.close()
    assert scheduler.pending == 0


async def test_a_failing_task_is_logged_and_drain_still_returns() -> None:
    scheduler = Scheduler("test")

    async def fail() -> None:
        raise RuntimeError("boom")

    task = scheduler.spawn(fail(), "failing work")
    await scheduler.drain()
    assert task.done() and task.exception() is None  # logged, not raised
    assert scheduler.pending == 0


async def test_re_arming_a_key_replaces_its_timer_and_cancel_is_exact() -> None:
    scheduler = Scheduler("test")
    fired: list[str] = []
    ran = asyncio.Event()

    def fire(name: str) -> None:
        fired.append(name)
        ran.set()

    scheduler.later(60, "k", lambda: fire("old"))
    scheduler.later(0, "k", lambda: fire("new"))
    scheduler.later(0, "other", lambda: fire("other"))
    assert scheduler.cancel("other") and not scheduler.cancel("other")
    async with asyncio.timeout(1):
        await ran.wait()
    assert fired == ["new"] and scheduler.pending == 0  # the old timer is gone
    await scheduler.close()

"""The SDK's own tasks end with the phone: a script that fails leaves nothing pending.

A script that raises with its phone open, or in ``async with Phone(...)``, after the server
side dropped the socket, ends its ``asyncio.run`` without the loop destroying an SDK task that
was still pending ("Task was destroyed but it is pending! ... PhoneSession._reconnect").
Each script runs in its own event loop (in a thread), as a user's ``asyncio.run`` would; the
socket is dropped by a TCP proxy on the server's side (tests/netcut.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Callable, Coroutine
from contextvars import Context
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from callbridge.client import Phone
from callbridge.testing.server import Server
from conftest import MakeUser
from netcut import NetCut

SDK_PACKAGE = "/callbridge/client/"


class ScriptFailed(Exception):
    """What the scripts below raise, as a user's script would on a bug of its own."""


def is_sdk_task(task: asyncio.Task[Any]) -> bool:
    """A task running a coroutine of the SDK (``callbridge.client``)."""
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and SDK_PACKAGE in code.co_filename.replace("\\", "/")


@dataclass
class LoopRecord:
    """What happened to one event loop: its tasks (weakly, so the loop's end may destroy
    them) and what the ``asyncio`` logger reported."""

    tasks: weakref.WeakSet[asyncio.Task[Any]] = field(default_factory=weakref.WeakSet)
    coroutines: list[str] = field(default_factory=list)  # what each task ran, in order
    logged: list[str] = field(default_factory=list)

    def pending_sdk_tasks(self) -> list[str]:
        return [t.get_name() for t in list(self.tasks) if is_sdk_task(t) and not t.done()]


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self._into = into

    def emit(self, record: logging.LogRecord) -> None:
        self._into.append(record.getMessage())


def run_in_own_loop(script: Callable[[], Coroutine[Any, Any, None]]) -> LoopRecord:
    """``asyncio.run(script())`` (expecting :class:`ScriptFailed`), recording every task the
    loop made and every asyncio warning up to the loop's end and a garbage collection."""
    record = LoopRecord()

    def factory(
        loop: asyncio.AbstractEventLoop, coro: Any, context: Context | None = None
    ) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, context=context)
        record.tasks.add(task)
        record.coroutines.append(getattr(coro, "__qualname__", repr(coro)))
        return task

    handler = _Collect(record.logged)
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addHandler(handler)
    try:
        with asyncio.Runner() as runner:
            runner.get_loop().set_task_factory(factory)
            with pytest.raises(ScriptFailed):
                runner.run(script())
        gc.collect()  # a pending task the loop dropped is reported when it is collected
    finally:
        asyncio_log.removeHandler(handler)
    return record


async def lose_the_socket(phone: Phone, link: NetCut, *, resume: bool) -> None:
    """Drop the phone's socket from the server's side; with ``resume``, let it resume."""
    off, on = asyncio.Event(), asyncio.Event()
    phone.on("connectivity-off", off.set)
    phone.on("connectivity-on", on.set)
    await link.cut()
    await asyncio.wait_for(off.wait(), 5)
    assert phone.state == "reconnecting"
    if resume:
        await link.restore()
        await asyncio.wait_for(on.wait(), 5)
        assert phone.state == "ready"


@pytest.mark.parametrize("when", ["reconnecting", "resumed"])
async def test_a_script_that_fails_with_its_phone_open_leaves_no_sdk_task_pending(
    server: Server, make_user: MakeUser, when: Literal["reconnecting", "resumed"]
) -> None:
    """The script never closes its phone; the loop's shutdown cancels the phone's tasks, and
    that must not start new ones (a reader cancelled at shutdown is not a lost socket)."""
    user = await make_user()
    phones: list[Phone] = []

    async def script() -> None:
        link = NetCut(server.port)
        await link.start()
        phone = Phone(link.url, user.token)
        phones.append(phone)
        await phone.login()
        await lose_the_socket(phone, link, resume=when == "resumed")
        raise ScriptFailed("the script's own bug")

    record = await asyncio.to_thread(run_in_own_loop, script)
    assert record.logged == [] and record.pending_sdk_tasks() == []
    assert "PhoneSession._reconnect" in record.coroutines  # the case it is about
    assert phones[0].state in ("reconnecting", "ready")  # never closed: the server drops it


async def test_an_exception_in_async_with_after_the_server_dropped_the_socket_closes_the_phone(
    server: Server, make_user: MakeUser
) -> None:
    """The script raises inside ``async with Phone(...)`` while the phone is resuming: on the
    way out the phone is closed, its reconnection cancelled and awaited: by the time the
    exception leaves the block, no task of the SDK is left."""
    user = await make_user()
    left: list[str] = []
    phones: list[Phone] = []

    async def script() -> None:
        link = NetCut(server.port)
        await link.start()
        try:
            async with Phone(link.url, user.token) as phone:
                phones.append(phone)
                await lose_the_socket(phone, link, resume=False)
                raise ScriptFailed("the script's own bug")
        finally:
            left.extend(t.get_name() for t in asyncio.all_tasks() if is_sdk_task(t))

    record = await asyncio.to_thread(run_in_own_loop, script)
    assert left == [] and phones[0].state == "closed"
    assert record.logged == [] and record.pending_sdk_tasks() == []


async def test_closing_a_resuming_phone_awaits_its_reconnection(
    server: Server, make_user: MakeUser
) -> None:
    """``close()`` while the phone resumes returns only once the reconnection has ended."""
    user = await make_user()
    link = NetCut(server.port)
    await link.start()
    phone = Phone(link.url, user.token)
    await phone.login()
    try:
        await lose_the_socket(phone, link, resume=False)
        reconnecting = [t for t in asyncio.all_tasks() if t.get_name().endswith(" reconnect")]
        assert len(reconnecting) == 1
        await phone.close()
        assert reconnecting[0].done() and phone.state == "closed"
        assert [t.get_name() for t in asyncio.all_tasks() if link.url in t.get_name()] == []
    finally:
        await phone.close()
        await link.cut()

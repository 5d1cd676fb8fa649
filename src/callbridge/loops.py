"""Which asyncio event loop the server and its media workers run on (``--event-loop``).

uvloop (libuv under asyncio's API) runs the per-datagram work of the media plane, the socket
reads and writes and the callbacks around them, in C: on this machine a relayed WebRTC packet
cost about 20 % less CPU on it (docs/benchmarks.md, "Packet path"). ``auto`` takes uvloop when
it can be imported (it comes with ``uvicorn[standard]``, a dependency, on every platform
uvloop supports) and asyncio's own loop otherwise; ``asyncio`` keeps the standard loop (for
debugging with asyncio's debug mode, or if a library misbehaves on uvloop).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["EVENT_LOOPS", "EventLoop", "chosen", "run", "running"]

EventLoop = Literal["auto", "uvloop", "asyncio"]
EVENT_LOOPS: tuple[EventLoop, ...] = ("auto", "uvloop", "asyncio")

T = TypeVar("T")


def chosen(choice: EventLoop) -> Literal["uvloop", "asyncio"]:
    """The loop ``choice`` means on this installation."""
    if choice == "auto":
        return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return choice


def run(main: Coroutine[Any, Any, T], choice: EventLoop) -> T:
    """Run ``main`` to completion on the loop ``choice`` means (as :func:`asyncio.run`)."""
    if chosen(choice) == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def running() -> Literal["uvloop", "asyncio"]:
    """The loop the calling coroutine runs on (``/healthz`` says it)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"

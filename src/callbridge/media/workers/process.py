"""One media worker process as the control process sees it: start, calls, replies, events,
counters, death."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from callbridge.config import ServerConfig
from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.media.counters import PacketCounts
from callbridge.media.fetch import current_owner
from callbridge.media.interface import MediaEvent
from callbridge.media.workers.wire import read_frame, write_frame

__all__ = ["WorkerProcess"]

log = logging.getLogger(__name__)
START_TIMEOUT = 30.0  # seconds a new worker has to import and say it is ready
STOP_TIMEOUT = 5.0  # seconds a worker has to shut its media down before it is killed


class WorkerProcess:
    """A running worker (``index`` is its slot; ``generation`` counts restarts of the slot)."""

    def __init__(
        self,
        index: int,
        generation: int,
        on_event: Callable[[WorkerProcess, MediaEvent], None],
        on_exit: Callable[[WorkerProcess, str], None],
    ) -> None:
        self.index = index
        self.generation = generation
        self.pid = 0
        self.started = time.time()
        self.alive = False
        self.cause = ""  # why it ended, once it did
        self.objects = 0  # media objects alive in it (its last report)
        self.packets = PacketCounts()
        self.ticks = 0
        self.late_ticks = 0
        self._on_event = on_event
        self._on_exit = on_exit
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._reader_task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self, config: ServerConfig, log_level: str) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "callbridge.media.workers.worker",
                str(child.fileno()),
                log_level,
                config.event_loop,
                pass_fds=(child.fileno(),),
                start_new_session=True,  # signals for the server's terminal are not theirs
            )
        finally:
            child.close()
        self.pid = self._proc.pid
        reader, self._writer = await asyncio.open_unix_connection(sock=parent)
        write_frame(self._writer, (config,))
        try:
            ready = await asyncio.wait_for(read_frame(reader), START_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError) as exc:
            self._proc.kill()
            raise MediaError(
                ErrorCode.INTERNAL, f"media worker {self.index} did not start: {exc!r}"
            ) from exc
        self._stats(ready[2])
        self.alive = True
        self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))
        log.info("media worker %d started (pid %d)", self.index, self.pid)

    def _stats(self, stats: tuple[int, ...]) -> None:
        self.objects = stats[0]
        p = PacketCounts()
        p.received, p.lost, p.late, p.relayed = stats[1:5]
        p.srtp_rejected, p.handler_errors = stats[7:9]
        self.packets = p
        self.ticks, self.late_ticks = stats[5], stats[6]

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await read_frame(reader)
                kind = message[0]
                if kind == "e":
                    self._on_event(self, message[1])
                elif kind == "r":
                    _, req, ok, value, stats = message
                    self._stats(stats)
                    future = self._pending.pop(req, None)
                    if future is not None and not future.done():
                        if ok:
                            future.set_result(value)
                        else:
                            future.set_exception(_error(*value))
                elif kind == "s":
                    self._stats(message[1])
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            if isinstance(exc, ValueError):
                log.error("media worker %d sent a bad frame: %s", self.index, exc)
        await self._ended()

    async def _ended(self) -> None:
        self.alive = False
        code = await self._proc.wait() if self._proc is not None else None
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            self.cause = f"media worker {self.index} (pid {self.pid}) was killed by {name}"
        else:
            self.cause = f"media worker {self.index} (pid {self.pid}) exited with {code}"
        error = MediaError(ErrorCode.INVALID_STATE, self.cause)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        if not self._stopping:
            log.error("%s; its calls end failed and the worker is restarted", self.cause)
            self._on_exit(self, self.cause)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run one MediaServer method in the worker; its errors are raised here."""
        if not self.alive or self._writer is None:
            raise MediaError(ErrorCode.INVALID_STATE, self.cause or "media worker not running")
        req = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req] = future
        # The owner (fetch.acting_for: whom a playback or fetch counts for) is a context
        # variable of this process: it travels with the call so the per-user limits hold.
        write_frame(self._writer, ("c", req, method, args, kwargs, current_owner()))
        return await future

    async def stop(self) -> None:
        """Close the socket (the worker shuts its media down and exits); kill it if slow."""
        self._stopping = True
        if self._writer is not None:
            self._writer.close()
        if self._proc is not None and self._proc.returncode is None:
            try:
                await asyncio.wait_for(self._proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task

    def health(self) -> dict[str, Any]:
        """This worker in ``/healthz``."""
        return {
            "index": self.index,
            "pid": self.pid,
            "alive": self.alive,
            "restarts": self.generation,
            "media_objects": self.objects,
            "late_ticks": self.late_ticks,
            "srtp_rejected": self.packets.srtp_rejected,
            "handler_errors": self.packets.handler_errors,
        }


def _error(kind: str, code: str, message: str) -> Exception:
    """The worker's error, raised again in the control process."""
    try:
        error_code = ErrorCode(code)
    except ValueError:
        error_code = ErrorCode.INTERNAL
    if kind == "ProtocolError":
        return ProtocolError(error_code, message)
    return MediaError(error_code, message)

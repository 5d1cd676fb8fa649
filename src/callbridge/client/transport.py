"""The phone's WebSocket to the server: requests matched to replies by ``req_id``, and resuming.

docs/protocol.md: every request carries a ``req_id``; the first server message with that
``req_id`` is its reply (``call.trying``, ``call.held``, …, or ``error``). Messages are read
one at a time, in arrival order, by a reader task that hands each to the owner's ``on_message``
callback *before* it completes the request it answers, so the owner has seen a reply (say, the
``call.trying`` that creates a call) by the time :meth:`Transport.request` returns it.

When the socket drops on its own, ``on_lost`` is called; the owner may then
:meth:`Transport.resume` the session on a new socket (docs/protocol.md, "Session"). When the
server drains (docs/protocol.md, "Graceful drain"), the owner logs in elsewhere with
:meth:`Transport.open_any`.

The layers above see the transport through :class:`Requester`: send a message, get the reply.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from callbridge.client.errors import NotConnectedError, remote_error
from callbridge.errors import ErrorCode, RemoteError
from callbridge.statemachine import StateMachine

__all__ = ["Requester", "Transport", "TransportState"]

log = logging.getLogger(__name__)

_RECONNECT_FIRST = 0.2  # seconds before the first reconnection attempt; doubles each time
_RECONNECT_MAX = 2.0


class Requester(Protocol):
    """What the SDK's objects need to talk to the server (the phone gives them one)."""

    @property
    def request_timeout(self) -> float:
        """Seconds a request waits for its reply."""
        ...

    async def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``message`` and return the server's reply; an ``error`` reply raises
        :class:`~callbridge.errors.RemoteError`."""
        ...

    def new_req_id(self) -> str:
        """A fresh ``req_id``, for a request whose reply must be recognised while it is
        handled (before :meth:`request` returns it)."""
        ...


class TransportState(StrEnum):
    """The socket of a :class:`Transport`::

    DISCONNECTED ──open()──▶ CONNECTING ──socket up──▶ OPEN ──socket lost / close()──┐
                 ──open_any()──▶ (server after server) ──logged in──▶ OPEN           │
         ▲  ▲                    │ failed                                            │
         │  └────────────────────┘                                                   │
         ├───────────────────────────────────────────────────────────────────────────┘
         │                ┌──────────── the server resumed the session ──▶ OPEN
    DISCONNECTED ──resume()──▶ RESUMING (new sockets until one resumes)
                          └──────────── refused / grace over / close() ──▶ DISCONNECTED
    """

    DISCONNECTED = "disconnected"  # no socket: not opened yet, closed, or lost
    CONNECTING = "connecting"  # open() / open_any(): a socket is being opened (logged in)
    OPEN = "open"  # the socket is up; requests go out
    RESUMING = "resuming"  # resume(): reconnecting; only the resume request goes out


class Transport(StateMachine[TransportState]):
    """One WebSocket connection to ``url`` at a time, and the requests waiting on it.

    :param on_message: called with every message read (a dict), in arrival order.
    :param on_lost: called when an open socket drops by itself (not after :meth:`close`).
    """

    TRANSITIONS: ClassVar[Mapping[TransportState, frozenset[TransportState]]] = {
        TransportState.DISCONNECTED: frozenset(
            {TransportState.CONNECTING, TransportState.RESUMING}
        ),
        TransportState.CONNECTING: frozenset({TransportState.OPEN, TransportState.DISCONNECTED}),
        TransportState.OPEN: frozenset({TransportState.DISCONNECTED}),
        TransportState.RESUMING: frozenset({TransportState.OPEN, TransportState.DISCONNECTED}),
    }

    def __init__(
        self,
        url: str,
        *,
        request_timeout: float,
        on_message: Callable[[dict[str, Any]], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.url = url
        self.request_timeout = request_timeout
        self.state = TransportState.DISCONNECTED
        self._on_message = on_message
        self._on_lost = on_lost
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._req_prefix = secrets.token_hex(4)
        self._req_ids = itertools.count(1)

    @property
    def id(self) -> str:
        """The URL (names the transport in logs)."""
        return self.url

    @property
    def connection(self) -> ClientConnection | None:
        """The current socket, if any."""
        return self._ws

    @property
    def reader(self) -> asyncio.Task[None] | None:
        """The task reading the current socket, if any."""
        return self._reader

    def new_req_id(self) -> str:
        """A ``req_id`` unique to this transport (a random prefix and a counter)."""
        return f"{self._req_prefix}-{next(self._req_ids)}"

    def awaits(self, req_id: object) -> bool:
        """True while a request with this ``req_id`` waits for its reply."""
        return isinstance(req_id, str) and req_id in self._pending

    # ------------------------------------------------------------------------------------------
    # connecting

    async def open(self) -> None:
        """Open the socket and start reading it.

        :raises OSError, WebSocketException, TimeoutError: the server cannot be reached.
        """
        self.transition(TransportState.CONNECTING)
        try:
            await self._connect()
        except BaseException:
            await self.close()
            raise
        self.transition(TransportState.OPEN)

    async def _connect(self) -> None:
        ws = await connect(self.url, open_timeout=self.request_timeout)
        self._ws = ws
        self._reader = asyncio.get_running_loop().create_task(
            self._read(ws), name=f"phone {self.url} reader"
        )

    async def resume(self, message: Mapping[str, Any], grace: float) -> bool:
        """After a loss, open new sockets and send ``message`` (``session.resume``) on each
        until the server accepts it: True (OPEN). False when the server refuses it or ``grace``
        seconds run out (the transport is then closed). Retries back off from 0.2 s to 2 s."""
        self.transition(TransportState.RESUMING)
        try:
            if await self._resume(message, grace):
                self.transition(TransportState.OPEN, cause="resumed")
                return True
        except BaseException:
            await self.close()  # cancelled (the phone closed, the loop ends): the socket too
            raise
        await self.close()
        return False

    async def _resume(self, message: Mapping[str, Any], grace: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        delay = _RECONNECT_FIRST
        while True:
            try:
                await self._connect()
            except (OSError, WebSocketException, TimeoutError) as exc:
                log.debug("phone %s: reconnect failed: %s", self.url, exc)
            else:
                try:
                    await self._send(message)
                except RemoteError as exc:
                    log.warning("phone %s: the session cannot be resumed: %s", self.url, exc)
                    return False
                except (NotConnectedError, TimeoutError):
                    await self._drop()  # lost again (or mute): keep trying on a new socket
                else:
                    return True
            if loop.time() + delay > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX)

    async def open_any(
        self, urls: Sequence[str], message: Mapping[str, Any], window: float
    ) -> dict[str, Any] | None:
        """Open a socket to each of ``urls`` in turn and send ``message`` (``session.login``)
        until a server accepts it: its reply, the transport OPEN at that URL (:attr:`url`).

        A server that cannot be reached, or answers ``draining``, is passed over; the rounds
        repeat, backing off from 0.2 s to 2 s, until ``window`` seconds have passed: ``None``
        then (DISCONNECTED).

        :raises RemoteError: a server refused ``message`` for another reason (say
            ``invalid_token``): another server of the same service would too.
        """
        self.transition(TransportState.CONNECTING, cause="logging in elsewhere")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        delay = _RECONNECT_FIRST
        try:
            while True:
                for url in urls:
                    self.url = url
                    reply = await self._try_login(message)
                    if reply is not None:
                        self.transition(TransportState.OPEN, cause=f"logged in at {url}")
                        return reply
                if loop.time() + delay > deadline:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX)
        except BaseException:
            await self.close()
            raise
        await self.close()
        return None

    async def _try_login(self, message: Mapping[str, Any]) -> dict[str, Any] | None:
        """One attempt of :meth:`open_any` at :attr:`url`: the reply, or ``None`` to go on."""
        try:
            await self._connect()
        except (OSError, WebSocketException, TimeoutError) as exc:
            log.debug("phone %s: cannot connect: %s", self.url, exc)
            return None
        try:
            return await self._send(message)
        except RemoteError as exc:
            await self._drop()
            if exc.code != ErrorCode.DRAINING:
                raise
            log.info("phone %s: draining too: %s", self.url, exc.message)
        except (NotConnectedError, TimeoutError) as exc:
            await self._drop()
            log.debug("phone %s: no answer to the login: %s", self.url, exc)
        return None

    async def close(self) -> None:
        """Close the socket, stop the reader, fail the requests still waiting. Idempotent."""
        if self.state is not TransportState.DISCONNECTED:
            self.transition(TransportState.DISCONNECTED, cause="closed")
        await self._drop()

    async def _drop(self) -> None:
        """Close the current socket and its reader, if any, and fail what waits on them."""
        ws, reader = self._ws, self._reader
        self._ws = self._reader = None  # what the reader sees: closed by us, not lost
        if ws is not None:
            await ws.close()
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.wait([reader])
        self._fail_pending()

    def _fail_pending(self) -> None:
        for req_id, future in list(self._pending.items()):
            if not future.done():
                future.set_exception(NotConnectedError(f"connection closed (request {req_id})"))
        self._pending.clear()

    # ------------------------------------------------------------------------------------------
    # requests

    async def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send one protocol message and return the server's first reply to it.

        A ``req_id`` is added unless ``message`` has one.

        :raises RemoteError: the reply is an ``error``.
        :raises NotConnectedError: no open socket, or it closed before the reply.
        :raises TimeoutError: no reply within :attr:`request_timeout` seconds.
        """
        if self.state is TransportState.RESUMING:
            raise NotConnectedError("the phone is reconnecting; try again when it is ready")
        if self.state is not TransportState.OPEN:
            raise NotConnectedError(f"the phone is not connected ({self.state}): log in first")
        return await self._send(message)

    async def _send(self, message: Mapping[str, Any]) -> dict[str, Any]:
        ws = self._ws
        if ws is None:
            raise NotConnectedError("the phone is not connected: log in first")
        req_id = str(message.get("req_id") or self.new_req_id())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        try:
            try:
                await ws.send(json.dumps({**message, "req_id": req_id}))
            except ConnectionClosed as exc:
                raise NotConnectedError(f"connection closed: {exc}") from exc
            wait = self.request_timeout
            try:
                async with asyncio.timeout(wait):
                    reply = await future
            except TimeoutError:
                raise TimeoutError(
                    f"no reply to {message.get('type')} (req_id {req_id}) within {wait} s"
                ) from None
        finally:
            self._pending.pop(req_id, None)
        if reply.get("type") == "error":
            raise remote_error(reply)
        return reply

    # ------------------------------------------------------------------------------------------
    # the reader

    async def _read(self, ws: ClientConnection) -> None:
        cancelled = False
        try:
            async for frame in ws:
                try:
                    msg = json.loads(frame)
                except ValueError:
                    log.warning("ignoring a frame that is not JSON: %.80r", frame)
                    continue
                if not isinstance(msg, dict):
                    log.warning("ignoring a frame that is not an object: %.80r", frame)
                    continue
                self._deliver(msg)
        except (ConnectionClosed, WebSocketException, OSError) as exc:
            log.debug("phone %s: connection lost: %s", self.url, exc)
        except asyncio.CancelledError:
            # Not by close() (it forgets the socket first): the event loop is ending (an
            # ``asyncio.run`` whose script raised cancels every task). That is no lost socket
            # to resume: a reconnection started now would outlive the loop.
            cancelled = True
            raise
        finally:
            if self._ws is ws:  # lost by itself, or cancelled (close() forgets it first)
                self._ws = None
                self._fail_pending()
                if self.state is TransportState.OPEN:
                    cause = "reader cancelled" if cancelled else "socket lost"
                    self.transition(TransportState.DISCONNECTED, cause=cause)
                    if not cancelled:
                        self._on_lost()

    def _deliver(self, msg: dict[str, Any]) -> None:
        """Hand ``msg`` to the owner, then to the request it answers (if one waits)."""
        try:
            self._on_message(msg)
        except Exception:
            log.exception("handling %s failed", msg.get("type"))
        req_id = msg.get("req_id")
        future = self._pending.pop(req_id, None) if isinstance(req_id, str) else None
        if future is not None and not future.done():
            future.set_result(msg)

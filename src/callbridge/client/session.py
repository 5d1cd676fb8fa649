"""The session half of a :class:`~callbridge.client.Phone`: login, resuming, logout, events.

:class:`PhoneSession` is the phone's base class. It keeps the :class:`PhoneState` machine,
the :class:`~callbridge.client.transport.Transport`, the session the server granted
(:class:`SessionInfo`), and the phone's own events and handler tasks. The telephony half
(calls, conferences, the call group) is the :class:`~callbridge.client.Phone` subclass, which
routes the server's messages (:meth:`PhoneSession._dispatch`) and ends its calls when the
session is over (:meth:`PhoneSession._session_over`).

When the socket drops while logged in, the session is resumed on a new socket
(``session.resume``, docs/protocol.md "Session") for as long as the server keeps it; calls and
their media go on meanwhile. Requests made while resuming fail with
:class:`~callbridge.client.NotConnectedError`.

A server that drains (docs/protocol.md, "Graceful drain") is no network failure: the phone
emits ``session-draining(DrainNotice)`` and keeps its calls there until they end (or the
server ends them at its deadline). Once the server ends the session (or its socket closes),
the phone logs in to the next of its ``fallback_urls`` (``server-changed(url)``: a new
session, no calls carried over), passing over servers that drain too, for up to
``MOVE_WINDOW`` seconds; without one that takes it, or without ``fallback_urls``, it closes
with ``disconnected("draining")``. A socket that drops during the drain without the server
ending the session (a network loss, or the server died) is resumed as after any loss, but
only until the drain's deadline; then the phone moves.

For debugging and tests, :meth:`PhoneSession.on_message` shows every raw server message, and
:meth:`PhoneSession.close` drops the connection the way a lost network does (no logout, no
resume).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar, Literal, overload

from callbridge.client.call import Call, Event
from callbridge.client.conference import Conference
from callbridge.client.emitter import EventEmitter, TaskOwner
from callbridge.client.errors import ClientError, NotConnectedError
from callbridge.client.eventnames import ConferenceEventName, PhoneEventName
from callbridge.client.stream import EventHub, EventStream
from callbridge.client.transport import Transport
from callbridge.errors import ErrorCode, RemoteError
from callbridge.statemachine import StateMachine

__all__ = [
    "MOVE_WINDOW",
    "DrainNotice",
    "MessageObserver",
    "PhoneSession",
    "PhoneState",
    "SessionInfo",
]

log = logging.getLogger(__name__)

_HANDLER_GRACE = 1.0  # seconds handlers get to finish when the phone closes
MOVE_WINDOW = 30.0  # seconds a phone whose server drained tries its fallback URLs

MessageObserver = Callable[[Mapping[str, Any]], object]
"""Sees one raw server message (see :meth:`PhoneSession.on_message`)."""


class PhoneState(StrEnum):
    """The life of a :class:`Phone`::

    IDLE ──login()──▶ CONNECTING ──session.ready──▶ READY ──logout()──▶ CLOSING ──▶ CLOSED
      ▲                   │ error / refused              │  ▲  │ close() / expired ───▶ CLOSED
      └───────────────────┘     socket lost, or the      ▼  │ session.resumed, or logged in
                                server drained   RECONNECTING  at a fallback URL
                                                         └──gave up──────────────────▶ CLOSED
    """

    IDLE = "idle"  # not connected; login() connects
    CONNECTING = "connecting"  # socket open, session.login sent
    READY = "ready"  # logged in: calls can be made and received
    RECONNECTING = "reconnecting"  # socket lost: resuming; or server drained: moving
    CLOSING = "closing"  # session.logout sent, waiting for the server to finish
    CLOSED = "closed"  # over for good; make a new Phone to log in again


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What ``session.ready`` said: the session id and the user
    (``name``, ``extension``, ``number``, ``display_name``)."""

    session_id: str
    user: dict[str, Any] = field(default_factory=dict)
    e911_id: str | None = None
    expires_at: str | None = None  # ISO 8601: when the token, and so the session, expires
    resume_grace: float = 0.0  # seconds the server keeps the session after the socket drops


@dataclass(frozen=True, slots=True)
class DrainNotice:
    """What ``session.draining`` said: the server ``url`` drains; the calls still up there in
    ``deadline_ms`` milliseconds (counted from when it was sent) will be ended (``hangup``); it
    takes no new call for ``retry_after`` seconds."""

    url: str
    deadline_ms: int
    retry_after: int
    received_at: float = 0.0  # time.monotonic() when it arrived

    def seconds_left(self) -> float:
        """Seconds until the server ends the calls still up (0 once that time has passed)."""
        return max(0.0, self.received_at + self.deadline_ms / 1000 - time.monotonic())


class _SessionRequester:
    """The session as the phone's parts' :class:`~callbridge.client.transport.Requester`:
    their requests go through :meth:`PhoneSession.request` (refused while not logged in)."""

    def __init__(self, session: PhoneSession, transport: Transport) -> None:
        self._session = session
        self._transport = transport

    @property
    def request_timeout(self) -> float:
        return self._transport.request_timeout

    async def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        return await self._session.request(message)

    def new_req_id(self) -> str:
        return self._transport.new_req_id()


class PhoneSession(StateMachine[PhoneState]):
    """A phone's session with the server (see the module docstring); ``Phone`` extends it."""

    TRANSITIONS: ClassVar[Mapping[PhoneState, frozenset[PhoneState]]] = {
        PhoneState.IDLE: frozenset({PhoneState.CONNECTING, PhoneState.CLOSED}),
        PhoneState.CONNECTING: frozenset({PhoneState.IDLE, PhoneState.READY, PhoneState.CLOSED}),
        PhoneState.READY: frozenset(
            {PhoneState.CLOSING, PhoneState.RECONNECTING, PhoneState.CLOSED}
        ),
        PhoneState.RECONNECTING: frozenset({PhoneState.READY, PhoneState.CLOSED}),
        PhoneState.CLOSING: frozenset({PhoneState.CLOSED}),
        PhoneState.CLOSED: frozenset(),
    }

    def __init__(
        self,
        url: str,
        token: str,
        *,
        request_timeout: float,
        user_id: str | None,
        e911_id: str | None,
        reconnect: bool,
        fallback_urls: Sequence[str] = (),
    ) -> None:
        self._transport = Transport(
            url,
            request_timeout=request_timeout,
            on_message=self._receive,
            on_lost=self._connection_lost,
        )
        self._requester = _SessionRequester(self, self._transport)
        self.token = token
        self.user_id = user_id
        self.e911_id = e911_id
        self.reconnect = reconnect
        self.fallback_urls = list(fallback_urls)
        self.draining: DrainNotice | None = None  # the server's session.draining, if any
        self.session: SessionInfo | None = None
        self.disconnect_reason: str | None = None
        self.state = PhoneState.IDLE
        self._finisher: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._expired = False
        self._tasks = TaskOwner()
        self._emitter: EventEmitter[PhoneEventName | ConferenceEventName] = EventEmitter(
            self._tasks
        )
        self._hub = EventHub()
        self._observers: list[MessageObserver] = []

    # hooks of the telephony half --------------------------------------------------------------

    def _dispatch(self, msg: dict[str, Any]) -> None:
        """Take one server message (in arrival order; before the request it answers returns)."""
        raise NotImplementedError

    def _session_over(self, end_reason: str) -> None:
        """The session is over: end every call here with ``end_reason``."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------
    # state

    @property
    def id(self) -> str:
        """The URL (names the phone in logs)."""
        return self.url

    @property
    def url(self) -> str:
        """The server's WebSocket URL."""
        return self._transport.url

    @url.setter
    def url(self, url: str) -> None:
        self._transport.url = url

    @property
    def request_timeout(self) -> float:
        """Seconds to wait for the server's answer to a request."""
        return self._transport.request_timeout

    @request_timeout.setter
    def request_timeout(self, seconds: float) -> None:
        self._transport.request_timeout = seconds

    def _require(self, state: PhoneState, action: str) -> None:
        if self.state is not state:
            error = NotConnectedError if state is PhoneState.READY else ClientError
            raise error(f"{action} needs a phone that is {state}; this one is {self.state}")

    # ------------------------------------------------------------------------------------------
    # requests

    async def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send one protocol message and return the server's first reply to it.

        A ``req_id`` is added unless ``message`` has one. The reply is the message that
        carries it (``call.trying``, ``call.held``, …) as a dict.

        :raises RemoteError: the reply is an ``error``.
        :raises NotConnectedError: no connection, or it closed before the reply.
        :raises TimeoutError: no reply within :attr:`request_timeout` seconds.
        """
        if self.state is PhoneState.RECONNECTING:
            raise NotConnectedError("the phone is reconnecting; try again when it is ready")
        if self.state in (PhoneState.IDLE, PhoneState.CLOSED):
            raise NotConnectedError(f"the phone is {self.state}: log in first")
        return await self._transport.request(message)

    # ------------------------------------------------------------------------------------------
    # events

    @overload
    def on(
        self, name: Literal["incoming"], handler: Callable[[Call], object]
    ) -> Callable[[Call], object]: ...
    @overload
    def on(
        self, name: ConferenceEventName, handler: Callable[[Conference], object]
    ) -> Callable[[Conference], object]: ...
    @overload
    def on(
        self, name: Literal["error"], handler: Callable[[RemoteError], object]
    ) -> Callable[[RemoteError], object]: ...
    @overload
    def on(
        self, name: Literal["disconnected"], handler: Callable[[str], object]
    ) -> Callable[[str], object]: ...
    @overload
    def on(
        self, name: Literal["call-switched"], handler: Callable[[Call], object]
    ) -> Callable[[Call], object]: ...
    @overload
    def on(
        self,
        name: Literal[
            "connectivity-off", "connectivity-on", "gateway-unreachable", "session-expired"
        ],
        handler: Callable[[], object],
    ) -> Callable[[], object]: ...
    @overload
    def on(
        self,
        name: Literal["address-updated", "warning", "notification", "dialing", "server-changed"],
        handler: Callable[[str], object],
    ) -> Callable[[str], object]: ...
    @overload
    def on(
        self, name: Literal["session-draining"], handler: Callable[[DrainNotice], object]
    ) -> Callable[[DrainNotice], object]: ...
    def on(
        self, name: PhoneEventName | ConferenceEventName, handler: Callable[..., object]
    ) -> Callable[..., object]:
        """Call ``handler`` on every ``name`` event; a plain or a coroutine function.

        ``incoming(call)``: answer with ``await call.answer(...)`` or ``call.reject()``.
        Returns the handler, for :meth:`off`.
        """
        return self._emitter.add(name, handler)

    def off(
        self, name: PhoneEventName | ConferenceEventName, handler: Callable[..., object]
    ) -> None:
        """Remove a handler added with :meth:`on`."""
        self._emitter.off(name, handler)

    def on_message(self, observer: MessageObserver) -> MessageObserver:
        """Show ``observer`` every message the server sends, as it arrives: a debugging tap.

        ``observer(message)`` gets the docs/protocol.md message as read (a mapping it must not
        change), including those the SDK has no event for (``call.bridged``, say), in arrival
        order, before the SDK handles it and so before the request it answers returns. It is
        called synchronously on the reader: keep it short, and copy what you keep. An exception
        in it is logged and does not stop the phone. Returns ``observer``, for
        :meth:`off_message`. For the phone's events use :meth:`on` or :meth:`events`."""
        self._observers.append(observer)
        return observer

    def off_message(self, observer: MessageObserver) -> None:
        """Stop showing messages to an observer added with :meth:`on_message`."""
        self._observers.remove(observer)

    def events(self) -> EventStream:
        """All events, phone and call ones, as :class:`~callbridge.client.events.Event`::

            async for event in phone.events():
                if event.name == "incoming":
                    await event.call.answer()

        The iteration ends when the phone closes (logout, close, socket lost).
        """
        return self._hub.stream(ended=self.state is PhoneState.CLOSED)

    def _announce(self, name: PhoneEventName, data: dict[str, Any], *args: object) -> None:
        """A phone event about no call: handlers get ``args``, streams an :class:`Event`."""
        self._emitter.emit(name, *args)
        self._hub.publish(Event(name, None, data))

    def _receive(self, msg: dict[str, Any]) -> None:
        """The transport read ``msg``: to the observers, then to the telephony half."""
        for observer in list(self._observers):
            try:
                observer(msg)
            except Exception:
                log.exception("message observer %r failed on %s", observer, msg.get("type"))
        self._dispatch(msg)

    def _session_message(self, msg: dict[str, Any]) -> bool:
        """Take a ``session.*`` message the server sends unasked; False for other messages."""
        kind = msg.get("type")
        if kind == "session.disconnected":
            self.disconnect_reason = str(msg.get("reason", "")) or None
            if self.disconnect_reason == "draining":  # the drain is over: the session too
                self._server_drained()
        elif kind == "session.draining":
            self.draining = DrainNotice(
                self.url,
                _whole(msg.get("deadline_ms")),
                _whole(msg.get("retry_after")),
                time.monotonic(),
            )
            self._announce("session-draining", msg, self.draining)
        elif kind == "session.expired":
            self._expired = True
            self.disconnect_reason = "expired"
            self._announce("session-expired", msg)
        elif kind == "session.address-updated":
            self._announce("address-updated", msg, str(msg.get("e911_id", "")))
        else:
            return False
        return True

    # ------------------------------------------------------------------------------------------
    # session

    async def login(self) -> SessionInfo:
        """Connect and log in (``session.login``); returns the session.

        A server that answers ``draining`` is left for the first of ``fallback_urls`` that takes
        the phone (as after a drain, for up to ``MOVE_WINDOW`` seconds); :attr:`url` is then
        that server's.

        :raises RemoteError: ``invalid_token``, ``token_expired``, ``draining`` (and no fallback
            URL took the phone), … (the phone can try again).
        :raises OSError: the server cannot be reached.
        """
        self._require(PhoneState.IDLE, "login()")
        self.transition(PhoneState.CONNECTING)
        try:
            reply = await self._open_and_login()
        except BaseException:
            await self._transport.close()
            if self.state is PhoneState.CONNECTING:
                self.transition(PhoneState.IDLE, cause="login failed")
            raise
        self.session = _session_info(reply)
        self.transition(PhoneState.READY)
        return self.session

    async def _open_and_login(self) -> dict[str, Any]:
        await self._transport.open()
        try:
            return await self.request(self._login_message())
        except RemoteError as exc:
            first = self.url
            urls = [u for u in self.fallback_urls if u != first]
            if exc.code != ErrorCode.DRAINING or not urls:
                raise
            await self._transport.close()
            reply = await self._transport.open_any(urls, self._login_message(), MOVE_WINDOW)
            if reply is None:
                self.url = first
                raise
            return reply

    def _login_message(self) -> dict[str, Any]:
        login: dict[str, Any] = {"type": "session.login", "token": self.token}
        if self.user_id is not None:
            login["user_id"] = self.user_id
        if self.e911_id is not None:
            login["e911_id"] = self.e911_id
        return login

    async def associate_e911_id(self, e911_id: str) -> None:
        """Set this session's E911 address id (seed 002 ``associateE911Id``); the phone then
        emits ``address-updated(e911_id)``."""
        reply = await self.request({"type": "session.associate_e911", "e911_id": e911_id})
        self.e911_id = str(reply.get("e911_id", e911_id))

    async def refresh(self, token: str) -> None:
        """Extend the session with a newer token of the same user before it expires."""
        reply = await self.request({"type": "session.refresh", "token": token})
        self.token = token
        if self.session is not None:
            self.session = replace(self.session, expires_at=reply.get("expires_at"))

    async def logout(self) -> None:
        """Log out (``session.logout``): this device's calls end, the server closes the socket.

        Waits for ``session.disconnected``, ends any call still live here with ``hangup``,
        closes all media and awaits the event handlers still running. Idempotent.
        """
        if self.state is PhoneState.READY:
            self.transition(PhoneState.CLOSING)
            try:
                await self.request({"type": "session.logout"})
            except (RemoteError, NotConnectedError, TimeoutError) as exc:
                log.warning("logout: %s; closing the connection anyway", exc)
            reader = self._transport.reader
            if reader is not None and reader is not asyncio.current_task():
                # The server closes the socket once it is done with the session.
                await asyncio.wait([reader], timeout=self.request_timeout)
        await self._finish("logout", "hangup")

    async def close(self) -> None:
        """Drop the connection without logging out and without reconnecting. The server keeps
        the session for its grace period, then ends our calls (``disconnected`` for the far
        parties). Calls end here with ``disconnected``; media and handlers are closed as in
        :meth:`logout`. Idempotent.

        To the server this is a device whose network went away for good, which makes it the
        way for a test to simulate one."""
        await self._finish("closed", "disconnected")

    async def _finish(self, reason: str, end_reason: str) -> None:
        """Tear down once, whoever asks first (logout, close, or the reader on a lost socket)."""
        if self._finisher is None:
            self._finisher = asyncio.get_running_loop().create_task(
                self._teardown(reason, end_reason), name=f"phone {self.url} teardown"
            )
        if self._finisher is not asyncio.current_task():
            await asyncio.shield(self._finisher)

    async def _teardown(self, reason: str, end_reason: str) -> None:
        reconnector, self._reconnector = self._reconnector, None
        if reconnector is not None and reconnector is not asyncio.current_task():
            # Closing wins over resuming. The phone owns the task: it has ended (with the
            # socket it may have opened) by the time close() or logout() returns.
            reconnector.cancel()
            await asyncio.wait([reconnector])
        self.disconnect_reason = self.disconnect_reason or reason
        if self.state is not PhoneState.CLOSED:
            self.transition(PhoneState.CLOSED, cause=reason)
        await self._transport.close()
        self._session_over(end_reason)
        self._announce("disconnected", {"reason": self.disconnect_reason}, self.disconnect_reason)
        self._hub.end()
        await self._tasks.shutdown(_HANDLER_GRACE)

    def _connection_lost(self) -> None:
        """The socket dropped by itself (the transport's reader ends)."""
        if (
            self.draining is not None
            and self.state is PhoneState.READY
            and (self.draining.seconds_left() == 0 or not self.reconnect)
        ):
            self._server_drained()  # its calls are over: nothing to resume there
            return
        # Before the drain's deadline the calls there may still go on: resume (below), for
        # at most the time left, then move.
        lost = self.state is PhoneState.READY and not self._expired
        if lost and self.reconnect and self._finisher is None and self.session is not None:
            # Only the signalling channel is gone: calls and their media go on while we
            # resume the session (docs/protocol.md, "Session").
            self.transition(PhoneState.RECONNECTING, cause="socket lost")
            self._reconnector = asyncio.get_running_loop().create_task(
                self._reconnect(), name=f"phone {self.url} reconnect"
            )
        elif self.state in (PhoneState.READY, PhoneState.CLOSING):
            # The server closed the socket (after logout or expiry, or unexpectedly).
            reason = "expired" if self._expired else "disconnected" if lost else "logout"
            self._finisher = self._finisher or asyncio.get_running_loop().create_task(
                self._teardown(
                    reason if lost or self._expired else "logout",
                    "disconnected" if lost else "hangup",
                ),
                name=f"phone {self.url} teardown",
            )

    async def _reconnect(self) -> None:
        """Resume the session on a new socket, retrying until the server's grace runs out."""
        assert self.session is not None
        self._announce("connectivity-off", {})
        resume = {
            "type": "session.resume",
            "session_id": self.session.session_id,
            "token": self.token,
        }
        grace = max(self.session.resume_grace, 1.0)
        if self.draining is not None:  # no point past the drain's deadline
            grace = min(grace, max(self.draining.seconds_left(), 1.0))
        if await self._transport.resume(resume, grace):
            self.transition(PhoneState.READY, cause="resumed")
            self._announce("connectivity-on", {})
            return
        if self.draining is not None:  # that server is gone for good: go elsewhere
            self.disconnect_reason = "draining"
            await self._move()
            return
        self._announce("gateway-unreachable", {})
        await self._finish("disconnected", "disconnected")

    # ------------------------------------------------------------------------------------------
    # a draining server

    def _server_drained(self) -> None:
        """The draining server ended our session or closed our socket: move to a fallback
        URL, or close with ``disconnected("draining")``."""
        if self.state is not PhoneState.READY or self._finisher is not None:
            return
        self.disconnect_reason = "draining"
        self.transition(PhoneState.RECONNECTING, cause="server drained")
        # The phone owns the task (as a reconnection): close() and logout() cancel it.
        self._reconnector = asyncio.get_running_loop().create_task(
            self._move(), name=f"phone {self.url} moving"
        )

    async def _move(self) -> None:
        drained = self.url
        urls = [u for u in self.fallback_urls if u != drained]
        if drained in self.fallback_urls:  # listed: a load balancer, or it may restart
            urls.append(drained)
        await self._transport.close()
        # The server ended our calls before the session; any call still here died with it.
        self._session_over("disconnected")
        reply = None
        if urls:
            try:
                reply = await self._transport.open_any(urls, self._login_message(), MOVE_WINDOW)
            except RemoteError as exc:
                log.warning("phone: no other server takes this phone: %s", exc)
        if reply is None:
            log.info("phone %s: the server drained; no other server to move to", drained)
            await self._finish("draining", "disconnected")
            return
        self.session = _session_info(reply)
        self.draining = None
        self.disconnect_reason = None
        self.transition(PhoneState.READY, cause=f"moved from {drained}")
        self._announce("server-changed", {"url": self.url, "previous": drained}, self.url)


def _session_info(reply: Mapping[str, Any]) -> SessionInfo:
    """The :class:`SessionInfo` of a ``session.ready``."""
    return SessionInfo(
        str(reply.get("session_id", "")),
        dict(reply.get("user", {})),
        reply.get("e911_id"),
        reply.get("expires_at"),
        float(reply.get("resume_grace") or 0.0),
    )


def _whole(value: object) -> int:
    """A whole number from the wire (0 if it is none)."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
